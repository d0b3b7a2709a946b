"""The findings report (eaglesearch/report/findings.py) and its MLflow record (eaglesearch/tracking/findings.py).

Outcomes are built by hand here: the measurement itself is ``benchmarks/findings.py`` (minutes per design).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from eaglesearch.report.findings import (
    COMPETITIVE,
    CONTRADICTED,
    HOLDS,
    UNRESOLVED,
    WORSE,
    Comparison,
    FindingOutcome,
    FindingsRun,
    findings_html,
    findings_markdown,
    verdict,
)
from eaglesearch.tracking.findings import TAG_VERDICT, FindingRun, record_findings


def comparison(a: str, b: str, delta: float, low: float, high: float, parity: bool = False) -> Comparison:
    return Comparison(a=a, b=b, delta=delta, low=low, high=high, p_value=0.01, n_units=360, per_seed=(delta, delta),
                      verdict=verdict(low, high, parity), detail="cost: 1 vs 2" if parity else "")


OUTCOMES = (
    FindingOutcome(3, "adding complementary experts helps", "SAM and Pix2Struct see what CLIP cannot.",
                   (comparison("mix channel_concat", "clip", 0.239, 0.193, 0.281),)),
    FindingOutcome(2, "channel concatenation is competitive", "scales differ",
                   (comparison("mix channel_concat", "mix sequence_append", -0.15, -0.2, -0.1, parity=True),
                    comparison("mix channel_concat", "mix llava_hr", 0.01, -0.03, 0.05, parity=True))),
)
RUN = FindingsRun(command="python benchmarks/findings.py --seeds 2 --keep DIR", seeds=2, items=180,
                  objective="objective", not_measured=("1 (unfreezing)",))


@pytest.mark.parametrize(("low", "high", "parity", "expected"), [
    (0.1, 0.3, False, HOLDS), (-0.3, -0.1, False, CONTRADICTED), (-0.1, 0.2, False, UNRESOLVED),
    (-0.1, 0.2, True, COMPETITIVE), (-0.3, -0.1, True, WORSE), (0.1, 0.3, True, COMPETITIVE),
])
def test_verdict_reads_the_interval(low: float, high: float, parity: bool, expected: str) -> None:
    assert verdict(low, high, parity) == expected


def test_a_finding_verdict_counts_disagreeing_comparisons() -> None:
    assert OUTCOMES[0].verdict == HOLDS
    assert OUTCOMES[1].verdict == f"{WORSE} in 1 of 2; {COMPETITIVE} in 1 of 2"


def test_a_variant_gets_its_own_title_and_section() -> None:
    variant = FindingOutcome(2, "channel concatenation is competitive", "one scale", OUTCOMES[1].comparisons,
                             variant="fusion_norm layernorm")
    assert (variant.title, variant.slug) == ("Finding 2 (fusion_norm layernorm)", "finding-2-fusion_norm-layernorm")
    page = findings_html((OUTCOMES[1], variant), RUN)
    assert '<section id="finding-2">' in page and '<section id="finding-2-fusion_norm-layernorm">' in page
    assert "## Finding 2 (fusion_norm layernorm): channel concatenation" in findings_markdown((variant,), RUN)


def test_markdown_states_each_verdict_interval_and_the_command() -> None:
    md = findings_markdown(OUTCOMES, RUN)
    assert "Regenerate: `python benchmarks/findings.py --seeds 2 --keep DIR`" in md
    assert "2 seeds × 180 eval items" in md and "Not measured in this run: 1 (unfreezing)." in md
    assert "## Finding 3: adding complementary experts helps\n\n**Verdict: holds**" in md
    assert "| mix channel_concat − clip | +0.239 [+0.193, +0.281] | 0.010 | +0.239, +0.239 | holds |" in md
    assert "- mix channel_concat − mix sequence_append: cost: 1 vs 2" in md
    assert md == findings_markdown(OUTCOMES, RUN)  # no clock: the same outcome renders the same bytes


def test_html_has_a_section_per_finding_in_the_report_style() -> None:
    page = findings_html(OUTCOMES, RUN)
    assert page.startswith("<!DOCTYPE html>") and "<title>eaglesearch findings</title>" in page
    assert '<section id="finding-3">' in page and '<section id="finding-2">' in page
    assert 'table class="leaderboard"' in page and "[+0.193, +0.281]" in page
    assert "mix channel_concat − mix llava_hr" in page and "<script" not in page  # tables only: no plotly


def test_mlflow_parent_with_a_child_per_finding(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    runs = [FindingRun(name="finding-3", verdict=HOLDS, params={"comparison/1": "mix − clip"},
                       metrics={"delta/1": 0.239, "low/1": 0.193, "high/1": 0.281})]
    parent = record_findings(uri, "findings", runs, {"seeds": "2"}, {"findings.md": "# Findings\n"})
    client = MlflowClient(tracking_uri=uri)
    top = client.get_run(parent)
    assert top.info.run_name == "findings" and top.data.params == {"seeds": "2"}
    assert [a.path for a in client.list_artifacts(parent)] == ["findings.md"]
    children = client.search_runs([top.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent}'")
    assert len(children) == 1
    child = children[0]
    assert child.info.run_name == "finding-3" and child.data.tags[TAG_VERDICT] == HOLDS
    assert child.data.metrics == {"delta/1": 0.239, "low/1": 0.193, "high/1": 0.281}
    assert child.data.params == {"comparison/1": "mix − clip"} and child.info.status == "FINISHED"
