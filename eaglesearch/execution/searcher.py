"""The one Ray Tune ``Searcher`` adapter: any eaglesearch strategy, driven through the Dispatcher.

``suggest`` returns ``None`` while a greedy round is in flight (Tune asks again later) and ``FINISHED`` when the
strategy is done. Its whole state (strategy, in-flight trials) is pickled by Tune's experiment snapshots, so
``Tuner.restore`` after an interruption continues the same rounds.

Under a scheduler (ASHA) a trial also reports intermediate evaluations (status ``running``); one the scheduler
stops completes with such a result, and is recorded and told as ``stopped``. Every trial also reports where it is in
its stages (status ``progress``, ``execution/stage_progress.py``), which :meth:`StrategySearcher.on_trial_result`
hands to the driver's listener; schedulers ignore those reports (they carry no metric).
"""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path
from typing import Any

from ray.tune.search import Searcher

from eaglesearch.execution.dispatch import Dispatcher
from eaglesearch.execution.stage_progress import PROGRESS, progress_from_report
from eaglesearch.spec import TrialResult

RUNNING = "running"
"""Status of an intermediate report: the trial is still training."""


class StrategySearcher(Searcher):
    def __init__(self, dispatcher: Dispatcher) -> None:
        super().__init__(metric="objective", mode="max")
        self.dispatcher = dispatcher
        self.live: dict[str, str] = {}  # Tune trial id → trial key
        self.evaluated: dict[str, dict] = {}  # Tune trial id → its last intermediate evaluation (under a scheduler)

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True

    def suggest(self, trial_id: str) -> dict | str | None:
        request = self.dispatcher.next_request()
        if request is None:
            return Searcher.FINISHED if self.dispatcher.finished else None
        self.live[trial_id] = request.key
        return {"request": request.model_dump(mode="json")}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        key = self.live.get(trial_id)
        progress = progress_from_report(result)
        if key is not None and progress is not None:
            self.dispatcher.stage_progress(key, progress)
        elif result.get("status") == RUNNING:
            self.evaluated[trial_id] = result

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        key = self.live.pop(trial_id, None)
        evaluated = self.evaluated.pop(trial_id, None)
        if key is None:
            return
        if error or not result or "status" not in result:
            self.dispatcher.crashed(key, "the trial process failed repeatedly (crash, OOM or kill); see the Ray logs")
            return
        if result["status"] in (RUNNING, PROGRESS):  # its last report was intermediate: the scheduler stopped it
            self.dispatcher.stopped(key, stopped_result(key, evaluated or result))
            return
        self.dispatcher.complete(key, result_from_report(key, result))

    def save(self, checkpoint_path: str) -> None:
        Path(checkpoint_path).write_bytes(pickle.dumps({"dispatcher": self.dispatcher, "live": self.live,
                                                        "evaluated": self.evaluated}))

    def restore(self, checkpoint_path: str) -> None:
        state = pickle.loads(Path(checkpoint_path).read_bytes())
        self.dispatcher, self.live = state["dispatcher"], state["live"]
        self.evaluated = state.get("evaluated", {})


def report_from_result(result: TrialResult) -> dict[str, Any]:
    """What a trial reports to Tune: flat scalars Tune can store, metrics as JSON."""
    return {
        "objective": result.objective if result.objective is not None else math.nan,
        "status": result.status,
        "error": result.error or "",
        "run_id": result.run_id or "",
        "metrics_json": json.dumps(result.metrics),
    }


def stopped_result(key: str, report: dict[str, Any]) -> TrialResult:
    """What a trial the scheduler stopped tells the strategy: status ``stopped`` (it never wins), no objective,
    and its last intermediate numbers as ``asha/...`` metrics (a partial evaluation, not the trial's result)."""
    from eaglesearch.trial.intermediate import OBJECTIVE, STEP

    metrics = {"asha/stopped_at_step": float(report.get(STEP, math.nan)),
               "asha/objective": float(report.get(OBJECTIVE, math.nan))}
    metrics.update({f"asha/{k.removeprefix('intermediate/')}": float(v) for k, v in report.items()
                    if k.startswith("intermediate/") and isinstance(v, (int, float))})
    step = metrics["asha/stopped_at_step"]
    return TrialResult(key=key, status="stopped", metrics=metrics,
                       error=f"stopped by the ASHA scheduler after step {step:.0f}")


def result_from_report(key: str, report: dict[str, Any]) -> TrialResult:
    objective = report.get("objective")
    return TrialResult(
        key=key,
        status=report["status"],
        objective=None if objective is None or math.isnan(objective) else float(objective),
        metrics=json.loads(report.get("metrics_json") or "{}"),
        error=report.get("error") or None,
        run_id=report.get("run_id") or None,
    )
