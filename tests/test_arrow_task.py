"""The opt-in ``arrow`` skill (finding 1: unfreezing) and the promise that adding it changed nothing else.

The arrow task draws a left or right arrow (mirror images with the same ink) as a medium detail: 1-px strokes at
128 px, a resolution the tiny CLIP was not pretrained at. Adding it must not move a single existing sample: the
world's tasks, its text corpus and every pretrained component were built from the scenes the generator drew before
the arrow existed.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import hashlib
import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from eaglesearch.data.scene import ARROWS, GLYPHS, describe, glyph_side, render
from eaglesearch.data.synthetic import write_synthetic
from eaglesearch.data.tasks import TASKS
from eaglesearch.data.world import WORLD_TASKS, text_samples, world_corpus
from eaglesearch.spec import SyntheticDataSpec

CANVAS = 256
QUESTION = "Which way does the small arrow point?"


def _draws(n: int, seed: int = 0) -> list:
    rng = random.Random(seed)
    return [TASKS["arrow"](rng, CANVAS) for _ in range(n)]


def _glyph_ink(scene) -> np.ndarray:
    """The dark pixels of the glyph's 10×10 box (True where the arrow is drawn)."""
    _name, gx, gy = scene.glyph
    side = glyph_side(CANVAS)
    return np.asarray(render(scene, CANVAS))[gy:gy + side, gx:gx + side].max(axis=2) < 40


def test_arrow_draws_are_deterministic_for_a_seed() -> None:
    assert _draws(20, seed=3) == _draws(20, seed=3)
    assert _draws(20, seed=3) != _draws(20, seed=4)


def _cells(name: str, cell: int = CANVAS // 128) -> np.ndarray:
    """The 5×5 cells of an arrow scaled to ``cell`` px per cell (True where it is drawn)."""
    mask = np.zeros((5, 5), dtype=bool)
    for col, row in ARROWS[name]:
        mask[row, col] = True
    return mask.repeat(cell, axis=0).repeat(cell, axis=1)


def test_the_answer_is_the_way_the_drawn_arrow_points() -> None:
    """The pixels in the glyph's box are exactly the answer's arrow (never the other one, never part of a shape)."""
    for scene, question, answer in _draws(40):
        assert question == QUESTION and answer in ("left", "right")
        ink = _glyph_ink(scene)
        assert (ink == _cells(f"{answer} arrow")).all()
        assert not (ink == _cells("right arrow" if answer == "left" else "left arrow")).all()


def test_left_and_right_are_mirror_images_with_the_same_ink() -> None:
    left, right = _cells("left arrow", 1), _cells("right arrow", 1)
    assert (left == right[:, ::-1]).all() and left.sum() == right.sum() == len(GLYPHS["plus"])


def test_answers_are_balanced() -> None:
    answers = Counter(answer for _, _, answer in _draws(400))
    assert set(answers) == {"left", "right"} and min(answers.values()) >= 170


def test_the_arrow_is_legible_at_128_px() -> None:
    """Turn the arrow around in one scene: the largest per-pixel change (grey levels) after the expert's resize is
    most of full contrast at 256 px and still a fifth of it at 128 px (1-px strokes): the cue is in the pixels an
    expert at 128 px gets."""
    scene, _, answer = _draws(1, seed=5)[0]
    other = "left arrow" if answer == "right" else "right arrow"
    twin = type(scene)(scene.background, scene.shapes, (other, *scene.glyph[1:]))

    def at(side: int, s) -> torch.Tensor:
        x = torch.from_numpy(np.array(render(s, CANVAS))).permute(2, 0, 1).float()[None]
        return F.interpolate(x, size=side, mode="bilinear", antialias=True) if side != CANVAS else x

    def gap(side: int) -> float:
        return (at(side, scene) - at(side, twin)).abs().max().item()

    assert gap(CANVAS) > 200 and gap(128) > 40


def test_captions_say_which_way_the_arrow_points() -> None:
    scene, _, answer = _draws(1, seed=2)[0]
    assert f"a small dark arrow pointing {answer}" in describe(scene, CANVAS)


def test_the_arrow_is_opt_in_and_not_a_world_task() -> None:
    assert "arrow" not in WORLD_TASKS


# Digests of what the generator drew before the arrow task existed (commit c78e163), computed by
# _scene_digest / _world_text_digest below. Scene descriptions are pure Python (seeded random, dataclasses); the ocr
# task's positions depend on the font metrics of Pillow's bundled font, which the pinned Pillow range keeps.
BEFORE_ARROW = {
    "count": "9a3a83d3367074a2", "color": "7b2f3db9a1c1315f", "exist": "21f2183724cca75c",
    "detail": "4d1a63601e910370", "locate": "002654ac935662cd", "ocr": "44ea72f1aec83eaf",
    "grating": "5520b10ede9773e0", "grating_coarse": "1a3f0193466f7495", "color_solo": "da10fe6947f3c49f",
    "aspect": "14e792edeb92416b",
}
WORLD_TEXT_BEFORE_ARROW = ("6cee68ab9392ed27", "94f1d23e4c9c5b4b")


def _scene_digest(task: str) -> str:
    h = hashlib.sha256()
    rng = random.Random(f"digest/{task}")
    for _ in range(6):
        scene, question, answer = TASKS[task](rng, CANVAS)
        h.update(repr((scene, question, answer)).encode())
        h.update(np.asarray(render(scene, CANVAS)).tobytes())
    return h.hexdigest()[:16]


def test_existing_tasks_draw_the_scenes_and_pixels_they_drew_before() -> None:
    changed = {task: _scene_digest(task) for task in BEFORE_ARROW if _scene_digest(task) != BEFORE_ARROW[task]}
    assert not changed, f"existing tasks' samples changed: {changed}"


def test_the_world_text_is_what_it_was_before() -> None:
    corpus = hashlib.sha256("\n".join(world_corpus(60)).encode()).hexdigest()[:16]
    text = hashlib.sha256(repr(text_samples(30, "digest")).encode()).hexdigest()[:16]
    assert (corpus, text) == WORLD_TEXT_BEFORE_ARROW


def test_listing_the_arrow_leaves_the_other_tasks_records_and_images_unchanged(tmp_path: Path) -> None:
    base = {"train_per_task": 4, "eval_per_task": 3, "image_size": 64, "seed": 1}
    alone = write_synthetic(SyntheticDataSpec(tasks=("count",), **base), tmp_path / "alone")
    both = write_synthetic(SyntheticDataSpec(tasks=("count", "arrow"), **base), tmp_path / "both")
    assert json.loads(both.eval_json["count"].read_text()) == json.loads(alone.eval_json["count"].read_text())
    count_train = sorted((r for r in json.loads(both.train_json.read_text()) if r["id"].startswith("count-")),
                         key=lambda r: r["id"])
    assert count_train == sorted(json.loads(alone.train_json.read_text()), key=lambda r: r["id"])
    for image in alone.image_folder.rglob("*.png"):
        assert (both.image_folder / image.relative_to(alone.image_folder)).read_bytes() == image.read_bytes()
    arrow_eval = json.loads(both.eval_json["arrow"].read_text())
    assert {r["conversations"][1]["value"] for r in arrow_eval} <= {"left", "right"}
