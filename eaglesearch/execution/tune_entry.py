"""The function Ray Tune runs in each trial process (importable by reference, as restores require)."""

from __future__ import annotations

from typing import Any


def run_tune_trial(config: dict[str, Any]) -> None:
    from ray import tune

    import eaglesearch  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads in this fresh process)
    from eaglesearch.execution.request import TrialRequest
    from eaglesearch.execution.searcher import RUNNING, report_from_result
    from eaglesearch.execution.worker import execute_trial
    from eaglesearch.trial.intermediate import STEP

    request = TrialRequest.model_validate(config["request"])

    def intermediate(metrics: dict[str, float]) -> None:  # a scheduler (ASHA) may stop the trial here
        tune.report({**metrics, "status": RUNNING, "run_id": "", "error": "", "metrics_json": "{}"})

    result = execute_trial(request, report=intermediate if request.eval_every else None)
    final = report_from_result(result)
    if request.eval_every:
        final[STEP] = float(request.trial.train.joint_stages[-1].steps or 0)  # the scheduler's time attribute
    tune.report(final)
