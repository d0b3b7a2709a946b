"""A seeded synthetic VQA benchmark written to disk in the LLaVA format (PNG images + conversation json).

Tasks (every answer is one short word or digit; chance level in brackets):

* ``count``  — "How many shapes are there?" over 1–5 non-overlapping shapes (20%);
* ``color``  — "What color is the {shape}?" over 1–3 shapes of distinct kinds and colours (16.7%);
* ``exist``  — "Is there a {color} {shape}?", POPE-like yes/no at 50/50; a negative always reuses a colour or a
  shape kind that is present, so it cannot be answered from colour or shape alone (50%);
* ``detail`` — "Is the small mark a plus or a cross?": one 5×5-pixel glyph ('+' or '×', 1-pixel strokes, at any
  canvas size) drawn dark among 2–3 large coloured distractor shapes (50%). Both glyphs have the same ink
  (9 pixels), centre and bounding box, so they differ only in fine detail: legible at the canvas resolution, but
  an expert that sees the image downsampled 4× gets a 1–2 px grey blob either way (the two classes then differ
  by a few grey levels at most). This is the task where an expert's input resolution is meant to matter.

Planted tasks (``benchmarks/planted.py``): each is built so that one design choice must win, by construction of the
pixels rather than by hope, and each is learnable by the tiny CPU recipe (``experiments/tiny_planted.yaml``).

* ``grating`` — "Are the stripes horizontal or vertical?": one large soft-edged disc (radius 30–42% of the canvas)
  filled with a 1-pixel-on / 1-pixel-off grating (period 2 px, the canvas's Nyquist frequency), horizontal or
  vertical, grey levels mid ± amp with random mid, amp, phase, position and background (50%). Both classes have
  the same mean, the same histogram and the same disc; only the stripe direction differs. An expert that sees the
  canvas at full resolution (clip@128 on a 128 px canvas: every 16×16 patch holds eight stripe periods) reads the
  direction from any patch; an expert that sees it downsampled 2× or more (clip@64, clip@32: bilinear with
  antialiasing, as every expert resizes) gets the same flat grey disc for both classes (the residual difference is
  below one grey level, tested in tests/test_planted_data.py). **Planted effect: resolution ≥ canvas wins,
  resolution ≤ canvas/2 is at chance** — also: tiling (``resize: tile``) at canvas/2 recovers native pixels.
* ``grating_coarse`` — the same question and disc with period-4 stripes (2-pixel bands, phase 0–3). Downsampled 2×
  (clip@64 on a 128 px canvas), phases 0 and 2 keep half the stripe contrast while phases 1 and 3 average to grey
  (up to a residue of a few grey levels in the fade ring); downsampled 4× (clip@32) every phase is grey.
  **Planted effect, graded: full resolution ≈ 100% > half resolution ≤ ~75% (half the items legible) > quarter
  resolution = chance.**
* ``color_solo`` — "What color is the shape?": one large shape (35–55% of the canvas) in one of four
  ISOLUMINANT colours (red, green, blue, purple: identical 8-bit luma, so they collapse to one grey under a
  grayscale conversion) on a random light background (25%). Colour survives any downsampling, so every expert
  resolution solves it: in the planted searches it is the **control** (every design far above chance; measured
  1.00 at 64 and 128 px, 0.83–0.92 at 32 px, where 2×2 patches learn more slowly in 250 steps). A colour-blind
  (grayscale) input could not beat chance: its four classes are pixel-identical in luma.

Caption pairs (``captions.json``, for a ``data: caption`` training stage — LLaVA's projector alignment, Eagle's
stage 2): one record per *train* image, same ``image`` path, in the LLaVA pre-training format of
``blip_laion_cc_sbu_558k.json`` (a human turn that is only ``<image>``, a gpt turn with the caption). The caption
is :func:`describe` of the scene: how many shapes, each one's colour, kind and place (reading order), the small
mark, the striped disc's stripe direction and fineness, the background — the words the questions and answers use
(digits, colour and shape names, ``small mark``, ``plus``/``cross``, ``horizontal``/``vertical``), so aligning on
them helps the later SFT. Captions only cover train images: no eval image is ever seen in training.

Train and eval images come from different seeds derived from ``spec.seed`` and eval scenes that repeat a train
scene are redrawn, so the splits are disjoint. :func:`write_synthetic` is deterministic (byte-identical reruns),
idempotent (a complete dataset for the same spec is reused) and atomic (written to a temporary folder, then
renamed into place; a concurrent writer's identical result wins a race).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from eaglesearch.spec import SyntheticDataSpec

GENERATOR_VERSION = 2  # 2: captions.json
MANIFEST = "manifest.json"
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35), "green": (35, 160, 55), "blue": (35, 75, 215),
    "yellow": (235, 195, 20), "purple": (135, 55, 175), "orange": (240, 125, 25),
}
SHAPES = ("circle", "square", "triangle")
GLYPHS: dict[str, tuple[tuple[int, int], ...]] = {
    "plus": tuple((2, i) for i in range(5)) + tuple((i, 2) for i in (0, 1, 3, 4)),
    "cross": tuple((i, i) for i in range(5)) + tuple((i, 4 - i) for i in (0, 1, 3, 4)),
}
GLYPH_INK = (25, 25, 25)
GLYPH_CELLS = 5
# color_solo: four hues of identical luma (PIL "L" = 120 for each), so a grayscale view cannot tell them apart.
ISO_COLORS: dict[str, tuple[int, int, int]] = {
    "red": (255, 63, 63), "green": (44, 174, 44), "blue": (70, 120, 255), "purple": (198, 60, 228),
}
ORIENTATIONS = ("horizontal", "vertical")


@dataclass(frozen=True)
class Shape:
    """A filled shape; ``rgb`` overrides the fill ``COLORS[color]`` (the isoluminant palette of ``color_solo``)."""

    kind: str
    color: str
    x: int
    y: int
    size: int
    rgb: tuple[int, int, int] | None = None


@dataclass(frozen=True)
class Grating:
    """A disc of stripes: grey ``mid ± amp`` in bands of ``period / 2`` pixel rows (horizontal) or columns
    (vertical), ``+amp`` where ``((row or column) + phase) // (period / 2)`` is even; full contrast out to half the
    radius, then a raised-cosine fade to the background at ``radius`` (no hard edge to alias)."""

    orientation: str
    cx: int
    cy: int
    radius: int
    mid: int
    amp: int
    phase: int
    period: int = 2


@dataclass(frozen=True)
class Scene:
    """Everything drawn in one image; ``glyph`` is ``(name, x, y)`` (top-left corner) for the detail task,
    ``grating`` the striped disc of the grating task (drawn over the shapes)."""

    background: tuple[int, int, int]
    shapes: tuple[Shape, ...]
    glyph: tuple[str, int, int] | None = None
    grating: Grating | None = None


@dataclass(frozen=True)
class SyntheticDataset:
    """Where a written dataset lives: the training json, the caption-pair json (one caption per training image),
    one eval json per task, and the image folder all of them are relative to."""

    root: Path
    train_json: Path
    image_folder: Path
    eval_json: dict[str, Path]
    caption_json: Path


Item = tuple[Scene, str, str]  # scene, question, answer


def _boxes(rng: random.Random, canvas: int, sizes: list[int],
           taken: list[tuple[int, int, int]]) -> list[tuple[int, int]]:
    """Top-left corners for squares of ``sizes`` that overlap neither each other nor ``taken`` (x, y, size)."""
    margin = max(2, canvas // 32)
    for _ in range(100):
        placed = list(taken)
        corners = []
        for size in sizes:
            for _ in range(50):
                x, y = rng.randint(margin, canvas - size - margin), rng.randint(margin, canvas - size - margin)
                if all(x + size + margin <= a or a + s + margin <= x or y + size + margin <= b or b + s + margin <= y
                       for a, b, s in placed):
                    placed.append((x, y, size))
                    corners.append((x, y))
                    break
            else:
                break
        if len(corners) == len(sizes):
            return corners
    raise RuntimeError(f"could not place {len(sizes)} shapes on a {canvas}px canvas; use a larger image_size")


def _shapes(rng: random.Random, canvas: int, kinds: list[str], colors: list[str],
            taken: list[tuple[int, int, int]] | None = None) -> tuple[Shape, ...]:
    sizes = [rng.randint(canvas * 14 // 100, canvas * 22 // 100) for _ in kinds]
    corners = _boxes(rng, canvas, sizes, taken or [])
    return tuple(Shape(k, c, x, y, s) for k, c, (x, y), s in zip(kinds, colors, corners, sizes, strict=True))


def _background(rng: random.Random) -> tuple[int, int, int]:
    return (rng.randint(215, 250), rng.randint(215, 250), rng.randint(215, 250))


def _count(rng: random.Random, canvas: int) -> Item:
    n = rng.randint(1, 5)
    kinds = [rng.choice(SHAPES) for _ in range(n)]
    colors = [rng.choice(list(COLORS)) for _ in range(n)]
    return Scene(_background(rng), _shapes(rng, canvas, kinds, colors)), "How many shapes are there?", str(n)


def _color(rng: random.Random, canvas: int) -> Item:
    n = rng.randint(1, 3)
    shapes = _shapes(rng, canvas, rng.sample(SHAPES, n), rng.sample(list(COLORS), n))
    target = rng.choice(shapes)
    return Scene(_background(rng), shapes), f"What color is the {target.kind}?", target.color


def _exist(rng: random.Random, canvas: int) -> Item:
    n = rng.randint(1, 3)
    shapes = _shapes(rng, canvas, rng.sample(SHAPES, n), rng.sample(list(COLORS), n))
    anchor = rng.choice(shapes)
    if rng.random() < 0.5:
        color, kind, answer = anchor.color, anchor.kind, "yes"
    elif rng.random() < 0.5:  # keep a present colour, change the kind (kinds and colours are distinct per image)
        color, kind, answer = anchor.color, rng.choice([k for k in SHAPES if k != anchor.kind]), "no"
    else:  # keep a present kind, change the colour
        color, kind, answer = rng.choice([c for c in COLORS if c != anchor.color]), anchor.kind, "no"
    return Scene(_background(rng), shapes), f"Is there a {color} {kind}?", answer


def _detail(rng: random.Random, canvas: int) -> Item:
    name = rng.choice(sorted(GLYPHS))
    (gx, gy), = _boxes(rng, canvas, [GLYPH_CELLS], [])
    n = rng.randint(2, 3)
    shapes = _shapes(rng, canvas, [rng.choice(SHAPES) for _ in range(n)], [rng.choice(list(COLORS)) for _ in range(n)],
                     taken=[(gx, gy, GLYPH_CELLS)])
    return Scene(_background(rng), shapes, (name, gx, gy)), "Is the small mark a plus or a cross?", name


def _grating_of_period(period: int) -> Callable[[random.Random, int], Item]:
    def task(rng: random.Random, canvas: int) -> Item:
        orientation = rng.choice(ORIENTATIONS)
        radius = rng.randint(canvas * 30 // 100, canvas * 42 // 100)
        cx, cy = rng.randint(radius, canvas - radius), rng.randint(radius, canvas - radius)
        grating = Grating(orientation, cx, cy, radius, mid=rng.randint(105, 150), amp=rng.randint(75, 100),
                          phase=rng.randint(0, period - 1), period=period)
        return Scene(_background(rng), (), grating=grating), "Are the stripes horizontal or vertical?", orientation
    return task


def _color_solo(rng: random.Random, canvas: int) -> Item:
    color = rng.choice(sorted(ISO_COLORS))
    size = rng.randint(canvas * 35 // 100, canvas * 55 // 100)
    (x, y), = _boxes(rng, canvas, [size], [])
    shape = Shape(rng.choice(SHAPES), color, x, y, size, rgb=ISO_COLORS[color])
    return Scene(_background(rng), (shape,)), "What color is the shape?", color


TASKS: dict[str, Callable[[random.Random, int], Item]] = {
    "count": _count, "color": _color, "exist": _exist, "detail": _detail,
    "grating": _grating_of_period(2), "grating_coarse": _grating_of_period(4), "color_solo": _color_solo,
}


def _draw_grating(image: Image.Image, g: Grating) -> Image.Image:
    side = image.size[0]
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float64)
    r = np.hypot(xs + 0.5 - g.cx, ys + 0.5 - g.cy)
    inner = g.radius / 2
    fade = np.clip((g.radius - r) / (g.radius - inner), 0.0, 1.0)
    weight = (0.5 - 0.5 * np.cos(np.pi * fade))[..., None]
    line = ys if g.orientation == "horizontal" else xs
    band = (line.astype(np.int64) + g.phase) // (g.period // 2)
    stripes = np.where(band % 2 == 0, g.mid + g.amp, g.mid - g.amp)[..., None]
    pixels = np.asarray(image, dtype=np.float64) * (1.0 - weight) + stripes * weight
    return Image.fromarray(np.rint(pixels).clip(0, 255).astype(np.uint8))


def render(scene: Scene, canvas: int) -> Image.Image:
    """Draw a scene as an RGB image of side ``canvas``."""
    image = Image.new("RGB", (canvas, canvas), scene.background)
    draw = ImageDraw.Draw(image)
    for s in scene.shapes:
        fill, box = s.rgb or COLORS[s.color], (s.x, s.y, s.x + s.size - 1, s.y + s.size - 1)
        if s.kind == "circle":
            draw.ellipse(box, fill=fill)
        elif s.kind == "square":
            draw.rectangle(box, fill=fill)
        else:
            draw.polygon([(s.x + s.size // 2, s.y), (s.x, s.y + s.size - 1), (s.x + s.size - 1, s.y + s.size - 1)],
                         fill=fill)
    if scene.glyph is not None:
        name, gx, gy = scene.glyph
        draw.point([(gx + col, gy + row) for col, row in GLYPHS[name]], fill=GLYPH_INK)
    if scene.grating is not None:
        image = _draw_grating(image, scene.grating)
    return image


# Where an object's centre falls on a 3×3 grid over the canvas, as (row, column) → phrase.
PLACES: dict[tuple[int, int], str] = {
    (0, 0): "at the top left", (0, 1): "at the top", (0, 2): "at the top right",
    (1, 0): "on the left", (1, 1): "in the center", (1, 2): "on the right",
    (2, 0): "at the bottom left", (2, 1): "at the bottom", (2, 2): "at the bottom right",
}
LARGE = 0.3  # a shape at least this fraction of the canvas side is "large" (color_solo's; the others are 14–22%)


def _cell(cx: float, cy: float, canvas: int) -> tuple[int, int]:
    return min(2, max(0, int(3 * cy // canvas))), min(2, max(0, int(3 * cx // canvas)))


def _article(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def describe(scene: Scene, canvas: int) -> str:
    """A one-sentence caption of what :func:`render` draws, e.g. ``"3 shapes on a light background: a red circle
    at the top left, a blue square in the center and an orange triangle at the bottom."``.

    Deterministic in the scene: shapes are listed in reading order of their centres (3×3 grid cell, then y, x);
    the count is a digit (the ``count`` answers are digits). The small mark (``detail``) is named with its glyph,
    the disc (``grating*``) with its stripe direction and fineness (``fine``: period 2, ``coarse``: wider)."""
    shapes = sorted(scene.shapes, key=lambda s: (_cell(s.x + s.size / 2, s.y + s.size / 2, canvas), s.y, s.x))
    parts = []
    for s in shapes:
        size = "large " if s.size >= LARGE * canvas else ""
        place = PLACES[_cell(s.x + s.size / 2, s.y + s.size / 2, canvas)]
        parts.append(f"{_article(size + s.color)} {s.kind} {place}")
    things = []
    if shapes:
        things.append(f"{len(shapes)} shape{'s' if len(shapes) > 1 else ''} on a light background: {_join(parts)}")
    if scene.glyph is not None:
        name, gx, gy = scene.glyph
        place = PLACES[_cell(gx + GLYPH_CELLS / 2, gy + GLYPH_CELLS / 2, canvas)]
        things.append(f"a small dark {name} mark {place}")
    if scene.grating is not None:
        g = scene.grating
        fineness = "fine" if g.period <= 2 else "coarse"
        things.append(f"a large gray disc {PLACES[_cell(g.cx, g.cy, canvas)]} with {fineness} {g.orientation} "
                      "stripes" + ("" if shapes else " on a light background"))
    return "; ".join(things or ["an empty light background"]) + "."


def spec_hash(spec: SyntheticDataSpec) -> str:
    payload = json.dumps({"generator": GENERATOR_VERSION, "spec": spec.model_dump(mode="json")}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _layout(root: Path, spec: SyntheticDataSpec) -> SyntheticDataset:
    return SyntheticDataset(root=root, train_json=root / "train.json", image_folder=root / "images",
                            eval_json={task: root / "eval" / f"{task}.json" for task in spec.tasks},
                            caption_json=root / "captions.json")


def _existing(root: Path, spec: SyntheticDataSpec) -> SyntheticDataset | None:
    """The dataset at ``root`` if it is complete and for ``spec``; ``None`` if there is nothing there."""
    manifest = root / MANIFEST
    if manifest.is_file():
        written = json.loads(manifest.read_text())
        found = written.get("spec_hash")
        if found == spec_hash(spec):
            return _layout(root, spec)
        if written.get("generator") != GENERATOR_VERSION and written.get("spec") == spec.model_dump(mode="json"):
            raise ValueError(f"{root} holds this spec's synthetic dataset written by an older generator (version "
                             f"{written.get('generator')}, now {GENERATOR_VERSION}); delete the folder to rewrite it")
        raise ValueError(f"{root} holds a synthetic dataset for another spec (hash {found}, wanted "
                         f"{spec_hash(spec)}); write to another folder or delete this one")
    if root.is_dir() and any(root.iterdir()):
        raise ValueError(f"{root} exists but is not a synthetic dataset (no {MANIFEST}); choose a new or empty folder")
    return None


Records = dict[str, list[dict[str, object]]]


def _write_split(out: Path, split: str, spec: SyntheticDataSpec, per_task: int,
                 seen: set[tuple[str, Scene]]) -> tuple[Records, Records]:
    """Render one split's images under ``out/images/<split>``; its LLaVA question records per task, and a caption
    record per image (same ``image``) per task."""
    (out / "images" / split).mkdir(parents=True)
    records: Records = {}
    captions: Records = {}
    for task in spec.tasks:
        rng = random.Random(f"eaglesearch.synthetic/{spec.seed}/{split}/{task}")
        records[task], captions[task] = [], []
        for i in range(per_task):
            scene, question, answer = TASKS[task](rng, spec.image_size)
            while (task, scene) in seen:  # keeps train and eval disjoint
                scene, question, answer = TASKS[task](rng, spec.image_size)
            seen.add((task, scene))
            name = f"{split}/{task}_{i:05d}.png"
            render(scene, spec.image_size).save(out / "images" / name, format="PNG")
            records[task].append({"id": f"{task}-{split}-{i:05d}", "image": name, "conversations": [
                {"from": "human", "value": f"<image>\n{question}"}, {"from": "gpt", "value": answer}]})
            captions[task].append({"id": f"{task}-{split}-caption-{i:05d}", "image": name, "conversations": [
                {"from": "human", "value": "<image>"},
                {"from": "gpt", "value": describe(scene, spec.image_size)}]})
    return records, captions


def _dump(path: Path, records: list[dict[str, object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")


def write_synthetic(spec: SyntheticDataSpec, root: Path) -> SyntheticDataset:
    """Write (or reuse) the synthetic dataset for ``spec`` at ``root``; see the module docstring."""
    root = Path(root)
    found = _existing(root, spec)
    if found is not None:
        return found
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        _write_all(tmp, spec)
        try:
            if root.is_dir():
                root.rmdir()  # empty (checked by _existing); the rename needs the name free
            os.rename(tmp, root)
        except OSError:
            if not (root / MANIFEST).is_file():
                raise
            # a concurrent writer finished first; its result is identical, so use it
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already after a successful rename
    return _existing(root, spec) or _layout(root, spec)


def _write_all(out: Path, spec: SyntheticDataSpec) -> None:
    """Images, train json (tasks shuffled together), caption json (one per train image, shuffled with its own
    seed), one eval json per task, and the manifest (written last)."""
    seen: set[tuple[str, Scene]] = set()
    train, train_captions = _write_split(out, "train", spec, spec.train_per_task, seen)
    evals, _ = _write_split(out, "eval", spec, spec.eval_per_task, seen)
    mixed = [record for task in spec.tasks for record in train[task]]
    random.Random(f"eaglesearch.synthetic/{spec.seed}/train/order").shuffle(mixed)
    _dump(out / "train.json", mixed)
    captions = [record for task in spec.tasks for record in train_captions[task]]
    random.Random(f"eaglesearch.synthetic/{spec.seed}/captions/order").shuffle(captions)
    _dump(out / "captions.json", captions)
    for task, records in evals.items():
        _dump(out / "eval" / f"{task}.json", records)
    manifest = {"spec_hash": spec_hash(spec), "generator": GENERATOR_VERSION, "spec": spec.model_dump(mode="json"),
                "train": len(mixed), "captions": len(captions), "eval": {task: len(r) for task, r in evals.items()}}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
