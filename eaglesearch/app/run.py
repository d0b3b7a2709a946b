"""What ``eaglesearch run`` does once the search space is checked: run the search, then write and log its report.

It sits above execution/ (dispatch only) and report/ (tables from the record), so neither has to know the other.
"""

from __future__ import annotations

from pathlib import Path

from eaglesearch.app.ties import tie_labels
from eaglesearch.execution.controller import SearchOutcome, run_search
from eaglesearch.report import ReportPaths, write_report
from eaglesearch.spec import LoadedSearch
from eaglesearch.tracking import TrackingStore


def run_and_report(loaded: LoadedSearch, *, tracking_uri: str, reports_dir: Path = Path("reports"),
                   workdir: Path | None = None, artifacts: str | None = None, executor: str = "ray",
                   address: str | None = None, show_progress: bool = True,
                   progress: str = "auto", shared_workdir: bool = False) -> tuple[SearchOutcome, ReportPaths]:
    """What ``eaglesearch run`` does once the space is checked (the benchmarks call it too): run the search
    (``execution.controller.run_search``), then write its report into ``reports_dir/<search>/`` and log it on the
    search's parent run, ranked by the space's objective with ties marked."""
    outcome = run_search(loaded, tracking_uri=tracking_uri, workdir=workdir, artifacts=artifacts,
                         executor=executor, address=address, show_progress=show_progress,  # type: ignore[arg-type]
                         progress_kind=progress, shared_workdir=shared_workdir)
    store = TrackingStore(outcome.tracking_uri)
    strategy = loaded.space.strategy
    report = write_report(store, loaded.space.name, reports_dir, parent_id=outcome.parent_id,
                          objective=strategy.objective, mode=strategy.mode, baseline_key=outcome.baseline_key,
                          ties=lambda table, runs: tie_labels(store, table, runs))
    return outcome, report
