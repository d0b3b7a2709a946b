"""How a finished ``eaglesearch run`` reads to its user: one line per greedy round, and the exit code."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eaglesearch.search.base import CandidateVerdict, RoundDecision

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
    """One line per greedy round saying what happened: the base, what was adopted with its gain and the gain's
    paired interval, or why nothing was (with the best candidate's gain and interval) and what the search stopped
    with. ``min_gain`` words the bar of a round decided by ``min_gain`` (rounds recorded without a rule)."""
    lines, incumbent, held = [], None, None
    for d in decisions:
        if d.round == 0:
            lines.append(f"round 0: base {d.chosen_label} {d.objective:.3f}" if d.objective is not None
                         else "round 0: the base trial failed; the search stopped")
            incumbent, held = d.chosen_label, d.objective
            continue
        if d.chosen_label is not None:
            chosen = next((v for v in d.verdicts if v.key == d.chosen_key), None)
            interval = f" {_interval(chosen)}" if chosen is not None and _interval(chosen) else ""
            lines.append(f"round {d.round}: adopted {d.chosen_label} {d.objective:.3f} (gain {d.gain:+.3f}{interval} "
                         f"over {incumbent} {held:.3f})" + (f"; stopped: {d.stopped}" if d.stopped else ""))
            incumbent, held = d.chosen_label, d.objective
        elif d.objective is None:
            lines.append(f"round {d.round}: every candidate failed; stopped with {incumbent} {held:.3f}")
        else:
            lines.append(f"round {d.round}: {_shortfall(d, min_gain)} ({_best(d)}); stopped with {incumbent} {held:.3f}")
    return lines


def _shortfall(d: RoundDecision, min_gain: float | None) -> str:
    """Why a round adopted nothing, in the words of its rule."""
    rule = d.rule or ("min_gain" if min_gain is not None else "")
    if rule.startswith("paired_ci"):
        return "no candidate's gain interval lay above 0" + (" after Holm" if "Holm" in rule else "")
    if rule.startswith("min_gain"):
        bar = rule.removeprefix("min_gain").strip() or (f"{min_gain:g}" if min_gain is not None else "")
        return f"no candidate gained more than {bar}"
    return "no candidate improved"


def _best(d: RoundDecision) -> str:
    """``best +convnext +0.017 [-0.031, +0.062]``: the round's largest gain and its interval."""
    usable = [v for v in d.verdicts if v.gain is not None]
    if not usable:
        best = next((label for label, _key, value, _status in d.candidates if value == d.objective), "?")
        return f"best {best} {d.gain:+.3f}" if d.gain is not None else f"best {best}"
    v = max(usable, key=lambda v: v.gain)  # type: ignore[arg-type, return-value]
    name = f"+{v.added}" if v.added else v.label
    interval = _interval(v)
    return f"best {name} {v.gain:+.3f}" + (f" {interval}" if interval else "")


def _interval(v: CandidateVerdict) -> str | None:
    """``[-0.031, +0.062]``, with its level when it is not 95% (a Holm-corrected one): ``[...] at 98.3%``."""
    if v.low is None or v.high is None or v.confidence is None:
        return None
    level = "" if abs(v.confidence - 0.95) < 1e-9 else f" at {100 * v.confidence:.3g}%"
    return f"[{v.low:+.3f}, {v.high:+.3f}]{level}"
