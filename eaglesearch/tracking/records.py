"""Names used in the record (tags, artifacts) and conversions from MLflow runs to our types.

Pure functions over ``mlflow.entities.Run`` objects; no I/O here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from eaglesearch.spec.trial import TrialResult

# Tags (full names). Child runs carry the trial tags; parent runs carry kind=search, fingerprint, tune_name.
PREFIX = "eaglesearch."
TAG_KEY = "eaglesearch.key"
TAG_SEARCH = "eaglesearch.search"
TAG_ROUND = "eaglesearch.round"
TAG_ROLE = "eaglesearch.role"
TAG_ADDED = "eaglesearch.added"
TAG_LABEL = "eaglesearch.label"
TAG_STRATEGY = "eaglesearch.strategy"
TAG_STATUS = "eaglesearch.status"
TAG_CACHED_FROM = "eaglesearch.cached_from"
TAG_CHOSEN = "eaglesearch.chosen"  # "true" on the trials a round-based strategy adopted (greedy)
TAG_STOPPED = "eaglesearch.stopped"  # on the parent: why the strategy stopped ("" when it ran its course)
TAG_DECISION = "eaglesearch.decision"  # a greedy round's verdict on the trial ("adopted", "not significant", ...)
TAG_RULE = "eaglesearch.adopt_rule"  # on the parent: the rule greedy rounds were decided by
TAG_RUNGS = "eaglesearch.rung_spearman"  # on the parent: JSON, round → [[budget, rho or null, n], ...] (halving)
TAG_ERROR = "eaglesearch.error"
TAG_KIND = "eaglesearch.kind"
TAG_FINGERPRINT = "eaglesearch.fingerprint"
TAG_TUNE_NAME = "eaglesearch.tune_name"
TAG_PARENT = "mlflow.parentRunId"

TAG_STAGE = "eaglesearch.stage"
TAG_STAGE_INDEX = "eaglesearch.stage_index"
TAG_STAGE_EXPERT = "eaglesearch.stage_expert"
TAG_ARTIFACT_KEY = "eaglesearch.artifact_key"
TAG_TRIAL_KEY = "eaglesearch.trial_key"

KIND_SEARCH = "search"
KIND_TRIAL = "trial"
KIND_STAGE = "stage"  # a training stage of a trial: a nested run under the trial's run
STAGE_TRAINED = "trained"
STAGE_REUSED = "reused"
STATUS_RUNNING = "running"
STATUS_FINISHED = "finished"
STATUS_FAILED = "failed"
STATUS_CACHED = "cached"
STATUS_STOPPED = "stopped"  # ended early by a scheduler (ASHA); served within its search only, never as a cache hit
DONE_STATUSES = (STATUS_FINISHED, STATUS_CACHED, STATUS_FAILED, STATUS_STOPPED)

ERROR_TAG_CHARS = 500
# MLflow limits (3.x): param values <= 6000 chars, <= 100 params/tags and <= 1000 metrics per log_batch.
MAX_PARAM_VALUE = 6000
PARAMS_PER_BATCH = 100
METRICS_PER_BATCH = 1000

ARTIFACT_SEARCH_SPACE = "search_space.yaml"
ARTIFACT_TRIAL_SPEC = "trial_spec.json"
ARTIFACT_ERROR = "error.txt"

# Short column names of the trial tags in ``trial_runs`` frames.
TAG_COLUMNS: dict[str, str] = {
    TAG_KEY: "key", TAG_SEARCH: "search", TAG_ROUND: "round", TAG_ROLE: "role", TAG_ADDED: "added",
    TAG_LABEL: "label", TAG_STRATEGY: "strategy", TAG_STATUS: "status_tag", TAG_ERROR: "error",
    TAG_CACHED_FROM: "cached_from", TAG_CHOSEN: "chosen_tag", TAG_DECISION: "decision",
}
BASE_COLUMNS = ["run_id", "status", "start_time", "end_time", *TAG_COLUMNS.values()]
PARAM_PREFIX = "param."

# How much a run counts when one key appears more than once under a parent: completed runs beat live ones,
# live ones beat runs a killed worker left behind.
_STATUS_PRIORITY = {"FINISHED": 3, "FAILED": 3, "RUNNING": 2, "SCHEDULED": 1, "KILLED": 0}


@dataclass(frozen=True)
class RunRecord:
    """A run as plain values: what ``report/`` needs of a parent run without touching MLflow types."""

    run_id: str
    name: str
    experiment_id: str
    status: str
    start_time: pd.Timestamp | None
    end_time: pd.Timestamp | None
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


def filter_value(value: str) -> str:
    """Quote a value for an MLflow filter string."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ValueError(f"cannot search for a value holding both quote characters: {value!r}")


