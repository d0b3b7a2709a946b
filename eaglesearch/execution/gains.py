"""The greedy strategy's :class:`~eaglesearch.search.GainComparator`, served from the record.

Every trial logs its per-item predictions (``predictions.jsonl``) and its spec with its MLflow run before its
result reaches the controller, under either executor (the inline runner and Ray workers both record through
``execution/worker.py``), and a result carries its run id. So the controller pairs a candidate with the incumbent
from those artifacts, without any model output recomputed and without the worker shipping items back: the same
route ``eaglesearch report`` takes for tied ranks (``app/ties.py``). A cached trial's artifacts live with the
run it was copied from (``eaglesearch.cached_from``).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from eaglesearch.search import ComparisonUnavailable, PairedGain, RoundDecision
from eaglesearch.spec import TrialResult, TrialSpec
from eaglesearch.tracking import TrackingStore
from eaglesearch.tracking.records import ARTIFACT_TRIAL_SPEC, TAG_CACHED_FROM, TAG_DECISION, TAG_RULE, TAG_RUNGS
from eaglesearch.trial.scoring import PREDICTIONS, ScoredTrial, load_scored, paired_metric


@dataclass
class RecordComparator:
    """Pairs two recorded trials item by item (``trial/scoring.py``'s paired bootstrap, seed 0). Picklable: the
    store client and the loaded items are dropped and re-read after unpickling."""

    tracking_uri: str
    _store: TrackingStore | None = field(default=None, repr=False)
    _scored: dict[str, ScoredTrial] = field(default_factory=dict, repr=False)  # by run id

    def __getstate__(self) -> dict:
        return {"tracking_uri": self.tracking_uri, "_store": None, "_scored": {}}

    @property
    def store(self) -> TrackingStore:
        if self._store is None:
            self._store = TrackingStore(self.tracking_uri)
        return self._store

    def compare(self, candidate: TrialResult, incumbent: TrialResult, metric: str, confidence: float) -> PairedGain:
        a, b = self._load(candidate), self._load(incumbent)
        try:
            c = paired_metric(a, b, metric, confidence)
        except (ValueError, KeyError) as err:
            raise ComparisonUnavailable(f"trials {candidate.key} and {incumbent.key}: {err}") from err
        return PairedGain(delta=c.delta, low=c.low, high=c.high, p_value=c.p_value)

    def _load(self, result: TrialResult) -> ScoredTrial:
        if result.run_id is None:
            raise ComparisonUnavailable(f"trial {result.key} has no run in the record, so no predictions to pair")
        scored = self._scored.get(result.run_id)
        if scored is None:
            scored = self._scored[result.run_id] = self._download(result)
        return scored

    def _download(self, result: TrialResult) -> ScoredTrial:
        run_id = source = str(result.run_id)
        try:
            source = self.store.get_run(run_id).tags.get(TAG_CACHED_FROM) or run_id
            with tempfile.TemporaryDirectory() as tmp:
                spec = Path(self.store.download_artifact(source, ARTIFACT_TRIAL_SPEC, tmp)).read_text()
                trial = TrialSpec.model_validate_json(spec)
                return load_scored(Path(self.store.download_artifact(source, PREDICTIONS, tmp)), trial)
        except Exception as err:
            raise ComparisonUnavailable(f"trial {result.key}: cannot read {PREDICTIONS} of run {source} "
                                        f"({type(err).__name__}: {err})") from err


GAIN_METRICS = ("round/gain", "round/gain_low", "round/gain_high", "round/gain_level", "round/gain_p")
"""What a greedy round's verdict on a trial records on its run (with the decision as a tag): the gain over the
incumbent, its paired interval, the interval's (corrected) confidence level and the bootstrap p-value."""


def record_rounds(store: TrackingStore, parent_id: str, decisions: Sequence[RoundDecision]) -> None:
    """What a round-based strategy decided, on the record: the adopted runs tagged chosen, the stop reason, the
    adoption rule and (halving) the rungs' rank correlations as JSON on the parent; on each candidate's run the
    round's decision as a tag and its gain, interval, level and p-value as ``round/...`` metrics."""
    tags = {}
    rule = next((d.rule for d in decisions if d.rule), None)
    if rule:
        tags[TAG_RULE] = rule
    rungs = {str(d.round): [[c.budget, c.rho, c.n] for c in d.rungs] for d in decisions if d.rungs}
    if rungs:
        tags[TAG_RUNGS] = json.dumps(rungs)
    store.record_choices(parent_id, [d.chosen_key for d in decisions if d.chosen_key], decisions[-1].stopped, tags)
    runs = store.trial_runs(parent_id)
    run_of = dict(zip(runs["key"], runs["run_id"], strict=True))
    for d in decisions:
        for v in d.verdicts:
            if v.key in run_of:
                values = (v.gain, v.low, v.high, v.confidence, v.p_value)
                numbers = {n: x for n, x in zip(GAIN_METRICS, values, strict=True) if x is not None}
                store.log_metrics(str(run_of[v.key]), numbers, tags={TAG_DECISION: v.decision})
