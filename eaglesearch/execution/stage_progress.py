"""Stage progress from a trial to the search's display, at most one event every few seconds per trial.

The training loop tells where it is at every logged step (:class:`~eaglesearch.spec.progress.StageProgress`); a
search shows it (``trial X stage 3/3 sft step 40/200 ... ETA 1m10s``) through its listener. In the inline executor
the event goes to the listener directly; from a Ray worker it travels as a Tune intermediate report (status
``progress``), which the searcher adapter forwards to the driver's listener (``execution/searcher.py``). A
data-parallel trial trains in Ray Train workers, other processes than the Tune trial's: rank 0 puts its events on a
:class:`Relay` (a Ray queue the trial process owns) and a thread of the trial process hands them on. Either way
:class:`Throttle` passes the first and last step of each stage and otherwise one event per ``every_s`` seconds, so
a stage that logs every step neither floods a log file nor slows a Ray trial with reports.
"""

from __future__ import annotations

import json
import math
import threading
import time
from contextlib import suppress
from typing import Any, Self

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


class Relay:
    """Stage progress from rank 0 of a Ray Train worker group to the trial process that runs it.

    Used as a context manager around ``TorchTrainer.fit()``: a Ray queue (an actor that takes no CPU, so a cluster
    whose CPUs the workers hold still places it) receives rank 0's throttled events (:meth:`sender`), and a daemon
    thread of this process hands each to ``receive`` while ``fit`` blocks. On exit the thread stops, what is left is
    handed on in order and the queue actor is killed. The queue outlives a worker group's restart (FailureConfig),
    so a retried group reports through the same one."""

    def __init__(self, receive: StageProgressFn, poll_s: float = 0.5) -> None:
        self.receive, self.poll_s = receive, poll_s
        self.queue: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        from ray.util.queue import Queue

        self.queue = Queue(maxsize=256, actor_options={"num_cpus": 0})
        self._thread = threading.Thread(target=self._drain, name="eaglesearch-progress-relay", daemon=True)
        self._thread.start()
        return self

    def _drain(self) -> None:
        from ray.util.queue import Empty

        while not self._stop.is_set():
            try:
                event = self.queue.get(timeout=self.poll_s)
            except Empty:
                continue
            except Exception:  # noqa: BLE001 - the queue is gone (shut down): nothing more will come
                return
            with suppress(Exception):  # progress is display: a failed hand-on never stops the queue's draining
                self.receive(event)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10 * self.poll_s + 5)
        with suppress(Exception):  # best effort: progress is display, never the trial's result
            while not self.queue.empty():
                self.receive(self.queue.get_nowait())
        self.queue.shutdown()

    def sender(self) -> RankSender:
        """What rank 0 calls with each event (picklable: it travels in the train loop's config)."""
        return RankSender(self.queue)


class RankSender:
    """Rank 0's end of a :class:`Relay`: throttled, and never blocking or failing training (a full or lost queue
    drops the event)."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue
        self._throttle: Throttle | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"queue": self.queue, "_throttle": None}

    def _put(self, progress: StageProgress) -> None:
        with suppress(Exception):  # queue full or gone: the display misses one line, training goes on
            self.queue.put_nowait(progress)

    def __call__(self, progress: StageProgress) -> None:
        if self._throttle is None:
            self._throttle = Throttle(self._put)
        self._throttle(progress)
