"""``report.html``: one self-contained page per search (plotly.js, CSS and data inline; opens offline and in
MLflow's artifact preview).

Sections: the leaderboard (intervals, tie labels, baseline rows styled apart), the greedy path (with every round's
candidates, their gains, paired intervals and decisions), per-benchmark
heatmap, Pareto front against vision GFLOPs, main effects of grid factors and the stage loss curves. A section that
does not apply to the search is replaced by a one-line note. The page holds no wall-clock time and fixed element
ids, so rebuilding it from the same record gives the same bytes.
"""

from __future__ import annotations

import html
import math
import numbers
from collections.abc import Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from eaglesearch.report import humanize, plots
from eaglesearch.report.latex import BASELINE_STATUS, tied_keys
from eaglesearch.report.rounds import rule_line, rung_lines
from eaglesearch.report.table import OK_STATUSES
from eaglesearch.tracking import RunRecord

CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 24px auto;
       max-width: 1180px; color: #1d2330; padding: 0 16px; }
h1 { font-size: 1.6em; margin-bottom: 4px; } h2 { margin-top: 36px; border-bottom: 1px solid #dde2ea; }
.meta { color: #4c5566; font-size: 0.92em; line-height: 1.5; } .meta code { font-size: 0.95em; }
nav a { margin-right: 14px; font-size: 0.92em; }
table.leaderboard { border-collapse: collapse; font-size: 0.88em; margin-top: 8px; }
table.leaderboard th, table.leaderboard td { padding: 4px 9px; border-bottom: 1px solid #e6e9ef; white-space: nowrap; }
table.leaderboard th { background: #f3f5f9; text-align: left; position: sticky; top: 0; }
table.leaderboard td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.best td { background: #eef5ff; font-weight: 600; }
tr.baseline td { color: #7a8191; font-style: italic; background: #fafafa; }
tr.failed td { color: #a33; }
td.tie { color: #b35c00; font-weight: 600; }
.note { color: #5d6575; font-style: italic; }
.scroll { overflow-x: auto; }
"""
SECTIONS = (("leaderboard", "Leaderboard"), ("greedy-path", "Greedy path"), ("heatmap", "Per-benchmark scores"),
            ("pareto", "Pareto front"), ("main-effects", "Main effects"), ("losses", "Stage loss curves"))


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _fmt(value: Any, digits: int = 4) -> str:
    """Integers with thousands separators, large floats without decimals, the rest with ``digits``."""
    if _missing(value):
        return "–"
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    value = float(value)
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.{digits}f}"


def _figure(fig: go.Figure | None, div_id: str, note: str) -> str:
    if fig is None:
        return f'<p class="note">{html.escape(note)}</p>'
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                       config={"displaylogo": False, "responsive": True})


def leaderboard_table(table: pd.DataFrame) -> str:
    """The ranked table as HTML: rank (tie label when tied), candidate, status, objective with its interval,
    delta, every benchmark score and the cost columns. ``baseline`` rows are italic and grey, failed ones red."""
    scores = [c for c in table.columns if isinstance(c, str) and c.startswith("score/")]
    costs = [c for c in ("vision_gflops", "params", "visual_tokens", "train_s") if c in table.columns]
    objective = table.attrs.get("objective", "objective")
    head = ["rank", "candidate", "round", "status", objective, "95% interval", "delta",
            *(s.removeprefix("score/") for s in scores), *costs]
    tied = tied_keys(table)
    out = ['<div class="scroll"><table class="leaderboard"><thead><tr>',
           *(f"<th>{html.escape(h)}</th>" for h in head), "</tr></thead><tbody>"]
    for _, row in table.iterrows():
        status = str(row["status"])
        classes = [status] if status in (BASELINE_STATUS, "failed") else []
        if not _missing(row["rank"]) and int(row["rank"]) == 1 and status in OK_STATUSES:
            classes.append("best")
        tie = row.get("tie") if "tie" in table.columns else None
        rank = tie if isinstance(tie, str) and tie else ("" if _missing(row["rank"]) else str(int(row["rank"])))
        low, high = row["objective_low"], row["objective_high"]
        interval = "–" if _missing(low) or _missing(high) else f"[{_fmt(low)}, {_fmt(high)}]"
        title = f' title="{html.escape(str(row["error"]))}"' if not _missing(row.get("error")) else ""
        cells = [
            f'<td class="num{" tie" if str(row["key"]) in tied else ""}">{html.escape(rank)}</td>',
            f"<td{title}>{html.escape(str(row['candidate']))}</td>",
            f'<td class="num">{_fmt(row["round"])}</td>',
            f"<td>{html.escape(status)}</td>",
            f'<td class="num">{_fmt(row["objective"])}</td>',
            f'<td class="num">{interval}</td>',
            f'<td class="num">{_fmt(row["delta"])}</td>',
            *(f'<td class="num">{_fmt(row[s])}</td>' for s in scores),
            *(f'<td class="num">{html.escape(humanize.cell(c, row[c]))}</td>' for c in costs),
        ]
        cls = f' class="{" ".join(classes)}"' if classes else ""
        out.append(f"<tr{cls}>" + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def rounds_html(rounds: pd.DataFrame | None, tags: dict[str, str]) -> str:
    """The greedy rounds below their figure: the adoption rule, each round's halving rank correlations, and every
    candidate's objective, gain, the gain's paired interval and the round's decision on it (adopted ones bold)."""
    if rounds is None or rounds.empty:
        return ""
    out = [f'<p class="meta">{html.escape(line)}</p>' for line in (rule_line(tags),) if line]
    rungs = rung_lines(tags)
    head = ["round", "candidate", "status", "objective", "gain", "interval", "decision"]
    out += ['<div class="scroll"><table class="leaderboard rounds"><thead><tr>',
            *(f"<th>{html.escape(h)}</th>" for h in head), "</tr></thead><tbody>"]
    for rnd, rows in rounds.groupby("round", sort=True):
        if int(rnd) in rungs:
            out.append(f'<tr><td colspan="{len(head)}" class="note">round {int(rnd)}: '
                       f"{html.escape(rungs[int(rnd)])}</td></tr>")
        for _, row in rows.iterrows():
            decision = row.get("decision") if "decision" in rows.columns else None
            decision = "adopted" if _missing(decision) and row["chosen"] == "✓" else decision
            cls = ' class="best"' if row["chosen"] == "✓" else (' class="failed"' if row["status"] == "failed" else "")
            interval = row.get("interval") if "interval" in rows.columns else None
            cells = [_fmt(row["round"]), str(row["candidate"]), str(row["status"]), _fmt(row["objective"]),
                     "–" if _missing(row["gain"]) else f"{row['gain']:+.4f}",
                     "–" if _missing(interval) else str(interval), "" if _missing(decision) else str(decision)]
            out.append(f"<tr{cls}>" + "".join(f'<td class="num">{html.escape(c)}</td>' if i in (0, 3, 4, 5)
                                              else f"<td>{html.escape(c)}</td>" for i, c in enumerate(cells)) + "</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _meta(table: pd.DataFrame, parent: RunRecord, tracking_uri: str) -> str:
    objective, mode = table.attrs.get("objective", "objective"), table.attrs.get("mode", "max")
    trials = table[table["status"] != BASELINE_STATUS]  # the answer-prior row is a reference, not a trial
    counts = trials["status"].value_counts()
    summary = ", ".join(f"{counts[s]} {s}" for s in ("finished", "cached", "failed", "stopped") if s in counts)
    started = parent.start_time.strftime("%Y-%m-%d %H:%M UTC") if parent.start_time is not None else "–"
    base = table.attrs.get("baseline_key")
    base_label = "none"
    if base is not None:
        rows = table[table["key"] == base]
        base_label = str(rows["candidate"].iloc[0]) if len(rows) else base
    ties = ("tie labels (=N): the paired bootstrap cannot separate the trial from the one ranked above it"
            if "tie" in table.columns else "no tie labels (intervals only)")
    return (f'<p class="meta">objective <code>{html.escape(objective)}</code> ({mode}; 95% bootstrap interval) · '
            f"trials: {len(trials)} ({html.escape(summary or 'none recorded')}) · delta relative to "
            f"<code>{html.escape(base_label)}</code> · {html.escape(ties)}<br>"
            f"parent run <code>{html.escape(parent.run_id)}</code> ({html.escape(parent.name)}, started {started}) "
            f"· tracking <code>{html.escape(tracking_uri)}</code></p>")


def report_html(search: str, table: pd.DataFrame, runs: pd.DataFrame, parent: RunRecord, tracking_uri: str,
                rounds: pd.DataFrame | None, curves: Sequence[plots.StageCurve]) -> str:
    """The whole page. ``rounds`` is the greedy round table (None for other strategies); ``curves`` the stage runs'
    loss histories."""
    objective, mode = table.attrs.get("objective", "objective"), table.attrs.get("mode", "max")
    grid_keys = set(runs.loc[runs["role"] == "grid", "key"].dropna().astype(str)) if "role" in runs.columns else set()
    effects = plots.main_effects(table, grid_keys)
    body = {
        "leaderboard": (leaderboard_table(table) if len(table)
                        else '<p class="note">No trials recorded under this parent run.</p>'),
        "greedy-path": _figure(plots.greedy_path_figure(rounds, table, objective), "fig-greedy-path",
                               "Not a greedy search (or no usable round yet): no greedy path to show.")
        + rounds_html(rounds, parent.tags),
        "heatmap": _figure(plots.score_heatmap(table), "fig-heatmap", "No per-benchmark scores recorded."),
        "pareto": _figure(plots.pareto_figure(table, objective, mode), "fig-pareto",
                          "No usable trial records both the objective and vision GFLOPs."),
        "main-effects": _figure(plots.main_effects_figure(effects, objective), "fig-main-effects",
                                "No grid factors varied in this search: no main effects to show."),
        "losses": _figure(plots.loss_curves_figure(curves), "fig-losses",
                          "No stage runs with a train/loss history are recorded for these trials."),
    }
    return page(f"eaglesearch report: {search}", _meta(table, parent, tracking_uri),
                [(sid, title, body[sid]) for sid, title in SECTIONS])


def page(title: str, meta: str, sections: Sequence[tuple[str, str, str]], plotly: bool = True) -> str:
    """A self-contained page: ``title``, the ``meta`` paragraph (HTML), a navigation bar and one ``<section>`` per
    ``(id, heading, body HTML)``; plotly.js inline when a section holds a figure."""
    nav = " ".join(f'<a href="#{sid}">{html.escape(heading)}</a>' for sid, heading, _ in sections)
    body = "\n".join(f'<section id="{sid}"><h2>{html.escape(heading)}</h2>\n{content}\n</section>'
                     for sid, heading, content in sections)
    script = f'<script type="text/javascript">{get_plotlyjs()}</script>\n' if plotly else ""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n{script}</head><body>\n"
            f"<h1>{html.escape(title)}</h1>\n{meta}\n<nav>{nav}</nav>\n{body}\n</body></html>\n")
