"""Metrics, params and tags packed into as few MLflow ``log_batch`` requests as its limits allow.

On a tracking server every request is a round trip and a database transaction, so a trial's record is written in
batches: a run's params together, its loss curve with its final metrics, a stage run's params, curve and metrics in
one request. Tags travel in the *last* batch: a status tag (``eaglesearch.status = finished``) is only ever written
with, or after, every number it vouches for.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

from mlflow.entities import Metric, Param, RunTag

from eaglesearch.tracking.records import MAX_PARAM_VALUE, METRICS_PER_BATCH, PARAMS_PER_BATCH

TAGS_PER_BATCH = 100
ENTITIES_PER_BATCH = 1000  # metrics + params + tags in one request (MLflow's MAX_ENTITIES_PER_BATCH)


def curve(name: str, points: Iterable[tuple[int, float]]) -> list[Metric]:
    """A metric's history (``(step, value)`` pairs, e.g. a loss curve) as MLflow metrics."""
    now = int(time.time() * 1000)
    return [Metric(name, float(v), now, int(s)) for s, v in points]


def latest(values: dict[str, float] | dict[str, float | None], step: int = 0) -> list[Metric]:
    """Values at ``step`` as MLflow metrics; None values are left out."""
    now = int(time.time() * 1000)
    return [Metric(k, float(v), now, int(step)) for k, v in values.items() if v is not None]


def as_params(params: dict[str, str]) -> list[Param]:
    return [Param(str(k), str(v)[:MAX_PARAM_VALUE]) for k, v in params.items()]


def as_tags(tags: dict[str, str] | None) -> list[RunTag]:
    return [RunTag(k, v) for k, v in (tags or {}).items()]


def pack(metrics: Iterable[Metric] = (), params: Iterable[Param] = (), tags: Iterable[RunTag] = ()
         ) -> Iterator[tuple[list[Metric], list[Param], list[RunTag]]]:
    """``(metrics, params, tags)`` per request, in order; the tags all in the last one. Nothing to log: nothing."""
    metrics, params, tags = list(metrics), list(params), list(tags)
    if len(tags) > TAGS_PER_BATCH:
        raise ValueError(f"{len(tags)} tags in one write; MLflow takes at most {TAGS_PER_BATCH} per request")
    while metrics or params:
        chunk_params, params = params[:PARAMS_PER_BATCH], params[PARAMS_PER_BATCH:]
        room = min(METRICS_PER_BATCH, ENTITIES_PER_BATCH - len(chunk_params) - len(tags))
        chunk_metrics, metrics = metrics[:room], metrics[room:]
        last = not metrics and not params
        yield chunk_metrics, chunk_params, tags if last else []
        if last:
            return
    if tags:
        yield [], [], tags


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    """``items`` in consecutive lists of at most ``size``."""
    for i in range(0, len(items), size):
        yield items[i:i + size]
