"""The planted synthetic tasks (grating, color_solo): deterministic, balanced, and the planted signal is in the pixels.

No training: these check the construction that makes a design choice win in ``benchmarks/planted.py`` — the grating
classes differ strongly at the canvas resolution and not at all (< 1 grey level) once an expert resizes the image
2× or 4× down, tiling at half resolution recovers them, and the color_solo classes collapse under grayscale.
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from eaglesearch.data import read_llava_json, reference_answer, write_synthetic
from eaglesearch.data.synthetic import ISO_COLORS, ORIENTATIONS, SHAPES, TASKS, render
from eaglesearch.model.experts.registry import build_expert, resolve_expert
from eaglesearch.spec import ExpertSpec, SyntheticDataSpec

CANVAS = 128
PLANTED = ("grating", "grating_coarse", "color_solo")


def _tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)[None]


def _flipped(scene):
    other = "vertical" if scene.grating.orientation == "horizontal" else "horizontal"
    return dataclasses.replace(scene, grating=dataclasses.replace(scene.grating, orientation=other))


def _expert_view(spec: ExpertSpec, images: torch.Tensor) -> torch.Tensor:
    """What the expert's backbone receives, back on the 0–255 scale (undoing its mean/std normalisation)."""
    expert = build_expert(resolve_expert(spec.model_copy(update={"preset": "tiny"})))
    with torch.no_grad():
        pixels = expert.preprocess(images)
    std, mean = expert.std, expert.mean
    if pixels.dim() == 5:  # tiled: (B, views, 3, R, R)
        std, mean = std[:, None], mean[:, None]
    return (pixels * std + mean) * 255.0


@pytest.fixture(scope="module")
def grating_pairs() -> tuple[torch.Tensor, torch.Tensor]:
    """24 grating scenes and the same scenes with the stripe direction flipped, as uint8 batches."""
    rng = random.Random(3)
    scenes = [TASKS["grating"](rng, CANVAS)[0] for _ in range(24)]
    a = torch.cat([_tensor(render(s, CANVAS)) for s in scenes])
    b = torch.cat([_tensor(render(_flipped(s), CANVAS)) for s in scenes])
    return a, b


def test_planted_tasks_are_deterministic(tmp_path: Path) -> None:
    spec = SyntheticDataSpec(tasks=PLANTED, train_per_task=12, eval_per_task=6, image_size=64, seed=5)
    first, second = write_synthetic(spec, tmp_path / "a"), write_synthetic(spec, tmp_path / "b")
    files = sorted(p.relative_to(first.root) for p in first.root.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second.root) for p in second.root.rglob("*") if p.is_file())
    assert all((first.root / f).read_bytes() == (second.root / f).read_bytes() for f in files)
    for task in PLANTED:
        one, two = TASKS[task](random.Random(9), CANVAS), TASKS[task](random.Random(9), CANVAS)
        assert one == two
        assert render(one[0], CANVAS).tobytes() == render(two[0], CANVAS).tobytes()
    samples = read_llava_json(first.eval_json["grating"], first.image_folder)
    assert {reference_answer(s) for s in samples} == set(ORIENTATIONS)


def test_planted_answers_are_balanced() -> None:
    rng = random.Random(0)
    grating = Counter(TASKS["grating"](rng, CANVAS)[2] for _ in range(400))
    colors = Counter(TASKS["color_solo"](rng, CANVAS)[2] for _ in range(400))
    assert set(grating) == set(ORIENTATIONS) and min(grating.values()) > 160  # 200 expected
    phases = Counter(TASKS["grating_coarse"](rng, CANVAS)[0].grating.phase for _ in range(400))
    assert set(phases) == {0, 1, 2, 3} and min(phases.values()) > 70  # half the items legible at half resolution
    assert set(colors) == set(ISO_COLORS) and min(colors.values()) > 70  # 100 expected


