"""Progress events from the controller to whatever displays them (rich console, tests, nothing)."""

from __future__ import annotations

from typing import Protocol

from eaglesearch.search import Proposal
from eaglesearch.spec import TrialResult
from eaglesearch.spec.progress import StageProgress


class SearchListener(Protocol):
    def trial_started(self, proposal: Proposal) -> None: ...

    def stage_progress(self, proposal: Proposal, progress: StageProgress) -> None: ...

    def trial_finished(self, proposal: Proposal, result: TrialResult) -> None: ...


class NullListener:
    def trial_started(self, proposal: Proposal) -> None:
        pass

    def stage_progress(self, proposal: Proposal, progress: StageProgress) -> None:
        pass

    def trial_finished(self, proposal: Proposal, result: TrialResult) -> None:
        pass


_LISTENER: SearchListener = NullListener()


def set_listener(listener: SearchListener | None) -> None:
    """Install the process-wide listener. It lives outside the (pickled, restorable) searcher on purpose."""
    global _LISTENER
    _LISTENER = listener or NullListener()


def listener() -> SearchListener:
    return _LISTENER