def tag_filter(tags: dict[str, str], status: str | None = None) -> str:
    """``tags.`eaglesearch.key` = '...' and ...`` for full tag names, plus the MLflow run status if given."""
    parts = [f"tags.`{name}` = {filter_value(value)}" for name, value in tags.items()]
    if status is not None:
        parts.append(f"attributes.status = {filter_value(status)}")
    return " and ".join(parts)


def timestamp(ms: int | None) -> pd.Timestamp | None:
    return None if ms is None else pd.Timestamp(ms, unit="ms", tz="UTC")


def run_record(run: Any) -> RunRecord:
    info = run.info
    return RunRecord(
        run_id=info.run_id, name=info.run_name or "", experiment_id=info.experiment_id, status=info.status,
        start_time=timestamp(info.start_time), end_time=timestamp(info.end_time),
        params=dict(run.data.params), tags=dict(run.data.tags), metrics=dict(run.data.metrics),
    )


def trial_result(run: Any) -> TrialResult:
    """A finished/cached/failed child run rebuilt as the TrialResult it recorded (latest metric values)."""
    tags = run.data.tags
    metrics = {k: float(v) for k, v in run.data.metrics.items()}
    objective = metrics.get("objective")
    if objective is not None and math.isnan(objective):
        objective = None
    status = tags.get(TAG_STATUS, STATUS_FINISHED)
    if status not in DONE_STATUSES:
        raise ValueError(f"run {run.info.run_id} has status tag {status!r}, not one of {DONE_STATUSES}")
    return TrialResult(
        key=tags[TAG_KEY], status=status, objective=objective, metrics=metrics,
        error=tags.get(TAG_ERROR), run_id=run.info.run_id,
    )


@dataclass(frozen=True)
class TrialLookup:
    """What the record holds for one trial key, read in one query: its completed run under this search's parent
    (``in_parent``), else the latest finished trial run of any search (``finished``, a source to serve from), and
    the key's runs left RUNNING under this parent by a worker that died (``running``: the next attempt marks them
    KILLED without querying again)."""

    in_parent: TrialResult | None
    finished: TrialResult | None
    running: tuple[str, ...] = ()


def is_done(run: Any) -> bool:
    """A completed child run: FINISHED or FAILED, with a done status tag (finished, cached, failed, stopped)."""
    return run.info.status in ("FINISHED", "FAILED") and run.data.tags.get(TAG_STATUS) in DONE_STATUSES


def is_finished_trial(run: Any) -> bool:
    """A trial run that trained to the end (not failed, cached or stopped): what another search may be served."""
    tags = run.data.tags
    return (run.info.status == "FINISHED" and tags.get(TAG_STATUS) == STATUS_FINISHED
            and tags.get(TAG_KIND) == KIND_TRIAL)


def lookup_in(runs: list[Any], parent_id: str) -> TrialLookup:
    """Both answers of a lookup from the runs carrying one key (any experiment, any parent)."""
    here = [r for r in runs if r.data.tags.get(TAG_PARENT) == parent_id]
    running = tuple(r.info.run_id for r in here if r.info.status == "RUNNING")
    mine = [r for r in here if is_done(r)]
    if mine:
        return TrialLookup(in_parent=trial_result(max(mine, key=run_priority)), finished=None, running=running)
    sources = [r for r in runs if is_finished_trial(r)]
    best = max(sources, key=lambda r: r.info.end_time or 0) if sources else None
    return TrialLookup(in_parent=None, finished=None if best is None else trial_result(best), running=running)


