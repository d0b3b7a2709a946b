"""The function Ray Tune runs for each trial (importable by reference, as restores require).

CPU trials share warm worker processes (``reuse_actors``, see ``ray_runner``): the first trial of a worker pays
for the imports, the next ones find them loaded. Each trial runs inside ``trial_scope`` (seeded, threads pinned,
its registrations and memory released afterwards, also when a scheduler stops it), so it cannot tell a warm
worker from a fresh one.
"""

from __future__ import annotations

from typing import Any


def run_tune_trial(config: dict[str, Any]) -> None:
    from ray import tune

    import eaglesearch  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads in a fresh process)
    from eaglesearch.execution.request import TrialRequest
    from eaglesearch.execution.searcher import RUNNING, report_from_result
    from eaglesearch.execution.stage_progress import Throttle, progress_report
    from eaglesearch.execution.worker import execute_trial
    from eaglesearch.trial.intermediate import STEP
    from eaglesearch.trial.scope import trial_scope

    request = TrialRequest.model_validate(config["request"])

    def intermediate(metrics: dict[str, float]) -> None:  # a scheduler (ASHA) may stop the trial here
        tune.report({**metrics, "status": RUNNING, "run_id": "", "error": "", "metrics_json": "{}"})

    stages = Throttle(lambda event: tune.report(progress_report(event)))  # forwarded to the driver's listener
    with trial_scope(request.trial.seed, request.threads):
        result = execute_trial(request, report=intermediate if request.eval_every else None, stage_progress=stages)
    final = report_from_result(result)
    if request.eval_every:
        final[STEP] = float(request.trial.train.joint_stages[-1].steps or 0)  # the scheduler's time attribute
    tune.report(final)
