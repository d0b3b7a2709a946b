"""A findings run in MLflow: one parent run per invocation, one child run per finding.

The parent (run name ``findings``, tag ``eaglesearch.kind = findings``) holds the rendered report files as
artifacts (``findings.md``, ``findings.html``) and the run's settings as params; each child (``finding-<n>``, tagged
with its verdict) holds the comparisons of that finding: params ``comparison/<i>`` name design a − design b, metrics
``delta/<i>``, ``low/<i>``, ``high/<i>`` and ``p_value/<i>`` give the paired difference, its 95% interval and p-value.
Comparisons are numbered because design names hold characters MLflow metric names may not (``@``, ``+``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from eaglesearch.tracking import records as R
from eaglesearch.tracking.store import TrackingStore

KIND_FINDINGS = "findings"
KIND_FINDING = "finding"
TAG_VERDICT = "eaglesearch.verdict"


@dataclass(frozen=True)
class FindingRun:
    """One child run: its name, verdict, params and metrics."""

    name: str
    verdict: str
    params: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)


def record_findings(uri: str, experiment: str, findings: Sequence[FindingRun], params: Mapping[str, str],
                    texts: Mapping[str, str]) -> str:
    """Log a findings parent run in ``experiment`` with a child per finding and ``texts`` (artifact path → text)
    as artifacts; the parent's id."""
    store = TrackingStore(uri)
    client = MlflowClient(tracking_uri=store.uri)
    experiment_id = store.ensure_experiment(experiment)
    parent = client.create_run(experiment_id, run_name="findings",
                               tags={R.TAG_KIND: KIND_FINDINGS, R.TAG_SEARCH: experiment}).info.run_id
    _log(client, parent, params, {})
    for path, text in texts.items():
        client.log_text(parent, text, path)
    for finding in findings:
        child = client.create_run(experiment_id, run_name=finding.name, tags={
            R.TAG_PARENT: parent, R.TAG_KIND: KIND_FINDING, R.TAG_SEARCH: experiment, TAG_VERDICT: finding.verdict,
        }).info.run_id
        _log(client, child, finding.params, finding.metrics)
        client.set_terminated(child, "FINISHED")
    client.set_terminated(parent, "FINISHED")
    return parent


def _log(client: MlflowClient, run_id: str, params: Mapping[str, str], metrics: Mapping[str, float]) -> None:
    client.log_batch(run_id, params=[Param(k, str(v)[:R.MAX_PARAM_VALUE]) for k, v in params.items()],
                     metrics=[Metric(k, float(v), 0, 0) for k, v in metrics.items()])
