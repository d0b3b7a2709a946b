"""How a finished ``eaglesearch run`` reads to its user: one line per greedy round, and the exit code."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eaglesearch.search.base import RoundDecision

# `run`'s exit codes (its --help and the README list them)
EXIT_OK, EXIT_INCOMPLETE, EXIT_INVALID, EXIT_NO_RESULT, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def search_exit_code(outcome: Any, table: Any) -> int:
    """0 only for a completed search with at least one finished (or served) trial; see ``run --help``."""
    if not outcome.complete:
        return EXIT_INCOMPLETE
    usable = table[table["status"].isin(("finished", "cached")) & table["objective"].notna()] if len(table) else table
    base_failed = bool(outcome.decisions) and outcome.decisions[0].round == 0 and \
        outcome.decisions[0].objective is None
    return EXIT_NO_RESULT if base_failed or not len(usable) else EXIT_OK


def round_lines(decisions: Sequence[RoundDecision], min_gain: float | None) -> list[str]:
    """One line per greedy round saying what happened: the base, what was adopted and its gain, or why nothing was
    (with the best candidate's gain) and what the search stopped with."""
    lines, incumbent, held = [], None, None
    for d in decisions:
        if d.round == 0:
            lines.append(f"round 0: base {d.chosen_label} {d.objective:.3f}" if d.objective is not None
                         else "round 0: the base trial failed; the search stopped")
            incumbent, held = d.chosen_label, d.objective
            continue
        if d.chosen_label is not None:
            lines.append(f"round {d.round}: adopted {d.chosen_label} {d.objective:.3f} (gain {d.gain:+.3f} over "
                         f"{incumbent} {held:.3f})" + (f"; stopped: {d.stopped}" if d.stopped else ""))
            incumbent, held = d.chosen_label, d.objective
        elif d.objective is None:
            lines.append(f"round {d.round}: every candidate failed; stopped with {incumbent} {held:.3f}")
        else:
            best = next((label for label, _key, value, _status in d.candidates if value == d.objective), "?")
            bar = f"gained more than {min_gain:g}" if min_gain is not None else "improved"
            lines.append(f"round {d.round}: no candidate {bar} (best {best} {d.gain:+.3f}); stopped with "
                         f"{incumbent} {held:.3f}")
    return lines
