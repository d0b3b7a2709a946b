"""The ``eaglesearch`` command: validate, plan, run, report, rescore, export, predict, ui."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

import eaglesearch  # noqa: F401  (environment defaults before torch loads)
from eaglesearch.app.outcome import (
    EXIT_INCOMPLETE,
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_NO_RESULT,
    round_lines,
    search_exit_code,
)
from eaglesearch.spec import LoadedSearch, SpecError
from eaglesearch.spec.errors import SpecWarning

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__, pretty_exceptions_enable=False)
out = Console()
if not out.is_terminal:
    out = Console(width=200)
err = Console(stderr=True)
CONSOLE_COLUMNS = ("rank", "tie", "candidate", "round", "status", "objective", "objective_low", "objective_high",
                   "delta", "params", "vision_gflops", "train_s")

SpacePath = Annotated[Path, typer.Argument(help="a search space yaml, e.g. search_spaces/demo_greedy.yaml")]
TrackingOpt = Annotated[str | None, typer.Option("--tracking-uri", help="MLflow store; default MLFLOW_TRACKING_URI "
                                                 "or sqlite:///<cwd>/mlflow.db")]
WorkdirOpt = Annotated[Path | None, typer.Option("--workdir", help="state folder (data, tokenizers, Ray "
                                                 "experiments); default EAGLESEARCH_HOME or ./.eaglesearch")]
ArtifactsOpt = Annotated[str | None, typer.Option("--artifacts", help="root of the stage-artifact store (pre-aligned "
                                                   "experts): a folder or fsspec URL shared by searches and machines; "
                                                   "default EAGLESEARCH_ARTIFACTS or <workdir>/artifacts; "
                                                   "'per-trial' disables reuse")]
ReportsOpt = Annotated[Path, typer.Option("--reports", help="folder for report tables")]
GpuMemoryOpt = Annotated[float | None, typer.Option("--gpu-memory-gb", help="memory of one GPU for the fit check; "
                                                    "default resources.gpu_memory_gb, else the visible GPU's")]
NoCheckPathsOpt = Annotated[bool, typer.Option("--no-check-paths", help="do not require the data and benchmark files "
                                               "to exist on this machine (they exist only where trials run)")]


def _load(path: Path, check_paths: bool = True) -> LoadedSearch:
    """The search space, checked by spec/ and then by the preflight (token budget, data paths); exit 2 if not."""
    from eaglesearch.app.plan import preflight_search
    from eaglesearch.model.validate import load_checked_search

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SpecWarning)
            loaded = load_checked_search(path)
        for warning in caught:  # valid but likely unintended (a stage list that drops recipe fields): say so, go on
            if issubclass(warning.category, SpecWarning):
                err.print(f"[yellow]warning[/yellow] {warning.message}", highlight=False)
            else:
                warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        preflight_search(loaded, check_paths_exist=check_paths)
        return loaded
    except SpecError as e:
        err.print(f"[bold red]invalid search space[/bold red]\n{e}", highlight=False)
        raise typer.Exit(EXIT_INVALID) from None


def _refuse_unfit(loaded: LoadedSearch, gpu_memory_gb: float | None) -> None:
    """Exit 2 with one message per trial that cannot fit its GPUs (eaglesearch.trial.memory)."""
    from eaglesearch.app.plan import memory_refusals

    if gpu_memory_gb is not None:
        loaded = replace(loaded, space=loaded.space.model_copy(update={"resources": loaded.space.resources.model_copy(
            update={"gpu_memory_gb": gpu_memory_gb})}))
    refusals = memory_refusals(loaded)
    if refusals:
        err.print(f"[bold red]{len(refusals)} trial(s) of {loaded.path} cannot fit their GPUs[/bold red]")
        for message in refusals:
            err.print(f"- {message}", highlight=False)
        raise typer.Exit(EXIT_INVALID)


def _uri(tracking_uri: str | None) -> str:
    from eaglesearch.tracking import absolute_uri, default_tracking_uri

    return absolute_uri(tracking_uri) if tracking_uri else default_tracking_uri()


def _print_table(df, title: str) -> None:
    """The ranked table for the terminal: the key columns and every accuracy (the files hold everything), numbers as
    people read them (2.09M parameters, 1m04s)."""
    from eaglesearch.report import humanize

    accs = sorted(c for c in df.columns if str(c).startswith("score/"))
    head, tail = CONSOLE_COLUMNS[:5], CONSOLE_COLUMNS[5:]
    df = df[[c for c in head if c in df.columns] + accs + [c for c in tail if c in df.columns]]
    table = Table(title=title)
    for col in df.columns:
        table.add_column(str(col), justify="right" if df[col].dtype.kind in "fi" else "left",
                         overflow="fold", min_width=len(str(col)) if col != "candidate" else 24)
    for _, row in df.iterrows():
        cells = [humanize.cell(str(col), row[col]) for col in df.columns]
        table.add_row(*cells)
    out.print(table)


@app.command()
def validate(path: SpacePath, gpu_memory_gb: GpuMemoryOpt = None, no_check_paths: NoCheckPathsOpt = False) -> None:
    """Check a search space and its recipe; build every trial spec it can produce; refuse trials that cannot fit
    their GPUs. Starts nothing."""
    loaded = _load(path, check_paths=not no_check_paths)
    _refuse_unfit(loaded, gpu_memory_gb)
    from eaglesearch.search import make_strategy

    strategy = make_strategy(loaded)
    out.print(f"[green]ok[/green] {path}: search '{loaded.name}', strategy {strategy.kind}, recipe "
              f"{loaded.recipe.name} ({loaded.recipe_path}, stages {loaded.recipe.train.label}), up to "
              f"{sum(strategy.expected_trials())} trials")


@app.command()
def plan(
    path: SpacePath,
    workdir: WorkdirOpt = None,
    no_measure: Annotated[bool, typer.Option("--no-measure", help="skip building models to measure cost")] = False,
    gpu_memory_gb: GpuMemoryOpt = None,
    no_check_paths: NoCheckPathsOpt = False,
) -> None:
    """Trials per round (or grid size) and each model's size, tokens, FLOPs and estimated time. No training."""
    from eaglesearch.app.plan import make_plan
    from eaglesearch.app.plan_view import print_plan
    from eaglesearch.data.llava import DataProblem
    from eaglesearch.trial.workspace import Workspace

    loaded = _load(path, check_paths=not no_check_paths)
    try:
        with err.status("measuring models (FLOP-counted forward passes; 3 timed optimizer steps at tiny scale)"):
            result = make_plan(loaded, Workspace.at(workdir), measure_costs=not no_measure,
                               gpu_memory_gb=gpu_memory_gb)
    except DataProblem as e:  # e.g. a sample longer than data.max_length: the data's problem, not a crash
        err.print(f"[bold red]the data does not fit this search[/bold red]\n{e}", highlight=False)
        raise typer.Exit(EXIT_INVALID) from None
    print_plan(loaded.name, result, out, err)


