"""Stage progress from a trial to the search's display, at most one event every few seconds per trial.

The training loop tells where it is at every logged step (:class:`~eaglesearch.spec.progress.StageProgress`); a
search shows it (``trial X stage 3/3 sft step 40/200 ... ETA 1m10s``) through its listener. In the inline executor
the event goes to the listener directly; from a Ray worker it travels as a Tune intermediate report (status
``progress``), which the searcher adapter forwards to the driver's listener (``execution/searcher.py``). Either way
:class:`Throttle` passes the first and last step of each stage and otherwise one event per ``every_s`` seconds, so
a stage that logs every step neither floods a log file nor slows a Ray trial with reports.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

from eaglesearch.spec.progress import StageProgress, StageProgressFn

PROGRESS = "progress"
"""Status of a Tune intermediate report that carries stage progress (not an evaluation: schedulers ignore it)."""
PROGRESS_FIELD = "stage_progress_json"
EVERY_S = 10.0
"""Default seconds between two progress events of one trial (a stage's first and last step always pass)."""


class Throttle:
    """Passes a stage's first and last step and otherwise at most one event every ``every_s`` seconds."""

    def __init__(self, send: StageProgressFn, every_s: float = EVERY_S) -> None:
        self.send, self.every_s = send, every_s
        self._last: float | None = None
        self._stage: str | None = None

    def __call__(self, progress: StageProgress) -> None:
        now = time.monotonic()
        new_stage = progress.label != self._stage
        due = self._last is None or now - self._last >= self.every_s
        if new_stage or due or progress.step >= progress.steps:
            self._stage, self._last = progress.label, now
            self.send(progress)


def progress_report(progress: StageProgress) -> dict[str, Any]:
    """A Tune intermediate report carrying ``progress`` (flat scalars and one JSON field, like the final report).

    Tune requires the searcher's metric in every report, so ``objective`` is there, as NaN; without the scheduler's
    time attribute (``step``) ASHA ignores the report."""
    return {"objective": math.nan, "status": PROGRESS, PROGRESS_FIELD: json.dumps(progress.to_json()), "run_id": "",
            "error": "", "metrics_json": "{}"}


def progress_from_report(report: dict[str, Any]) -> StageProgress | None:
    """The stage progress a Tune report carries; None for any other report."""
    if report.get("status") != PROGRESS or not report.get(PROGRESS_FIELD):
        return None
    return StageProgress.from_json(json.loads(report[PROGRESS_FIELD]))
