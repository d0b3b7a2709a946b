"""The function Ray Tune runs in each trial process (importable by reference, as restores require)."""

from __future__ import annotations

from typing import Any


def run_tune_trial(config: dict[str, Any]) -> None:
    import eaglesearch  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads in this fresh process)
    from ray import tune

    from eaglesearch.execution.request import TrialRequest
    from eaglesearch.execution.searcher import report_from_result
    from eaglesearch.execution.worker import execute_trial

    request = TrialRequest.model_validate(config["request"])
    result = execute_trial(request)
    tune.report(report_from_result(result))
