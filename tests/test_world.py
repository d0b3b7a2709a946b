"""The tiny world's data: the locate and ocr tasks, the world's text corpus, and the answer-prior baseline."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import random
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from eaglesearch.data import Sample
from eaglesearch.data.scene import WORDS, describe, glyph_side, render
from eaglesearch.data.tasks import QUADRANTS, TASKS
from eaglesearch.data.world import WORLD_TASKS, text_samples, world_corpus
from eaglesearch.evaluate.items import BenchmarkItem
from eaglesearch.evaluate.prior import prior_answers, prior_records

CANVAS = 256


def _pixels(scene) -> torch.Tensor:
    return torch.from_numpy(np.array(render(scene, CANVAS))).permute(2, 0, 1).float()[None] / 255.0


def test_locate_answer_is_the_quadrant_of_the_mark() -> None:
    rng = random.Random(0)
    seen = Counter()
    for _ in range(200):
        scene, question, answer = TASKS["locate"](rng, CANVAS)
        _name, gx, gy = scene.glyph
        side = glyph_side(CANVAS)
        top = "top" if gy + side / 2 < CANVAS / 2 else "bottom"
        left = "left" if gx + side / 2 < CANVAS / 2 else "right"
        assert answer == f"{top} {left}" and question == "Where is the small mark?"
        # never near a midline, so the answer is unambiguous at any resolution that shows the mark
        assert min(abs(gx - CANVAS / 2), abs(gx + side - CANVAS / 2)) >= CANVAS / 16 - 1
        seen[answer] += 1
    assert set(seen) == set(QUADRANTS) and min(seen.values()) > 30


def test_the_mark_is_drawn_with_strokes_scaled_to_the_canvas() -> None:
    assert glyph_side(128) == 5 and glyph_side(256) == 10
    scene, _, _ = TASKS["detail"](random.Random(3), CANVAS)
    _name, gx, gy = scene.glyph
    patch = np.array(render(scene, CANVAS))[gy:gy + 10, gx:gx + 10].min(axis=2)
    assert (patch < 40).sum() == 9 * 4  # nine cells of 2x2 dark pixels


def test_ocr_words_are_legible_at_full_resolution_only() -> None:
    """Two scenes that differ only in the written word: far apart at 256 px, nearly equal at 64 px."""
    scene, question, answer = TASKS["ocr"](random.Random(5), CANVAS)
    assert answer in WORDS and question == "What word is written in the image?"
    other = next(w for w in WORDS if w != answer)
    twin = type(scene)(scene.background, scene.shapes, text=(other, *scene.text[1:]))
    a, b = _pixels(scene), _pixels(twin)
    full = (a - b).abs().sum().item()
    small = (F.interpolate(a, size=64, mode="bilinear", antialias=True)
             - F.interpolate(b, size=64, mode="bilinear", antialias=True)).abs().sum().item()
    assert full > 0 and small < 0.1 * full  # 16x fewer pixels, and the difference shrinks faster than that


def test_captions_name_the_written_word() -> None:
    scene, _, answer = TASKS["ocr"](random.Random(1), CANVAS)
    assert f"the word {answer} written" in describe(scene, CANVAS)


def test_world_text_is_deterministic_and_covers_every_task() -> None:
    samples = text_samples(60, seed="t")
    assert samples == text_samples(60, seed="t")
    assert {s.id.split("-")[1] for s in samples} == set(WORLD_TASKS)
    user, answer = samples[0].turns[0][1], samples[0].turns[1][1]
    assert "\n" in user and answer  # "<caption>\n<question>" -> answer
    corpus = world_corpus(scenes=30)
    assert corpus == world_corpus(scenes=30) and len(corpus) == 90


def _sample(sample_id: str, answer: str) -> Sample:
    return Sample(id=sample_id, image=None, turns=(("user", "q"), ("assistant", answer)))


def test_prior_is_the_commonest_answer_of_the_benchmarks_task() -> None:
    train = [_sample("count-train-1", "3"), _sample("count-train-2", "3"), _sample("count-train-3", "2"),
             _sample("color-train-1", "red"), _sample("color-train-2", "blue")]
    answers = prior_answers(train, ["count", "color", "other"])
    assert answers["count"] == "3"
    assert answers["color"] == "blue"  # a tie goes to the alphabetically first answer
    assert answers["other"] == "3"  # no task of its own: the commonest answer overall


@dataclass(frozen=True)
class _Bench:
    name: str
    metric: str
    items: list


def test_prior_records_score_the_prior_answer_with_the_benchmarks_metric() -> None:
    train = [_sample("count-train-1", "3"), _sample("count-train-2", "3")]
    items = [BenchmarkItem(benchmark="count", id=f"c{i}", question="q", prompt="q", references=(ref,), image=None)
             for i, ref in enumerate(["3", "3", "1", "2"])]
    records = prior_records(train, [_Bench("count", "exact_match", items)])
    assert [r.scored.prediction for r in records] == ["3"] * 4
    assert sum(r.scored.values["score"] for r in records) == pytest.approx(2.0)
