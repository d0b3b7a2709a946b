"""What the MLflow UI (3.x) reads to show a search as a leaderboard; names and pure builders, no I/O.

Read from the installed UI bundle (mlflow/server/js/build) and its source:

- ``mlflow.experimentKind`` (experiment tag): ``custom_model_development`` marks a model-training experiment
  (the other kinds are GenAI ones). MLflow 3.17's OSS UI takes the page's kind from its GenAI / Model training
  switch (URL parameter ``workflowType=machine_learning``, else the browser's saved choice, GenAI by default) and
  reads the tag only where that switch is off, so our links carry the parameter as well.
- ``mlflow.note.content`` (experiment tag): the experiment's description, shown above the runs table.
- The runs table's visible columns and order live in browser-side UI state (default: Source, Models, Dataset;
  no metric column); the one server-side way in is a saved view: an experiment tag
  ``mlflow.sharedViewState.<id>`` holding ``{"name", "createdAt", "state"}`` where ``state`` is the JSON of search
  facets (``searchFilter``, ``orderByKey``, ``orderByAsc``...) and UI fields (``selectedColumns``...). It is listed in
  the page's "Views" menu and opened directly by ``#/experiments/<id>/runs?viewStateShareKey=<id>``. A shared view
  does not carry ``runsExpanded``, so ours filters to the trials of the latest search run instead (they then list
  flat, ordered by the objective).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlencode

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND_TRAINING = "custom_model_development"
NOTE_TAG = "mlflow.note.content"
VIEW_TAG_PREFIX = "mlflow.sharedViewState."
VIEW_ID = "eaglesearch-leaderboard"
VIEW_TAG = VIEW_TAG_PREFIX + VIEW_ID
VIEW_NAME = "eaglesearch leaderboard"

# On a search's parent run: the best trial's label and key (tags) and its objective with interval (metrics).
TAG_BEST_CANDIDATE = "eaglesearch.best_candidate"
TAG_BEST_KEY = "eaglesearch.best_key"
METRIC_BEST = "best_objective"
METRIC_BEST_LOW = "best_objective_low"
METRIC_BEST_HIGH = "best_objective_high"
# On each trial run: its rank label ("1", "=2"; empty when unranked).
TAG_RANK = "eaglesearch.rank"
# Trial columns the view shows, before the per-benchmark scores and after them.
LEAD_COLUMNS = ("objective", "objective_low", "objective_high")
TAIL_COLUMNS = ("cost/vision_gflops",)
TAG_COLUMNS = ("eaglesearch.status", "eaglesearch.round")


@dataclass(frozen=True)
class Leaderboard:
    """What ``TrackingStore.publish_leaderboard`` writes for one search run."""

    parent_id: str
    description: str  # markdown, becomes the experiment's description
    run_names: dict[str, str]  # trial run id -> display name ("1. clip+sam")
    ranks: dict[str, str]  # trial run id -> rank label
    metric_columns: tuple[str, ...]  # metrics the view shows, in order
    mode: str  # "max" or "min": how the view sorts the objective
    created_ms: int  # the view's creation time (the search run's start: stable across rebuilds)
    best_candidate: str | None = None
    best_key: str | None = None
    best_objective: float | None = None
    best_low: float | None = None
    best_high: float | None = None


def column_key(kind: str, name: str) -> str:
    """The UI's canonical column id: ``metrics.`objective```."""
    return f"{kind}.`{name}`"


def view_state(board: Leaderboard) -> dict:
    """The saved view's state: the search run's trials, best first, with the curated metric columns visible."""
    columns = [column_key("metrics", m) for m in board.metric_columns]
    columns += [column_key("tags", t) for t in TAG_COLUMNS]
    return {
        "searchFilter": f"tags.mlflow.parentRunId = '{board.parent_id}'",
        "orderByKey": column_key("metrics", "objective"),
        "orderByAsc": board.mode == "min",
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "modelVersionFilter": "All Runs",
        "datasetsFilter": [],
        "selectedColumns": columns,
        "columnOrder": columns,  # as listed (objective, interval, scores, cost), not alphabetically
    }


def view_tag_value(board: Leaderboard) -> str:
    """The experiment tag value of the saved view (an envelope the UI lists by name)."""
    return json.dumps({"name": VIEW_NAME, "createdAt": board.created_ms, "updatedAt": board.created_ms,
                       "state": json.dumps(view_state(board), sort_keys=True)}, sort_keys=True)


def leaderboard_url(base_url: str, experiment_id: str) -> str:
    """The runs page of an experiment opened on the eaglesearch leaderboard view, in the model-training UI."""
    query = urlencode({"workflowType": "machine_learning", "viewStateShareKey": VIEW_ID})
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs?{query}"
