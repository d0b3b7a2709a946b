"""Run a search in this process, one trial at a time, without Ray (``--executor inline``; for debugging)."""

from __future__ import annotations

from eaglesearch.execution.dispatch import Dispatcher
from eaglesearch.execution.stage_progress import Throttle
from eaglesearch.execution.worker import execute_trial
from eaglesearch.trial.data import ProgressFn
from eaglesearch.trial.scope import trial_scope


def run_inline(dispatcher: Dispatcher, progress: ProgressFn | None = None) -> None:
    while not dispatcher.finished:
        request = dispatcher.next_request()
        if request is None:
            if dispatcher.finished:
                break
            raise RuntimeError("the strategy is waiting for results but no trial is in flight; this is a bug")
        key = request.key
        stages = Throttle(lambda event, key=key: dispatcher.stage_progress(key, event))
        with trial_scope(request.trial.seed, request.threads):
            result = execute_trial(request, progress, stage_progress=stages)
        dispatcher.complete(request.key, result)