def test_grating_classes_differ_only_at_full_resolution(grating_pairs) -> None:
    a, b = grating_pairs
    full = (a.float() - b.float()).abs()
    assert full.mean() > 10 and full.amax() > 150  # plainly different on the canvas (and for clip@128)
    assert (_expert_view(ExpertSpec(name="clip", resolution=128), a)
            - _expert_view(ExpertSpec(name="clip", resolution=128), b)).abs().amax() > 150
    for side in (64, 32):  # the expert's own resize (bilinear, antialiased): both classes become the same grey disc
        view = ExpertSpec(name="clip", resolution=side)
        assert (_expert_view(view, a) - _expert_view(view, b)).abs().amax() < 1.0
    # ... while the disc itself is visible at low resolution (the task is not blank there, just undecidable)
    low = _expert_view(ExpertSpec(name="clip", resolution=32), a)
    assert (low.amax(dim=(2, 3)) - low.amin(dim=(2, 3))).amin() > 30


def test_coarse_grating_is_legible_at_half_resolution_for_half_the_phases() -> None:
    rng = random.Random(4)
    scenes = [TASKS["grating_coarse"](rng, CANVAS)[0] for _ in range(32)]
    assert {s.grating.period for s in scenes} == {4} and {s.grating.phase for s in scenes} == {0, 1, 2, 3}
    a = torch.cat([_tensor(render(s, CANVAS)) for s in scenes])
    b = torch.cat([_tensor(render(_flipped(s), CANVAS)) for s in scenes])
    assert (a.float() - b.float()).abs().amax(dim=(1, 2, 3)).amin() >= 150  # every item legible (2·amp)
    half = (_expert_view(ExpertSpec(name="clip", resolution=64), a)
            - _expert_view(ExpertSpec(name="clip", resolution=64), b)).abs().amax(dim=(1, 2, 3))
    even = torch.tensor([s.grating.phase % 2 == 0 for s in scenes])
    assert half[even].amin() > 50  # phases 0, 2: half the stripe contrast survives 2x downsampling
    assert half[~even].amax() < 10  # phases 1, 3: grey up to a few levels in the fade ring
    quarter = (_expert_view(ExpertSpec(name="clip", resolution=32), a)
               - _expert_view(ExpertSpec(name="clip", resolution=32), b)).abs().amax()
    assert quarter < 1.0  # 4x down: no phase survives


def test_tiling_at_half_resolution_recovers_the_grating(grating_pairs) -> None:
    a, b = grating_pairs
    tiled = ExpertSpec(name="clip", resolution=64, resize="tile", tiles=2)
    va, vb = _expert_view(tiled, a), _expert_view(tiled, b)  # (B, 5 views, 3, 64, 64)
    assert (va[:, 0] - vb[:, 0]).abs().amax() < 1.0  # the global view is the interpolated one: no signal
    crops = (va[:, 1:] - vb[:, 1:]).abs()
    assert crops.amax() > 150 and crops.mean() > 10  # the native-resolution crops carry it


def test_color_solo_classes_collapse_under_grayscale() -> None:
    gray = {name: Image.new("RGB", (1, 1), rgb).convert("L").getpixel((0, 0)) for name, rgb in ISO_COLORS.items()}
    assert len(set(gray.values())) == 1  # isoluminant palette
    rgb = np.array(list(ISO_COLORS.values()), dtype=float)
    assert min(np.abs(p - q).max() for i, p in enumerate(rgb) for q in rgb[i + 1:]) > 100  # very distinct in RGB
    scene, question, answer = TASKS["color_solo"](random.Random(1), CANVAS)
    assert question == "What color is the shape?" and len(scene.shapes) == 1 and scene.shapes[0].kind in SHAPES
    renders = {}
    for name, value in ISO_COLORS.items():
        shape = dataclasses.replace(scene.shapes[0], color=name, rgb=value)
        renders[name] = render(dataclasses.replace(scene, shapes=(shape,)), CANVAS)
    grays = {name: np.asarray(img.convert("L")) for name, img in renders.items()}
    colors = {name: np.asarray(img).astype(int) for name, img in renders.items()}
    names = sorted(ISO_COLORS)
    for i, p in enumerate(names):
        for q in names[i + 1:]:
            assert np.array_equal(grays[p], grays[q])  # a colour-blind view cannot tell the classes apart
            assert np.abs(colors[p] - colors[q]).max() > 100  # an RGB view can, at any resolution
    shape = scene.shapes[0]
    assert (colors[answer][shape.y + shape.size // 2 + 2, shape.x + shape.size // 2] == ISO_COLORS[answer]).all()
