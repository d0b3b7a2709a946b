"""The leaderboard as a paper table: a booktabs ``tabular`` fragment to ``\\input`` into a LaTeX document.

Rows come from the ranked table (``report/table.py``) unchanged, so whatever it ranks appears here: trials in rank
order, then rows that are references rather than trials (status ``baseline``, e.g. an answer-prior row) in italics
under a rule. The best value of every numeric column is bold (highest score; the objective by the search's mode;
lowest cost), compared at the printed precision as a reader would. Ranks use the report's tie labels (``=2``) and
trials in a statistically tied group carry a dagger. Failed trials are left out (the markdown lists them).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from eaglesearch.report.table import OK_STATUSES

_ESCAPES = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}
COST_COLUMN = "vision_gflops"
BASELINE_STATUS = "baseline"
DAGGER = r"$^{\dagger}$"


def latex_escape(text: Any) -> str:
    """Text with LaTeX's special characters escaped (``clip+sam_448`` → ``clip+sam\\_448``)."""
    return "".join(_ESCAPES.get(ch, ch) for ch in str(text))


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _number(value: Any) -> str:
    """Scores in [0, 100) with three decimals, larger numbers (MME-style sums, GFLOPs) with one."""
    if _missing(value):
        return "--"
    value = float(value)
    return f"{value:.1f}" if abs(value) >= 100 else f"{value:.3f}"


def _rank(row: pd.Series) -> str:
    tie = row.get("tie")
    if isinstance(tie, str) and tie:
        return tie
    rank = row.get("rank")
    return "--" if _missing(rank) else str(int(rank))


def tied_keys(table: pd.DataFrame) -> set[str]:
    """Keys of the trials in a tie group: every ``=N`` row and the row ranked N that leads it."""
    if "tie" not in table.columns:
        return set()
    labels = {str(k): str(t) for k, t in zip(table["key"], table["tie"], strict=True) if isinstance(t, str) and t}
    leaders = {t[1:] for t in labels.values() if t.startswith("=")}
    return {k for k, t in labels.items() if t.startswith("=") or t in leaders}


def _best(texts: list[str], values: list[Any], higher: bool) -> set[int]:
    """Indices whose printed value equals the best printed value of the column."""
    numbered = [(i, float(t)) for i, (t, v) in enumerate(zip(texts, values, strict=True)) if not _missing(v)]
    if not numbered:
        return set()
    best = max(v for _, v in numbered) if higher else min(v for _, v in numbered)
    return {i for i, v in numbered if v == best}


def leaderboard_latex(table: pd.DataFrame, search: str) -> str:
    """A ``tabular`` (booktabs) of the ranked table; needs ``\\usepackage{booktabs}`` in the document."""
    objective, mode = table.attrs.get("objective", "objective"), table.attrs.get("mode", "max")
    trials = table[table["status"].isin(OK_STATUSES) & table["objective"].notna()]
    references = table[table["status"] == BASELINE_STATUS]
    scores = [c for c in table.columns if isinstance(c, str) and c.startswith("score/")]
    has_interval = trials[["objective_low", "objective_high"]].notna().any().any()
    has_cost = COST_COLUMN in table.columns and trials[COST_COLUMN].notna().any()
    # (column, header, higher is better); the interval column is text and never bold.
    numeric = [(s, latex_escape(s.removeprefix("score/")), True) for s in scores]
    numeric.append(("objective", latex_escape(objective), mode == "max"))
    if has_cost:
        numeric.append((COST_COLUMN, "GFLOPs", False))

    body = pd.concat([trials, references])
    cells: dict[str, list[str]] = {c: [_number(v) for v in body[c]] for c, _, _ in numeric}
    bold: dict[str, set[int]] = {c: _best(cells[c][:len(trials)], list(trials[c]), higher) for c, _, higher in numeric}
    tied = tied_keys(trials)

    headers = ["Rank", "Candidate", *(h for _, h, _ in numeric)]
    if has_interval:
        headers.insert(headers.index(latex_escape(objective)) + 1, r"95\% CI")
    lines = [
        f"% eaglesearch leaderboard of search '{search}': ranked by {objective} ({mode}); best per column in bold.",
        "% Needs \\usepackage{booktabs}. Generated from the MLflow record by `eaglesearch report`.",
        r"\begin{tabular}{rl" + "r" * (len(headers) - 2) + "}",
        r"\toprule",
        " & ".join(headers) + r" \\",
        r"\midrule",
    ]
    for i, (_, row) in enumerate(body.iterrows()):
        is_reference = i >= len(trials)
        if is_reference and i == len(trials) and len(trials):
            lines.append(r"\midrule")
        name = latex_escape(row["candidate"] if not _missing(row["candidate"]) else "?")
        if str(row["key"]) in tied:
            name += DAGGER
        row_cells = ["--" if is_reference else _rank(row), name]
        for column, _, _ in numeric:
            text = cells[column][i]
            row_cells.append(rf"\textbf{{{text}}}" if i in bold[column] else text)
            if column == "objective" and has_interval:
                low, high = row["objective_low"], row["objective_high"]
                row_cells.append("--" if _missing(low) or _missing(high) else f"[{_number(low)}, {_number(high)}]")
        if is_reference:
            row_cells = [rf"\textit{{{c}}}" for c in row_cells]
        lines.append(" & ".join(row_cells) + r" \\")
    lines.append(r"\bottomrule")
    if tied:
        lines.append(rf"\multicolumn{{{len(headers)}}}{{l}}{{\footnotesize {DAGGER} statistically tied with a "
                     r"neighbouring rank (paired bootstrap, 95\%).} \\")
    lines.append(r"\end{tabular}")
    return "\n".join(lines) + "\n"
