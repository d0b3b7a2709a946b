"""Real handwritten digits in the LLaVA format: scikit-learn's bundled copy of UCI *optdigits*.

The images come from ``sklearn.datasets.load_digits`` (the data file ships inside the scikit-learn wheel, no
download): 1,797 handwritten digits 0–9 written by 43 people, scanned by NIST and reduced by its preprocessing to
8×8 blocks of counts 0–16 (E. Alpaydin, C. Kaynak, *Optical Recognition of Handwritten Digits*, UCI Machine Learning
Repository, 1998; licence CC BY 4.0, as every UCI data set). Nobody here generated or chose these pixels.

:func:`write_digits` turns them into two question types whose answers only the image decides:

* ``digit`` — "What digit is shown?" over one digit (answers ``0``–``9``; chance 10%);
* ``number`` — "What number is written?" over a strip of ``number_digits`` digits side by side, first digit not 0
  (answers such as ``47``; an OCR-like reading question, chance about 1%).

Each 8×8 block becomes dark ink on white paper (count 16 → black), upscaled bilinearly to ``digit_px`` per digit;
a strip is centred on a white square canvas. The 1,797 images are split once by a seeded shuffle into a training
pool and an evaluation pool (``eval_images``), disjoint, so no evaluation question shows a digit image seen in
training. Training records (both types, shuffled together) go to ``train.json``; each type's evaluation questions
to ``eval_<type>.json``; ``optdigits_index`` records which of scikit-learn's images a record shows. Ids carry the
type (``digit-train-00012``), which is how the answer-prior baseline finds each benchmark's training answers.
Output is a function of the arguments only (seeded), written atomically.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

QUESTIONS = {"digit": "What digit is shown?", "number": "What number is written?"}
MANIFEST = "manifest.json"
SOURCE = ("scikit-learn sklearn.datasets.load_digits: UCI Optical Recognition of Handwritten Digits (optdigits), "
          "Alpaydin & Kaynak 1998, CC BY 4.0")


@dataclass(frozen=True)
class DigitsSpec:
    """What :func:`write_digits` writes; the manifest records it, and a folder written with other values is
    rewritten."""

    eval_images: int = 500
    digit_train: int = 1297  # every training-pool image once
    number_train: int = 1500
    digit_eval: int = 500
    number_eval: int = 500
    number_digits: int = 2
    digit_px: int = 32
    canvas: int = 64
    seed: int = 0


def _render(blocks: Sequence[np.ndarray], px: int, canvas: int) -> Image.Image:
    """8×8 count blocks (0–16) side by side → dark ink on a white ``canvas``-px square, each digit ``px`` wide."""
    ink = np.concatenate([np.asarray(b, dtype=np.float64) for b in blocks], axis=1)
    gray = Image.fromarray(np.round(255.0 - ink * (255.0 / 16.0)).astype(np.uint8), mode="L")
    strip = gray.resize((px * len(blocks), px), Image.Resampling.BILINEAR)
    if strip.width > canvas:
        raise ValueError(f"{len(blocks)} digits of {px} px do not fit a {canvas} px canvas; lower digit_px or "
                         "number_digits, or raise canvas")
    page = Image.new("L", (canvas, canvas), 255)
    page.paste(strip, ((canvas - strip.width) // 2, (canvas - strip.height) // 2))
    return page.convert("RGB")


def _record(kind: str, split: str, index: int, image: str, answer: str, sources: list[int]) -> dict[str, object]:
    return {"id": f"{kind}-{split}-{index:05d}", "image": image, "task": kind, "optdigits_index": sources,
            "conversations": [{"from": "human", "value": f"<image>\n{QUESTIONS[kind]}"},
                              {"from": "gpt", "value": answer}]}


def _split(out: Path, split: str, pool: np.ndarray, images: np.ndarray, labels: np.ndarray, spec: DigitsSpec,
           digits: int, numbers: int) -> dict[str, list[dict[str, object]]]:
    rng = random.Random(f"eaglesearch.digits/{spec.seed}/{split}")
    folder = out / "images" / split
    folder.mkdir(parents=True)
    records: dict[str, list[dict[str, object]]] = {"digit": [], "number": []}
    order = list(pool)
    rng.shuffle(order)
    for i in range(digits):
        idx = order[i % len(order)]
        name = f"{split}/digit_{i:05d}.png"
        _render([images[idx]], spec.digit_px * 2, spec.canvas).save(out / "images" / name)
        records["digit"].append(_record("digit", split, i, name, str(labels[idx]), [int(idx)]))
    nonzero = [i for i in pool if labels[i] != 0]
    for i in range(numbers):
        chosen = [rng.choice(nonzero)] + [rng.choice(list(pool)) for _ in range(spec.number_digits - 1)]
        name = f"{split}/number_{i:05d}.png"
        _render([images[c] for c in chosen], spec.digit_px, spec.canvas).save(out / "images" / name)
        records["number"].append(_record("number", split, i, name, "".join(str(labels[c]) for c in chosen),
                                         [int(c) for c in chosen]))
    return records


def write_digits(root: Path, spec: DigitsSpec | None = None) -> Path:
    """Write (or reuse, when its manifest matches ``spec``) the data set at ``root``; returns ``root``."""
    from sklearn.datasets import load_digits

    spec = spec or DigitsSpec()
    root = Path(root)
    manifest = root / MANIFEST
    if manifest.is_file() and json.loads(manifest.read_text()).get("spec") == asdict(spec):
        return root
    data = load_digits()
    images, labels = data.images, data.target
    if not 0 < spec.eval_images < len(images):
        raise ValueError(f"eval_images={spec.eval_images}: choose 1 to {len(images) - 1} of the {len(images)} images")
    shuffled = np.random.default_rng(spec.seed).permutation(len(images))
    eval_pool, train_pool = np.sort(shuffled[:spec.eval_images]), np.sort(shuffled[spec.eval_images:])
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        train = _split(tmp, "train", train_pool, images, labels, spec, spec.digit_train, spec.number_train)
        evals = _split(tmp, "eval", eval_pool, images, labels, spec, spec.digit_eval, spec.number_eval)
        mixed = train["digit"] + train["number"]
        random.Random(f"eaglesearch.digits/{spec.seed}/order").shuffle(mixed)
        (tmp / "train.json").write_text(json.dumps(mixed, indent=0))
        for kind, records in evals.items():
            (tmp / f"eval_{kind}.json").write_text(json.dumps(records, indent=0))
        (tmp / MANIFEST).write_text(json.dumps({"source": SOURCE, "spec": asdict(spec),
                                                "train_images": len(train_pool), "eval_images": len(eval_pool)},
                                               indent=1))
        if root.exists():
            shutil.rmtree(root)
        os.rename(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root
