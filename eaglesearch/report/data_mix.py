"""``data.md``: what each trial trained on, per stage and source (the ``data/<stage>/<source>/...`` metrics every
trial records): samples drawn, usable samples, samples skipped by the data policy. A search over mixture ratios
reads its effect here beside the leaderboard's scores."""

from __future__ import annotations

import re

import pandas as pd

from eaglesearch.report.render import to_markdown

_COLUMN = re.compile(r"^data/([a-z][a-z0-9_]*)/([A-Za-z][A-Za-z0-9_\-]*)/(samples|available|skipped)$")


def mixture_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (trial, stage, source): label, key, stage, source, samples, available, skipped. Empty when no
    trial recorded per-source counts."""
    found = [(c, _COLUMN.match(str(c))) for c in runs.columns]
    columns = [(c, m.groups()) for c, m in found if m is not None]
    rows = []
    for _, run in runs.iterrows():
        cells: dict[tuple[str, str], dict[str, float]] = {}
        for column, (stage, source, what) in columns:
            if pd.notna(run[column]):
                cells.setdefault((stage, source), {})[what] = float(run[column])
        for (stage, source), values in cells.items():
            rows.append({"candidate": run.get("label"), "key": run.get("key"), "stage": stage, "source": source,
                         **{k: int(values[k]) if k in values else None for k in ("samples", "available", "skipped")}})
    table = pd.DataFrame(rows, columns=["candidate", "key", "stage", "source", "samples", "available", "skipped"])
    return table.astype({"samples": "Int64", "available": "Int64", "skipped": "Int64"})


def mixture_markdown(table: pd.DataFrame, search: str) -> str:
    return (f"# {search}: training data per trial, stage and source\n\n"
            "samples: drawn for the stage (its mixture's shares); available: usable samples of the source; "
            "skipped: records the data policy skipped (`data.on_problem`).\n\n" + to_markdown(table) + "\n")
