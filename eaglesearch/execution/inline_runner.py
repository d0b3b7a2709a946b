"""Run a search in this process, one trial at a time, without Ray (``--executor inline``; for debugging)."""

from __future__ import annotations

from eaglesearch.execution.dispatch import Dispatcher
from eaglesearch.execution.worker import execute_trial
from eaglesearch.trial.data import ProgressFn


def run_inline(dispatcher: Dispatcher, progress: ProgressFn | None = None) -> None:
    while not dispatcher.finished:
        request = dispatcher.next_request()
        if request is None:
            if dispatcher.finished:
                break
            raise RuntimeError("the strategy is waiting for results but no trial is in flight; this is a bug")
        dispatcher.complete(request.key, execute_trial(request, progress))


def replay(dispatcher: Dispatcher) -> bool:
    """Drive a fresh strategy with recorded results only. True when the search is complete in the record."""
    while not dispatcher.finished:
        if dispatcher.next_request() is None:
            return dispatcher.finished
        return False
    return True
