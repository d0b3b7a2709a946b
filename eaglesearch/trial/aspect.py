"""A trial's image policy (the recipe's ``data.image`` with its pad colour resolved) and the distribution of tiles
over its training pictures.

``pad`` fills with ``data.image.pad_color`` when given, else with LLaVA-1.5 / Eagle's ``expand2square`` colour: the
image processor's mean, ``int(255 · CLIP mean)`` = (122, 116, 104) (Eagle feeds every expert CLIP-normalised
pixels, so that padding normalises to ~0 for all of them). The default does not depend on which experts a trial
has, so every trial, and every pre-aligned expert artifact (keyed by the data spec, not by the trial's other
experts), pads the same pixels.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from eaglesearch.data.aspect import ImageCounts, ImagePolicy, count_images
from eaglesearch.data.llava import Sample
from eaglesearch.model.experts.base import PAD_FILL
from eaglesearch.spec import TrialSpec

PLAN_SAMPLE = 256
"""Pictures read (headers only) to estimate the distribution of tiles: enough for a mean within a few percent."""


def image_policy(trial: TrialSpec) -> ImagePolicy:
    """The :class:`ImagePolicy` that trains and evaluates ``trial``."""
    return ImagePolicy.from_spec(trial.data.image, PAD_FILL)


def picture_counts(trial: TrialSpec, samples: Sequence[Sample] | None = None,
                   limit: int = PLAN_SAMPLE) -> ImageCounts | None:
    """How many square images the trial's training pictures become, over up to ``limit`` of them (evenly spread;
    headers only): from ``samples`` when given, else from the LLaVA json on this machine. ``None`` when the policy
    is not ``dynamic`` (every picture is one image) or no picture can be read here (then plan on the worst case,
    ``data.image.max_images``)."""
    if trial.data.image.resize != "dynamic":
        return None
    if samples is not None:
        paths, total = [s.image for s in samples], None
    else:
        paths, total = _json_pictures(trial, limit)
    try:
        counts = count_images(paths, image_policy(trial), trial.data.image_size, limit)
    except OSError:  # an unreadable picture: the data policy reports it when the trial reads its data
        return None
    if not counts.sampled:
        return None
    return counts if total is None else replace(counts, total=total)


def _json_pictures(trial: TrialSpec, limit: int) -> tuple[list[Path | None], int]:
    """Up to ``limit`` picture paths spread over the training json (those that exist here), and how many pictures
    the json names."""
    split = trial.data.train
    if trial.data.source != "llava" or split is None:
        return [], 0
    try:
        records = json.loads(Path(split.json_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return [], 0
    if not isinstance(records, list):
        return [], 0
    named = [r["image"] for r in records if isinstance(r, dict) and isinstance(r.get("image"), str)]
    step = max(1, len(named) // limit)
    found = [Path(split.image_folder) / name for name in named[::step][:limit]]
    return [p for p in found if p.is_file()], len(named)
