"""The ranked table turned into what the MLflow UI shows (``tracking.Leaderboard``): the experiment description,
rank-prefixed trial run names, the best trial for the parent run and the metric columns of the saved view."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from eaglesearch.report.render import to_markdown
from eaglesearch.report.table import OK_STATUSES
from eaglesearch.tracking import Leaderboard, RunRecord
from eaglesearch.tracking.mlflow_ui import LEAD_COLUMNS, TAIL_COLUMNS

DESCRIPTION_COLUMNS = ("rank", "tie", "candidate", "status", "objective", "objective_low", "objective_high")
DESCRIPTION_COSTS = ("vision_gflops",)


def _number(value: Any) -> float | None:
    if value is None or value is pd.NA:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def run_names(table: pd.DataFrame, runs: pd.DataFrame) -> tuple[dict[str, str], dict[str, str]]:
    """Trial run id → display name and → rank label. Names start with the zero-padded rank so that sorting the
    runs table by name is sorting by rank (``03 clip+sam``; ``(tied =2)`` when the bootstrap cannot separate it
    from the rank above); unranked trials read ``– clip+eva (failed)``."""
    run_of = {str(k): str(r) for k, r in zip(runs["key"], runs["run_id"], strict=True) if isinstance(k, str)}
    ranked = table["rank"].dropna()
    width = len(str(int(ranked.max()))) if len(ranked) else 1
    names: dict[str, str] = {}
    ranks: dict[str, str] = {}
    for _, row in table.iterrows():
        run_id = run_of.get(str(row["key"]))
        if run_id is None:  # a reference row (e.g. a baseline) has no run of its own
            continue
        tie = row.get("tie") if "tie" in table.columns else None
        tie = tie if isinstance(tie, str) and tie else None
        if pd.isna(row["rank"]):
            names[run_id] = f"– {row['candidate']} ({row['status']})"
            ranks[run_id] = ""
        else:
            rank = int(row["rank"])
            names[run_id] = f"{rank:0{width}d} {row['candidate']}" + (f" (tied {tie})" if tie and "=" in tie else "")
            ranks[run_id] = tie or str(rank)
    return names, ranks


def description(table: pd.DataFrame, search: str, parent: RunRecord) -> str:
    """Markdown for the experiment's description: a headline naming the best trial (shown even when the
    description is collapsed), where to find the full report, and the ranked table's main columns."""
    objective, mode = table.attrs.get("objective", "objective"), table.attrs.get("mode", "max")
    ok = table[table["status"].isin(OK_STATUSES) & table["rank"].notna()]
    if len(ok):
        best = ok.iloc[0]
        headline = f"## {search}: best {best['candidate']} ({objective} {float(best['objective']):.4f})"
    else:
        headline = f"## {search}: no usable trial yet"
    scores = [c for c in table.columns if isinstance(c, str) and c.startswith("score/")]
    columns = [c for c in (*DESCRIPTION_COLUMNS, *scores, *DESCRIPTION_COSTS) if c in table.columns]
    lines = [
        headline, "",
        (f"Ranked by `{objective}` ({mode}) with its 95% interval; search run `{parent.name}` (`{parent.run_id}`). "
         "Views → *eaglesearch leaderboard* lists these trials as columns; the search run's artifacts hold "
         "`report/report.html` (charts) and `report/leaderboard.tex`."), "",
        to_markdown(table[columns]) if len(table) else "_No trials recorded._",
    ]
    return "\n".join(lines).rstrip("\n") + "\n"


def leaderboard(table: pd.DataFrame, runs: pd.DataFrame, search: str, parent: RunRecord) -> Leaderboard:
    """Everything ``TrackingStore.publish_leaderboard`` writes for this report."""
    names, ranks = run_names(table, runs)
    scores = tuple(c for c in table.columns if isinstance(c, str) and c.startswith("score/"))
    ok = table[table["status"].isin(OK_STATUSES) & table["rank"].notna()]
    best = ok.iloc[0] if len(ok) else None
    created = parent.start_time if parent.start_time is not None else pd.Timestamp(0, tz="UTC")
    return Leaderboard(
        parent_id=parent.run_id, description=description(table, search, parent), run_names=names, ranks=ranks,
        metric_columns=(*LEAD_COLUMNS, *scores, *TAIL_COLUMNS), mode=table.attrs.get("mode", "max"),
        created_ms=int(created.timestamp() * 1000),
        best_candidate=None if best is None else str(best["candidate"]),
        best_key=None if best is None else str(best["key"]),
        best_objective=None if best is None else _number(best["objective"]),
        best_low=None if best is None else _number(best["objective_low"]),
        best_high=None if best is None else _number(best["objective_high"]),
    )
