"""What a running search shows: a rich live panel on a terminal (trials done/total, round, what runs now, best so
far), one plain line per event anywhere else (a log file, CI, nohup, a cluster job), or a JSON-lines event stream
for scripts (``run --json``)."""

from __future__ import annotations

import json
import sys
import time
from typing import IO, Self

from rich.console import Console
from rich.live import Live
from rich.table import Table

from eaglesearch.search import Proposal, Strategy
from eaglesearch.spec import TrialResult
from eaglesearch.spec.progress import StageProgress


class ConsoleProgress:
    """Listens to the dispatcher; renders one compact status panel, refreshed as trials start and end."""

    def __init__(self, search: str, strategy: Strategy, mode: str, console: Console | None = None) -> None:
        self.search = search
        self.mode = mode
        self.expected = sum(strategy.expected_trials())
        self.console = console or Console(stderr=True)
        self.started_at = time.monotonic()
        self.running: dict[str, Proposal] = {}
        self.stages: dict[str, StageProgress] = {}  # trial key → where it is in its stages
        self.done: list[tuple[Proposal, TrialResult]] = []
        self.round = 0
        self._live: Live | None = None

    def __enter__(self) -> Self:
        self._live = Live(self.render(), console=self.console, refresh_per_second=2, transient=False)
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.update(self.render())
            self._live.__exit__(*exc)
            self.console.print()

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self.render())

    def trial_started(self, proposal: Proposal) -> None:
        self.running[proposal.trial.key] = proposal
        self.round = max(self.round, proposal.round)
        self._refresh()

    def stage_progress(self, proposal: Proposal, progress: StageProgress) -> None:
        self.stages[proposal.trial.key] = progress
        self._refresh()

    def trial_finished(self, proposal: Proposal, result: TrialResult) -> None:
        self.running.pop(proposal.trial.key, None)
        self.stages.pop(proposal.trial.key, None)
        self.done.append((proposal, result))
        self._refresh()

    def best(self) -> tuple[Proposal, TrialResult] | None:
        ok = [(p, r) for p, r in self.done if r.ok]
        if not ok:
            return None
        sign = 1 if self.mode == "max" else -1
        return max(ok, key=lambda pr: sign * (pr[1].objective or 0.0))

    def render(self) -> Table:
        elapsed = time.monotonic() - self.started_at
        table = Table(title=f"eaglesearch · {self.search} · {elapsed:,.0f}s", show_header=True, expand=False)
        table.add_column("round", justify="right")
        table.add_column("trial")
        table.add_column("status")
        table.add_column("objective", justify="right")
        for proposal, result in self.done:
            value = f"{result.objective:.4f}" if result.objective is not None else "–"
            status = result.status if result.status != "failed" else f"[red]failed[/red]: {first_line(result.error)}"
            table.add_row(str(proposal.round), proposal.label, status, value)
        for key, proposal in self.running.items():
            stage = self.stages.get(key)
            where = f" · {stage_text(stage)}" if stage is not None else ""
            table.add_row(str(proposal.round), proposal.label, f"[yellow]running[/yellow]{where}", "")
        best = self.best()
        summary = f"{len(self.done)}/{self.expected} trials (planned), round {self.round}"
        if best is not None:
            summary += f" · best so far {best[0].label} = {best[1].objective:.4f}"
        table.caption = summary
        return table


def stage_text(progress: StageProgress) -> str:
    """``stage 3/3 sft step 40/200 loss 1.234, ETA 1m10s``: where a trial is in its stages."""
    eta = f", ETA {_duration(progress.eta_s)}" if progress.eta_s is not None else ""
    return (f"stage {progress.index}/{progress.count} {progress.label} step {progress.step}/{progress.steps} "
            f"loss {progress.loss:.3f}{eta}")


def first_line(error: str | None) -> str:
    """A failed trial's first error line, whole (the full text is in the report and on its MLflow run)."""
    lines = [line.strip() for line in (error or "").strip().splitlines() if line.strip()]
    return lines[0] if lines else "no error recorded"