@app.command()
def run(
    path: SpacePath,
    tracking_uri: TrackingOpt = None,
    workdir: WorkdirOpt = None,
    artifacts: ArtifactsOpt = None,
    reports: ReportsOpt = Path("reports"),
    executor: Annotated[str, typer.Option(help="ray (default) or inline (in this process, no Ray)")] = "ray",
    address: Annotated[str | None, typer.Option(help="join an existing Ray cluster (else RAY_ADDRESS or local)")]
    = None,
    quiet: Annotated[bool, typer.Option(help="no progress output")] = False,
    json_events: Annotated[bool, typer.Option("--json", help="progress as JSON lines on stdout (one event per line: "
                                              "trial_started, trial_finished, search_ended, report) instead of the "
                                              "live panel, the round lines and the table")] = False,
    gpu_memory_gb: GpuMemoryOpt = None,
    no_check_paths: NoCheckPathsOpt = False,
    shared_workdir: Annotated[bool, typer.Option(
        "--shared-workdir", help="--workdir and --artifacts are on a mount every node of the --address cluster "
                                 "sees at the same path (else a multi-node cluster needs --artifacts s3://...; "
                                 "also EAGLESEARCH_SHARED_WORKDIR=1)")] = False,
) -> None:
    """Run the search; trials already recorded are not retrained; ends by printing the ranked table.

    Exit codes: 0 the search completed with at least one finished trial; 1 it did not complete (run the same command
    again to resume); 2 invalid input, or a store, cluster or GPU that cannot be used; 3 the base trial or every trial
    failed; 130 interrupted."""
    if executor not in ("ray", "inline"):
        err.print(f"[red]--executor must be 'ray' or 'inline', not '{executor}'[/red]")
        raise typer.Exit(EXIT_INVALID)
    from eaglesearch.execution.cluster import ClusterUnavailable, prepare_cluster
    from eaglesearch.execution.shared_storage import check_shared_storage, shared_workdir_declared
    from eaglesearch.tracking.uri import StoreUnavailable, probe_store
    from eaglesearch.trial.workspace import Workspace

    address = address or os.environ.get("RAY_ADDRESS")
    shared_workdir = shared_workdir_declared(shared_workdir)
    try:  # before validation imports torch: an unusable store or cluster fails in seconds
        probe_store(_uri(tracking_uri))
        if executor == "ray" and address:
            prepare_cluster(address)
            check_shared_storage(address, _uri(tracking_uri),
                                 Workspace.artifacts_url(Workspace.root_path(workdir), artifacts), shared_workdir)
    except (StoreUnavailable, ClusterUnavailable) as e:
        err.print(str(e), style="red", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_INVALID) from None
    loaded = _load(path, check_paths=not no_check_paths)
    _refuse_unfit(loaded, gpu_memory_gb)
    if executor == "inline" and loaded.space.scheduler is not None:
        err.print(f"[red]{path}: scheduler ({loaded.space.scheduler.kind}) stops trials through Ray Tune and needs "
                  "the Ray executor; drop --executor inline, or remove scheduler to run every trial in full[/red]")
        raise typer.Exit(EXIT_INVALID)
    from eaglesearch.app.run import run_and_report
    from eaglesearch.execution.controller import SearchInterrupted

    try:
        outcome, report = run_and_report(loaded, tracking_uri=_uri(tracking_uri), reports_dir=reports,
                                         workdir=workdir, artifacts=artifacts, executor=executor, address=address,
                                         show_progress=not quiet, progress="json" if json_events else "auto",
                                         shared_workdir=shared_workdir)
    except (StoreUnavailable, ClusterUnavailable) as e:
        err.print(str(e), style="red", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_INVALID) from None
    except SearchInterrupted as e:
        err.print(f"{e}; run the same command again to continue (finished trials are served from the record)",
                  style="yellow", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    code = search_exit_code(outcome, report.table)
    lines = round_lines(outcome.decisions, getattr(loaded.space.strategy, "min_gain", None))
    if json_events:
        import json

        print(json.dumps({"event": "report", "search": loaded.name, "rounds": lines, "report": str(report.markdown),
                          "html": str(report.html) if report.html else None, "parent_run": outcome.parent_id,
                          "complete": outcome.complete, "exit_code": code}), flush=True)
        raise typer.Exit(code)
    for line in lines:
        out.print(line, highlight=False)
    _print_table(report.table, f"{loaded.name}: ranked by {loaded.space.strategy.objective}")
    out.print(f"report: {report.markdown}  ·  MLflow parent run {outcome.parent_id}"
              + ("  ·  resumed" if outcome.resumed else ""))
    for kept in outcome.kept:
        out.print(f"kept: {kept.uri} = {kept.trial.label} ({loaded.space.strategy.objective} "
                  f"{kept.trial.value:.4f}, key {kept.trial.key[:12]}); `eaglesearch export {loaded.name} OUT` "
                  "writes it to a folder", highlight=False, soft_wrap=True)
    if code == EXIT_INCOMPLETE:
        err.print("[yellow]the search did not complete; run the same command again to resume it[/yellow]")
    elif code == EXIT_NO_RESULT:
        err.print("[red]no trial finished (the base trial or every trial failed): there is nothing to rank; the "
                  "report lists each failed trial's error[/red]")
    raise typer.Exit(code)


@app.command()
def report(
    search: Annotated[str, typer.Argument(help="search name (the 'name' in its yaml)")],
    tracking_uri: TrackingOpt = None,
    reports: ReportsOpt = Path("reports"),
) -> None:
    """Rebuild the ranked tables of a search's latest run from MLflow alone."""
    from eaglesearch.app.ties import tie_labels
    from eaglesearch.report import write_report
    from eaglesearch.tracking import TrackingStore

    store = TrackingStore(_uri(tracking_uri))
    try:
        paths = write_report(store, search, reports, ties=lambda table, runs: tie_labels(store, table, runs))
    except LookupError as e:
        err.print(f"[red]{e}[/red]")
        raise typer.Exit(1) from None
    _print_table(paths.table, f"{search}: ranked")
    out.print(f"report: {paths.markdown}")


@app.command()
def rescore(
    search: Annotated[str, typer.Argument(help="search name (the 'name' in its yaml)")],
    tracking_uri: TrackingOpt = None,
) -> None:
    """Recompute every metric of a search's finished trials from their saved predictions (no model needed)."""
    from eaglesearch.app.rescore import rescore_search
    from eaglesearch.tracking import TrackingStore

    try:
        results = rescore_search(TrackingStore(_uri(tracking_uri)), search)
    except LookupError as e:
        err.print(f"[red]{e}[/red]")
        raise typer.Exit(1) from None
    table = Table(title=f"{search}: re-scored from predictions")
    for col in ("trial", "objective (logged)", "objective (re-scored)", "numbers compared", "identical"):
        table.add_column(col)
    for r in results:
        table.add_row(r.label, f"{r.logged.get('objective', float('nan')):.6f}", f"{r.rescored['objective']:.6f}",
                      str(len(r.rescored)), "yes" if r.identical else "[red]no[/red]: " + ", ".join(r.differences))
    out.print(table)
    if not all(r.identical for r in results):
        raise typer.Exit(1)


def _or_exit(work):
    """``work()``, or exit 1 printing why a model could not be found, written or read (no traceback)."""
    try:
        return work()
    except (LookupError, OSError, ValueError) as e:
        err.print(str(e), style="red", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


@app.command()
def export(search: Annotated[str, typer.Argument(help="search name")],
           out_dir: Annotated[Path, typer.Argument(metavar="OUT", help="a new (or empty) folder")],
           trial: Annotated[str | None, typer.Option(help="key (or prefix) of a kept trial; default: the best")] = None,
           tracking_uri: TrackingOpt = None) -> None:
    """Write a finished search's kept model to a self-contained folder (safetensors, spec, tokenizer, model card)."""
    from eaglesearch.app.export import export_winner

    done = _or_exit(lambda: export_winner(_uri(tracking_uri), search, out_dir, trial))
    out.print(f"exported {done.card.label} ({done.card.objective} {done.card.value:.4f}) to {done.folder}",
              highlight=False, soft_wrap=True)


@app.command()
def predict(model_dir: Annotated[Path, typer.Argument(metavar="MODEL", help="a folder `eaglesearch export` wrote")],
            image: Path, question: str, max_new_tokens: int | None = None,
            device: Annotated[str | None, typer.Option(help="default: CUDA when available")] = None) -> None:
    """Answer a question about an image with an exported model; prints the answer alone."""
    from eaglesearch.export import load

    print(_or_exit(lambda: load(model_dir, device).generate([image], [question], max_new_tokens=max_new_tokens)[0]))


@app.command()
def pretrain(
    out_dir: Annotated[Path | None, typer.Option("--out", help="store to build into; default: the shipped store "
                                                  "inside the package (eaglesearch/pretrained)")] = None,
    only: Annotated[list[str] | None, typer.Option("--only", help="rebuild only these components (lm, world, "
                                                   "or an expert family name); repeatable")] = None,
    threads: Annotated[int, typer.Option(help="torch threads (results are bit-identical for a thread count)")] = 2,
) -> None:
    """Rebuild the tiny world's pretrained components (tokenizer, LM, every expert) from their recipes."""
    import time

    import torch

    from eaglesearch.train.pretrained import SHIPPED_ROOT, rebuild

    torch.set_num_threads(threads)
    root = out_dir or SHIPPED_ROOT
    started = time.perf_counter()
    done = rebuild(root, tuple(only or ()), say=lambda msg: out.print(msg, highlight=False))
    out.print(f"built {len(done)} components into {root} in {time.perf_counter() - started:.0f}s", highlight=False)


@app.command()
def ui(
    tracking_uri: TrackingOpt = None,
    port: Annotated[int, typer.Option(help="port on 127.0.0.1")] = 5000,
) -> None:
    """Start the MLflow UI on 127.0.0.1 over the same store (one worker, no job runners); print each search's
    leaderboard link (its trials best first, objective and scores as columns). Opening a search's experiment
    (its bare URL, or from the experiments list) lands on that leaderboard too (eaglesearch/tracking/ui_server.py)."""
    from eaglesearch.tracking import TrackingStore, leaderboard_url

    uri = _uri(tracking_uri)
    base = f"http://127.0.0.1:{port}"
    out.print(f"MLflow UI on {base} over {uri} (Ctrl-C to stop)", soft_wrap=True, highlight=False)
    boards = TrackingStore(uri).leaderboard_experiments()
    for name, exp_id in boards:
        out.print(f"  leaderboard {name}: {leaderboard_url(base, exp_id)}", soft_wrap=True, highlight=False)
    if not boards:
        out.print("  no leaderboard published in this store yet: `eaglesearch report <search>` publishes one",
                  highlight=False)
    cmd = [sys.executable, "-m", "eaglesearch.tracking.ui_server", "--tracking-uri", uri, "--host", "127.0.0.1",
           "--port", str(port)]
    raise typer.Exit(subprocess.call(cmd))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
