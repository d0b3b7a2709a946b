"""The Pareto front of a two-objective search (Optuna NSGA-II, or TPE with ``cost``), from the record alone.

The controller records the second objective on the parent run as the param ``cost`` (``metric:mode``, e.g.
``cost/vision_gflops:min``), so ``eaglesearch report`` rebuilds the same section without the strategy. The front is
computed over the usable trials under the parent (finished or cached, both values present): a trial is on it when
no other trial is at least as good in both objectives and better in one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from eaglesearch.report.render import to_markdown
from eaglesearch.report.table import OK_STATUSES, _numeric, _status

COST_PARAM = "cost"


def cost_objective(params: Mapping[str, str]) -> tuple[str, str] | None:
    """``(metric, mode)`` of the parent run's ``cost`` param (``metric:mode``), or None for one-objective searches."""
    text = params.get(COST_PARAM)
    if not text or ":" not in text:
        return None
    metric, mode = text.rsplit(":", 1)
    return (metric, mode) if mode in ("max", "min") else None


def _front(values: list[tuple[float, ...]], modes: Sequence[str]) -> list[bool]:
    signs = [1.0 if m == "max" else -1.0 for m in modes]
    scaled = [tuple(s * x for s, x in zip(signs, v, strict=True)) for v in values]

    def beats(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
        return all(x >= y for x, y in zip(a, b, strict=True)) and a != b

    return [not any(beats(other, v) for other in scaled) for v in scaled]


def pareto_table(runs: pd.DataFrame, objectives: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """The non-dominated trials of ``runs`` under ``objectives`` (``[(metric, mode), ...]``), best first by the
    first objective; columns: candidate, one per objective, status, key."""
    metrics = [m for m, _ in objectives]
    frame = pd.DataFrame({
        "candidate": runs["label"] if "label" in runs.columns else pd.Series("?", index=runs.index),
        **{m: _numeric(runs, m) for m in metrics},
        "status": _status(runs),
        "key": runs["key"] if "key" in runs.columns else pd.Series(None, index=runs.index),
    })
    usable = frame[frame["status"].isin(OK_STATUSES) & frame[metrics].notna().all(axis=1)]
    if usable.empty:
        return usable.reset_index(drop=True)
    on_front = _front([tuple(row) for row in usable[metrics].itertuples(index=False)], [m for _, m in objectives])
    front = usable[on_front]
    first, mode = objectives[0]
    return front.sort_values(first, ascending=mode == "min", kind="stable").reset_index(drop=True)


def pareto_section(runs: pd.DataFrame, params: Mapping[str, str], objective: str, mode: str) -> str:
    """A ``## Pareto front`` markdown section for a two-objective search; empty for any other search."""
    cost = cost_objective(params)
    if cost is None or runs.empty:
        return ""
    table = pareto_table(runs, [(objective, mode), cost])
    summary = (f"- `{objective}` ({mode}) against `{cost[0]}` ({cost[1]}): the {len(table)} trials no other "
               "usable trial matches or beats in both")
    lines = ["", "## Pareto front", "", summary, ""]
    lines.append(to_markdown(table) if len(table) else "_No trial has both values recorded._\n")
    return "\n".join(lines).rstrip("\n") + "\n"