class LineProgress:
    """One line per event for output that is not a terminal: a trial started, where it is in its stages (every few
    seconds: ``stage 3/3 sft step 40/200 loss 1.234, ETA 1m10s``, from the inline executor and from Ray workers
    alike), a trial finished (objective with its 95% interval, or the first error line), with trials done out of
    planned and an ETA from the measured trials. With ``as_json`` each event is one JSON object per line instead
    (``event``, ``search``, ``trial``, ``key``, ``round``, ``status``, ``objective``, ``low``, ``high``, ``done``,
    ``planned``, ``elapsed_s``, ``eta_s``; a ``stage_progress`` event adds ``stage``, ``stage_index``,
    ``stage_count``, ``step``, ``steps``, ``loss`` and ``stage_eta_s``)."""

    def __init__(self, search: str, strategy: Strategy, mode: str, stream: IO[str] | None = None,
                 as_json: bool = False, concurrency: int = 1) -> None:
        self.search, self.mode, self.as_json = search, mode, as_json
        self.expected = sum(strategy.expected_trials())
        self.stream = stream or sys.stderr
        self.concurrency = max(1, concurrency)
        self.started_at = time.monotonic()
        self.started: dict[str, float] = {}
        self.durations: list[float] = []
        self.done = 0

    def __enter__(self) -> Self:
        self._emit("search_started", f"search {self.search}: {self.expected} trial(s) planned")
        return self

    def __exit__(self, *exc: object) -> None:
        self._emit("search_ended", f"search {self.search}: {self.done} trial(s) done in "
                   f"{_duration(time.monotonic() - self.started_at)}")

    def eta_s(self) -> float | None:
        """Seconds left: the mean measured trial time × the planned trials left / the trials run at once."""
        if not self.durations:
            return None
        left = max(0, self.expected - self.done)
        return sum(self.durations) / len(self.durations) * left / self.concurrency

    def trial_started(self, proposal: Proposal) -> None:
        self.started[proposal.trial.key] = time.monotonic()
        self._emit("trial_started", f"round {proposal.round} · {proposal.label} started",
                   trial=proposal.label, key=proposal.trial.key, round=proposal.round)

    def stage_progress(self, proposal: Proposal, progress: StageProgress) -> None:
        self._emit("stage_progress", f"round {proposal.round} · {proposal.label} {stage_text(progress)}",
                   trial=proposal.label, key=proposal.trial.key, round=proposal.round, stage=progress.label,
                   stage_index=progress.index, stage_count=progress.count, step=progress.step, steps=progress.steps,
                   loss=progress.loss, stage_eta_s=None if progress.eta_s is None else round(progress.eta_s, 1))

    def trial_finished(self, proposal: Proposal, result: TrialResult) -> None:
        began = self.started.pop(proposal.trial.key, None)
        if began is not None and result.status != "cached":
            self.durations.append(time.monotonic() - began)
        self.done += 1
        low, high = result.metrics.get("objective_low"), result.metrics.get("objective_high")
        if result.status == "failed":
            what = f"failed: {first_line(result.error)}"
        elif result.objective is None:
            what = result.status
        else:
            interval = f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else ""
            what = f"{result.status} {result.objective:.3f}{interval}"
        eta = self.eta_s()
        progress = f"{self.done}/{self.expected} planned" + (f", ETA {_duration(eta)}" if eta is not None else "")
        self._emit("trial_finished", f"round {proposal.round} · {proposal.label} {what} ({progress})",
                   trial=proposal.label, key=proposal.trial.key, round=proposal.round, status=result.status,
                   objective=result.objective, low=low, high=high, error=first_line(result.error)
                   if result.status == "failed" else None)

    def _emit(self, event: str, text: str, **fields: object) -> None:
        elapsed = time.monotonic() - self.started_at
        if self.as_json:
            record = {"event": event, "search": self.search, **fields, "done": self.done, "planned": self.expected,
                      "elapsed_s": round(elapsed, 3), "eta_s": None if self.eta_s() is None else round(self.eta_s(), 1)}
            self.stream.write(json.dumps(record) + "\n")
        else:
            self.stream.write(f"[{_duration(elapsed)}] {text}\n")
        self.stream.flush()


def _duration(seconds: float) -> str:
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


ProgressKind = str
"""``auto`` (a live panel on a terminal, lines elsewhere), ``live``, ``lines``, ``json`` or ``none``."""
PROGRESS_KINDS = ("auto", "live", "lines", "json", "none")


def make_progress(kind: ProgressKind, search: str, strategy: Strategy, mode: str,
                  concurrency: int = 1) -> ConsoleProgress | LineProgress | None:
    """The listener a search shows its progress with; JSON events go to stdout (for scripts), the rest to stderr."""
    if kind not in PROGRESS_KINDS:
        raise ValueError(f"progress must be one of {', '.join(PROGRESS_KINDS)}, not '{kind}'")
    if kind == "none":
        return None
    if kind == "json":
        return LineProgress(search, strategy, mode, stream=sys.stdout, as_json=True, concurrency=concurrency)
    if kind == "auto":
        kind = "live" if sys.stderr.isatty() else "lines"
    if kind == "live":
        return ConsoleProgress(search, strategy, mode)
    return LineProgress(search, strategy, mode, concurrency=concurrency)
