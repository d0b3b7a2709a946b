"""``pope_lmms_eval``: lmms-eval's POPE rule, the one Eagle's published POPE numbers were scored with.

lmms-eval lower-cases and strips the answer and needs it to be exactly ``yes``/``no``; the official ``eval_pope``
reads case-sensitive tokens of the first sentence, so ``NO`` is "yes" officially and "no" under lmms-eval. Pinned
vectors show the difference, a fuzz test compares the metric with a transcription of lmms-eval's code
(tests/reference_scorers.py), and the paper recipes are checked to score POPE that way.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eaglesearch.evaluate.items import BenchmarkItem
from eaglesearch.evaluate.metrics import get_metric, parse_lmms_eval_pope, parse_pope_answer
from eaglesearch.spec.load import load_recipe
from eaglesearch.trial.data import scoring_metric
from tests.reference_scorers import eval_pope, lmms_eval_pope

ROOT = Path(__file__).resolve().parent.parent
LMMS = get_metric("pope_lmms_eval")
OFFICIAL = get_metric("pope")


def item(label: str, n: int) -> BenchmarkItem:
    return BenchmarkItem(benchmark="pope", id=str(n), question="?", prompt="?", references=(label,))


def aggregate(metric, answers: list[str], labels: list[str]) -> dict[str, float]:
    return metric.aggregate([metric.score_item(a, item(lab, n)) for n, (a, lab) in
                             enumerate(zip(answers, labels, strict=True))])


@pytest.mark.parametrize(("answer", "official", "lmms_eval"), [
    ("NO", "yes", "no"),  # the case the two rules part on: no lower-casing officially
    ("nO", "yes", "no"),
    ("No", "no", "no"),
    ("  no\n", "yes", "no"),  # official splits on single spaces: "no\n" is not the token "no"
    ("YES", "yes", "yes"),
    ("Yes.", "yes", None),  # lmms-eval needs the bare word: a period makes it unknown
    ("No, there is no dog.", "no", None),
    ("Not sure", "yes", None),
])
def test_reference_vectors_official_vs_lmms_eval(answer: str, official: str, lmms_eval: str | None) -> None:
    assert parse_pope_answer(answer) == official
    assert parse_lmms_eval_pope(answer) == lmms_eval


def test_an_uppercase_no_is_right_under_lmms_eval_and_wrong_officially() -> None:
    answers, labels = ["NO", "NO", "yes"], ["no", "no", "yes"]
    assert aggregate(OFFICIAL, answers, labels)["accuracy"] == pytest.approx(1 / 3)  # "NO" read as a yes: 2 FPs
    lmms = aggregate(LMMS, answers, labels)
    assert (lmms["accuracy"], lmms["tn"], lmms["fp"]) == (1.0, 2.0, 0.0)


def test_recall_counts_only_explicit_answers_as_lmms_eval_does() -> None:
    answers, labels = ["yes", "yes", "no", "Yes."], ["yes"] * 4
    lmms = aggregate(LMMS, answers, labels)
    assert lmms["recall"] == pytest.approx(2 / 3)  # the off-format "Yes." leaves lmms-eval's denominator
    assert lmms["accuracy"] == 0.5 and lmms["unknown_rate"] == 0.25
    assert aggregate(get_metric("pope_lenient"), answers, labels)["recall"] == pytest.approx(3 / 4)
    assert aggregate(OFFICIAL, answers, labels)["recall"] == pytest.approx(3 / 4)


ANSWERS = st.sampled_from(["yes", "no", "Yes", "No", "YES", "NO", " yes ", "no\n", "Yes.", "no.", "Not sure",
                           "There is a dog.", "No, there is not.", "nope", ""])


@settings(max_examples=150, deadline=None)
@given(pairs=st.lists(st.tuples(ANSWERS, st.sampled_from(["yes", "no"])), min_size=1, max_size=30))
def test_matches_lmms_eval_code_and_official_matches_eval_pope(pairs: list[tuple[str, str]]) -> None:
    answers, labels = [a for a, _ in pairs], [lab for _, lab in pairs]
    ours, theirs = aggregate(LMMS, answers, labels), lmms_eval_pope(answers, labels)
    assert {k: ours[k] for k in theirs} == pytest.approx(theirs)
    official = aggregate(OFFICIAL, answers, labels)
    try:
        expected = eval_pope(answers, labels)
    except ZeroDivisionError:
        return  # the official script stops where we report 0.0 (tested in test_metrics_reference.py)
    assert official["accuracy"] == pytest.approx(expected["accuracy"])


@pytest.mark.parametrize("recipe", ["paper_eagle_7b.yaml", "eagle_prealign.yaml", "llava.yaml"])
def test_paper_recipes_score_pope_as_eagle_did(recipe: str) -> None:
    loaded, _ = load_recipe(ROOT / "experiments" / recipe)
    pope = loaded.data.eval["pope"]
    assert (pope.kind, pope.scoring, pope.metric) == ("pope", "generate", "pope_lmms_eval")
    assert scoring_metric("pope", pope.kind, pope.metric) == "pope_lmms_eval"


def test_a_metric_must_be_a_variant_of_the_kinds() -> None:
    assert scoring_metric("pope", "pope", None) == "pope"
    assert scoring_metric("pope", "pope", "pope_lenient") == "pope_lenient"
    with pytest.raises(ValueError, match=r"data\.eval\.tv\.metric: 'pope_lmms_eval' cannot score a 'textvqa' "
                                         r"benchmark; choose one of vqa_accuracy_evalai"):
        scoring_metric("tv", "textvqa", "pope_lmms_eval")
