"""A rich console view of a running search: trials done/total, round, what runs now, best so far."""

from __future__ import annotations

import time

from rich.console import Console
from rich.live import Live
from rich.table import Table

from eaglesearch.search import Proposal, Strategy
from eaglesearch.spec import TrialResult


class ConsoleProgress:
    """Listens to the dispatcher; renders one compact status panel, refreshed as trials start and end."""

    def __init__(self, search: str, strategy: Strategy, mode: str, console: Console | None = None) -> None:
        self.search = search
        self.mode = mode
        self.expected = sum(strategy.expected_trials())
        self.console = console or Console(stderr=True)
        self.started_at = time.monotonic()
        self.running: dict[str, Proposal] = {}
        self.done: list[tuple[Proposal, TrialResult]] = []
        self.round = 0
        self._live: Live | None = None

    def __enter__(self) -> ConsoleProgress:
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

    def trial_finished(self, proposal: Proposal, result: TrialResult) -> None:
        self.running.pop(proposal.trial.key, None)
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
            status = result.status if result.status != "failed" else f"[red]failed[/red]: {(result.error or '')[:60]}"
            table.add_row(str(proposal.round), proposal.label, status, value)
        for proposal in self.running.values():
            table.add_row(str(proposal.round), proposal.label, "[yellow]running[/yellow]", "")
        best = self.best()
        summary = f"{len(self.done)}/{self.expected} trials (planned), round {self.round}"
        if best is not None:
            summary += f" · best so far {best[0].label} = {best[1].objective:.4f}"
        table.caption = summary
        return table
