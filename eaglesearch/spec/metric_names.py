"""Metric names a search may rank by, and the checks that every name a file writes is one a trial will record.

A trial records (``eaglesearch/evaluate/summary.py``, ``summary_metrics``) ``objective``, ``objective_low`` and
``objective_high`` (the recipe's ``eval.objective``: the mean of its benchmarks or a declared aggregate) and, per
benchmark, ``score/<name>``, ``score_low/<name>`` and ``score_high/<name>``. A benchmark's name is its synthetic task
(``data.synthetic.tasks``) or its key under ``data.eval``. A strategy objective outside these names would rank
every trial as missing, so it is an error before anything runs, as are ``eval.benchmarks`` and aggregate members
that name no benchmark (the objective could not be computed).
"""

from __future__ import annotations

from collections.abc import Iterable

from eaglesearch.spec.errors import SpecIssue
from eaglesearch.spec.provenance import TrialSources
from eaglesearch.spec.trial import TrialSpec
from eaglesearch.spec.yaml_source import Loc, format_loc

OBJECTIVE_METRICS = ("objective", "objective_low", "objective_high")
BENCHMARK_METRIC_PREFIXES = ("score", "score_low", "score_high")


def benchmark_names(trial: TrialSpec) -> tuple[str, ...]:
    """The benchmarks a trial evaluates, by the names its metrics carry."""
    return trial.data.benchmark_names


def metric_names(benchmarks: Iterable[str]) -> list[str]:
    """Every evaluation metric a trial with these benchmarks records."""
    names = list(OBJECTIVE_METRICS)
    for bench in benchmarks:
        names += [f"{prefix}/{bench}" for prefix in BENCHMARK_METRIC_PREFIXES]
    return names


def check_metric_names(trials: Iterable[TrialSpec], sources: TrialSources, objective: str) -> list[SpecIssue]:
    """One issue per wrong name: the strategy objective, ``eval.benchmarks`` and aggregate members, each checked
    against the benchmarks of every trial (a grid factor may change the data)."""
    issues: dict[tuple[str, str], SpecIssue] = {}

    def report(doc_loc: tuple, message: str) -> None:
        doc, loc = doc_loc
        field = format_loc(loc)
        issues.setdefault((str(doc.path), field), SpecIssue(field=field, message=message, file=doc.path,
                                                            line=doc.line_of(loc)))

    space = sources.space
    for trial in trials:
        benches = benchmark_names(trial)
        known = ", ".join(benches)
        valid = metric_names(benches)
        if objective not in valid:
            report((space, ("strategy", "objective")),
                   f"'{objective}' is not a metric the trials record; valid names: {', '.join(valid)}")
        entry: Loc = ("strategy",)
        for i, bench in enumerate(trial.eval.benchmarks or ()):
            if bench not in benches:
                report(sources.place(("eval", "benchmarks", i), {}, entry),
                       f"'{bench}' is not a benchmark of this recipe; benchmarks: {known}")
        for name, agg in trial.eval.aggregates.items():
            for j, member in enumerate(agg.members):
                if member not in benches:
                    report(sources.place(("eval", "aggregates", name, "members", j), {}, entry),
                           f"aggregate '{name}' names '{member}', which is not a benchmark of this recipe; "
                           f"benchmarks: {known}")
    return list(issues.values())