def results_by_key(runs: list[Any]) -> dict[str, TrialResult]:
    """The completed result of every key among a parent's child runs (its latest completed run)."""
    best: dict[str, Any] = {}
    for run in runs:
        key = run.data.tags.get(TAG_KEY)
        if key is not None and is_done(run) and (key not in best or run_priority(run) > run_priority(best[key])):
            best[key] = run
    return {key: trial_result(run) for key, run in best.items()}


def run_priority(run: Any) -> tuple[int, int, int]:
    """Sort key: higher is the run to keep among duplicates of one key (completed, then most recent)."""
    info = run.info
    return (_STATUS_PRIORITY.get(info.status, 0), info.end_time or 0, info.start_time or 0)


def dedupe_by_key(runs: list[Any]) -> list[Any]:
    """Keep one run per trial key: the completed one that ended last (runs without a key are all kept)."""
    best: dict[str, Any] = {}
    keyless: list[Any] = []
    for run in runs:
        key = run.data.tags.get(TAG_KEY)
        if key is None:
            keyless.append(run)
        elif key not in best or run_priority(run) > run_priority(best[key]):
            best[key] = run
    return [*best.values(), *keyless]


def runs_frame(runs: list[Any]) -> pd.DataFrame:
    """One row per run: ids, MLflow status, short tag columns, ``param.<name>`` and metric columns.

    Sorted by round, then start time. ``round`` is a nullable integer.
    """
    rows: list[dict[str, Any]] = []
    for run in runs:
        info, data = run.info, run.data
        row: dict[str, Any] = {
            "run_id": info.run_id, "status": info.status,
            "start_time": timestamp(info.start_time), "end_time": timestamp(info.end_time),
        }
        for tag, column in TAG_COLUMNS.items():
            row[column] = data.tags.get(tag)
        row.update({f"{PARAM_PREFIX}{k}": v for k, v in data.params.items()})
        row.update({k: float(v) for k, v in data.metrics.items()})
        rows.append(row)
    frame = pd.DataFrame(rows, columns=None if rows else BASE_COLUMNS)
    for column in BASE_COLUMNS:
        if column not in frame.columns:
            frame[column] = None
    frame["round"] = pd.to_numeric(frame["round"], errors="coerce").astype("Int64")
    frame["start_time"] = pd.to_datetime(frame["start_time"], utc=True)
    frame["end_time"] = pd.to_datetime(frame["end_time"], utc=True)
    params = sorted(c for c in frame.columns if c.startswith(PARAM_PREFIX))
    metrics = sorted(c for c in frame.columns if c not in BASE_COLUMNS and not c.startswith(PARAM_PREFIX))
    frame = frame[[*BASE_COLUMNS, *params, *metrics]]
    frame = frame.sort_values(["round", "start_time"], na_position="last", kind="stable")
    return frame.reset_index(drop=True)


def source_run_id(row: Mapping[str, Any]) -> str:
    """The run holding a trial row's artifacts (predictions, spec): the run it was cached from, else its own.

    In a frame mixing cached and trained trials, ``cached_from`` is NaN (a truthy float) on trained rows."""
    cached = row.get("cached_from")
    return cached if isinstance(cached, str) and cached else str(row["run_id"])


STAGE_COLUMNS = ["run_id", "stage", "index", "expert", "status", "artifact_key", "trial_key", "parent"]


def stage_frame(runs: list[Any]) -> pd.DataFrame:
    """One row per stage run (:data:`STAGE_COLUMNS`, then its latest metrics); the columns even when empty."""
    rows = []
    for run in runs:
        t = run.data.tags
        rows.append({"run_id": run.info.run_id, "stage": t.get(TAG_STAGE), "index": int(t.get(TAG_STAGE_INDEX, 0)),
                     "expert": t.get(TAG_STAGE_EXPERT), "status": t.get(TAG_STATUS),
                     "artifact_key": t.get(TAG_ARTIFACT_KEY), "trial_key": t.get(TAG_TRIAL_KEY),
                     "parent": t.get(TAG_PARENT), **run.data.metrics})
    frame = pd.DataFrame(rows)
    return frame if len(frame) else pd.DataFrame(columns=STAGE_COLUMNS)
