"""A seeded synthetic VQA benchmark written to disk in the LLaVA format (PNG images + conversation json).

Tasks (every answer is one short word or digit; chance level in brackets):

* ``count``  — "How many shapes are there?" over 1–5 non-overlapping shapes (20%);
* ``color``  — "What color is the {shape}?" over 1–3 shapes of distinct kinds and colours (16.7%);
* ``exist``  — "Is there a {color} {shape}?", POPE-like yes/no at 50/50; a negative always reuses a colour or a
  shape kind that is present, so it cannot be answered from colour or shape alone (50%);
* ``detail`` — "Is the small mark a plus or a cross?": one glyph of 5×5 cells ('+' or '×', strokes one cell wide;
  a cell is canvas/128 px, so 5 px on 128 px and 10 px with 2-px strokes on 256 px), centred in a cell of the
  canvas's 16-cell type grid (marks, like print, sit on the grid), drawn dark among 2–3 large coloured distractor
  shapes (50%). Both glyphs have the same ink, centre and bounding box, so they differ only in fine detail: legible
  at the canvas resolution, but an expert that sees the image downsampled 4× gets a 1–2 px grey blob either way
  (the two classes then differ by a few grey levels at most). This is the task where an expert's input
  resolution is meant to matter.
* ``locate`` — "Where is the small mark?": the same glyph, well inside one quadrant (never near the midlines),
  among 2–3 large shapes; answers ``top left`` … ``bottom right`` (25%). Downsampled 4× the mark is a faint smudge:
  findable only by an expert whose features keep small, dark, non-shape marks.
* ``ocr`` — "What word is written in the image?": one of eight three-letter words (:data:`WORDS`) in small dark
  print (6.25% of the canvas side: 16 px on 256 px, set on the canvas's 16-cell type grid like a line of a
  document) beside 1–2 large shapes (12.5%). The words share length and ink, so only reading separates them; at a
  quarter of the canvas resolution the print is a grey smudge.

Opt-in world skill (not in :data:`~eaglesearch.data.world.WORLD_TASKS`; a recipe lists it to use it):

* ``arrow`` — "Which way does the small arrow point?": a 5×5-cell arrow (a shaft and a head; left and right are
  mirror images with the same ink) placed like the detail mark among 2–3 large shapes (50%). A medium detail: 1-px
  strokes at 128 px, a 2–3 px blob at CLIP's pretraining 64 px, and a cue no pretext labelled, which the frozen
  pretrained CLIP's features expose weakly and adapted ones readily (``benchmarks/unfreeze_probe.py``;
  ``benchmarks/findings.py`` finding 1).

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
* ``aspect`` — "Is the shape a circle or an oval?" on a WIDE image (height ``image_size``, width 1–4× that,
  log-uniform): one circle, or one oval twice as wide as tall (along the image's long side), of one height range
  (50%). Squashed to a square (``data.image: square``, what every trial did before image policies) a circle in an
  image of aspect 1–2 and an oval in one of aspect 2–4 have the same apparent proportions, so half the items are
  ambiguous: **planted effect: square ≤ ~75%, pad and dynamic (proportions kept) can reach 100%**
  (``search_spaces/planted_aspect.yaml``; measured at 400 steps: dynamic 0.90, pad 0.79, square 0.75: padding
  a 4:1 picture into a 64 px square leaves its shape 6–10 px tall, so pad learns more slowly than tiles).

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

import json
import os
import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from eaglesearch.data.scene import (  # noqa: F401 - re-exported: the scene model is part of this module's API
    COLORS,
    GLYPHS,
    ISO_COLORS,
    ORIENTATIONS,
    SHAPES,
    WORDS,
    Grating,
    Scene,
    Shape,
    describe,
    render,
)
from eaglesearch.data.tasks import TASKS, Item  # noqa: F401
from eaglesearch.spec import SyntheticDataSpec
from eaglesearch.spec.keys import content_key

GENERATOR_VERSION = 5  # 2: captions.json; 3: locate and ocr tasks, written words in captions; 4: marks scaled
# to the canvas, print on the type grid; 5: marks on the type grid
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class SyntheticDataset:
    """Where a written dataset lives: the training json, the caption-pair json (one caption per training image),
    one eval json per task, and the image folder all of them are relative to."""

    root: Path
    train_json: Path
    image_folder: Path
    eval_json: dict[str, Path]
    caption_json: Path


def spec_hash(spec: SyntheticDataSpec) -> str:
    return content_key({"generator": GENERATOR_VERSION, "spec": spec.model_dump(mode="json")}, 16, spaced=True)


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
