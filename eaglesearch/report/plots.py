"""Plotly figures of a search's report: the greedy path, per-benchmark heatmap, Pareto front, main effects, losses.

Each builder takes the frames the report already has (the ranked table, the greedy round table, stage loss curves)
and returns a figure, or None when its section does not apply (no greedy rounds, no grid factors, nothing usable);
``html.py`` turns a None into a one-line note. The numbers behind the charts (the Pareto mask, grid levels, main
effects) are plain functions here so that tests can check them without reading a figure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from eaglesearch.report.table import OK_STATUSES

TEMPLATE = "plotly_white"
MUTED = "rgba(120, 120, 120, 0.55)"
ACCENT = "#1f5fbf"
FRONT = "#d62728"
COST_COLUMN = "vision_gflops"
EXPERTS_FACTOR = "experts"


@dataclass(frozen=True)
class StageCurve:
    """One stage run's ``train/loss`` history, named by the trial it belongs to."""

    candidate: str
    stage: str  # "1. prealign / clip", "2. sft"
    steps: tuple[int, ...]
    losses: tuple[float, ...]


def usable(table: pd.DataFrame) -> pd.DataFrame:
    """Trials with a usable objective (finished or cached); baseline and failed rows are left out."""
    return table[table["status"].isin(OK_STATUSES) & table["objective"].notna()]


def _interval(rows: pd.DataFrame) -> dict | None:
    """Asymmetric error bars from ``objective_low``/``objective_high``, or None when no row has an interval."""
    if rows[["objective_low", "objective_high"]].isna().all().all():
        return None
    return {"type": "data", "symmetric": False,
            "array": (rows["objective_high"] - rows["objective"]).fillna(0).tolist(),
            "arrayminus": (rows["objective"] - rows["objective_low"]).fillna(0).tolist(),
            "thickness": 1.2, "width": 4}


def _layout(fig: go.Figure, title: str, height: int = 420) -> go.Figure:
    fig.update_layout(template=TEMPLATE, title={"text": title, "x": 0.01}, height=height,
                      margin={"l": 60, "r": 20, "t": 60, "b": 50}, hovermode="closest")
    return fig


# ------------------------------------------------------------------------------------------------ greedy path

def greedy_path_figure(rounds: pd.DataFrame | None, table: pd.DataFrame, objective: str) -> go.Figure | None:
    """Objective per greedy round: every candidate as a grey point with its interval, the chosen one per round
    joined by a line. ``rounds`` is ``round_table``'s frame; intervals come from the ranked table by key."""
    if rounds is None or rounds.empty or rounds["round"].dropna().nunique() < 1:
        return None
    interval = table.set_index("key")[["objective_low", "objective_high"]]
    frame = rounds.join(interval, on="key")
    frame = frame[frame["status"].isin(OK_STATUSES) & frame["objective"].notna()]
    if frame.empty:
        return None
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=frame["round"].astype(int).tolist(), y=frame["objective"].tolist(), mode="markers", name="candidate",
        marker={"color": MUTED, "size": 9}, error_y=_interval(frame), text=frame["candidate"].tolist(),
        hovertemplate="round %{x}<br>%{text}<br>" + objective + " %{y:.4f}<extra></extra>"))
    chosen = frame[frame["chosen"] == "✓"].sort_values("round")
    if len(chosen):
        fig.add_trace(go.Scatter(
            x=chosen["round"].astype(int).tolist(), y=chosen["objective"].tolist(), mode="lines+markers+text",
            name="chosen", marker={"color": ACCENT, "size": 12}, line={"color": ACCENT, "width": 2},
            error_y=_interval(chosen), text=chosen["candidate"].tolist(), textposition="top center",
            hovertemplate="round %{x}<br>%{text} (chosen)<br>" + objective + " %{y:.4f}<extra></extra>"))
    fig.update_xaxes(title="round", dtick=1)
    fig.update_yaxes(title=objective)
    return _layout(fig, f"Greedy path: {objective} per round (bars: 95% interval)")


# ------------------------------------------------------------------------------------------------ heatmap

def score_heatmap(table: pd.DataFrame) -> go.Figure | None:
    """Every trial (rank order, failed ones left out) against every benchmark's primary score."""
    scores = [c for c in table.columns if isinstance(c, str) and c.startswith("score/")]
    rows = table[table["status"] != "failed"]
    rows = rows[rows[scores].notna().any(axis=1)] if scores else rows.iloc[0:0]
    if rows.empty:
        return None
    labels = [_row_label(r) for _, r in rows.iterrows()]
    z = rows[scores].to_numpy(dtype=float)
    text = [["–" if math.isnan(v) else f"{v:.3f}" for v in line] for line in z]
    fig = go.Figure(go.Heatmap(
        z=z.tolist(), x=[s.removeprefix("score/") for s in scores], y=labels, text=text, texttemplate="%{text}",
        colorscale="Viridis", colorbar={"title": "score"}, hoverongaps=False,
        hovertemplate="%{y}<br>%{x}: %{z:.4f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(type="category", side="top")
    _layout(fig, "Per-benchmark scores (rows in rank order)", height=max(320, 140 + 28 * len(rows)))
    fig.update_layout(margin={"l": 20 + 7 * max(len(label) for label in labels), "t": 90})
    return fig


def _row_label(row: pd.Series) -> str:
    rank = row.get("tie") or row.get("rank")
    prefix = "" if rank is None or (isinstance(rank, float) and math.isnan(rank)) or rank is pd.NA else f"{rank}. "
    suffix = f" ({row['status']})" if row["status"] not in OK_STATUSES else ""
    return f"{prefix}{row['candidate']}{suffix}"


# ------------------------------------------------------------------------------------------------ Pareto front

def non_dominated(cost: Sequence[float], value: Sequence[float], mode: str = "max") -> list[bool]:
    """Pareto mask of (cost, value) points: True where no other point costs no more and scores no worse, being
    strictly better in one of the two (``mode`` says whether a higher value is better). Equal points are all kept."""
    sign = 1.0 if mode == "max" else -1.0
    points = [(float(c), sign * float(v)) for c, v in zip(cost, value, strict=True)]
    mask = []
    for i, (ci, vi) in enumerate(points):
        dominated = any(cj <= ci and vj >= vi and (cj < ci or vj > vi)
                        for j, (cj, vj) in enumerate(points) if j != i)
        mask.append(not dominated)
    return mask


def pareto_figure(table: pd.DataFrame, objective: str, mode: str) -> go.Figure | None:
    """Objective against vision GFLOPs per image for every usable trial; the non-dominated ones are joined."""
    rows = usable(table)
    rows = rows[rows[COST_COLUMN].notna()] if COST_COLUMN in rows.columns else rows.iloc[0:0]
    if rows.empty:
        return None
    rows = rows.assign(_front=non_dominated(rows[COST_COLUMN], rows["objective"], mode))
    fig = go.Figure()
    for front, name, color in ((False, "dominated", MUTED), (True, "Pareto front", FRONT)):
        part = rows[rows["_front"] == front].sort_values(COST_COLUMN)
        if part.empty:
            continue
        fig.add_trace(go.Scatter(
            x=part[COST_COLUMN].tolist(), y=part["objective"].tolist(), name=name,
            mode="lines+markers" if front else "markers", error_y=_interval(part),
            marker={"color": color, "size": 11 if front else 9, "symbol": "star" if front else "circle"},
            line={"color": color, "dash": "dot"}, text=part["candidate"].tolist(),
            hovertemplate="%{text}<br>%{x:.4g} GFLOPs<br>" + objective + " %{y:.4f}<extra></extra>"))
    fig.update_xaxes(title="vision GFLOPs per image (cost)")
    fig.update_yaxes(title=objective)
    better = "higher" if mode == "max" else "lower"
    return _layout(fig, f"Pareto front: {objective} ({better} is better) against cost")


# ------------------------------------------------------------------------------------------------ main effects

def grid_levels(labels: Sequence[str]) -> pd.DataFrame:
    """Factor levels of grid trials, read back from their labels (``clip+sam fusion=llava_hr lr=0.001``: the
    experts part, then ``factor=value`` pairs). One column per factor; a factor with a single level is dropped
    (it did not vary, so it has no effect to show)."""
    rows = []
    for label in labels:
        head, *pairs = str(label).split(" ")
        row = {EXPERTS_FACTOR: head}
        for pair in pairs:
            name, sep, value = pair.partition("=")
            if sep:
                row[name] = value
        rows.append(row)
    frame = pd.DataFrame(rows, index=range(len(rows)))
    varying = [c for c in frame.columns if frame[c].nunique(dropna=True) > 1]
    return frame[varying]


def main_effects(table: pd.DataFrame, grid_keys: set[str]) -> dict[str, pd.DataFrame]:
    """Factor → (level, mean objective, trials) over the usable grid trials, levels in first-seen order."""
    rows = usable(table)
    rows = rows[rows["key"].isin(grid_keys)]
    if len(rows) < 2:
        return {}
    levels = grid_levels(rows["candidate"].tolist())
    levels.index = rows.index
    out: dict[str, pd.DataFrame] = {}
    for factor in levels.columns:
        frame = pd.DataFrame({"level": levels[factor], "objective": rows["objective"]}).dropna(subset=["level"])
        grouped = frame.groupby("level", sort=False)["objective"].agg(["mean", "count"]).reset_index()
        out[factor] = grouped.rename(columns={"mean": "objective", "count": "trials"})
    return out


def main_effects_figure(effects: dict[str, pd.DataFrame], objective: str) -> go.Figure | None:
    """One panel per grid factor: mean objective at each of its levels (bar text: how many trials)."""
    if not effects:
        return None
    names = list(effects)
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names, shared_yaxes=True,
                        horizontal_spacing=0.06 if len(names) > 1 else 0.0)
    for i, name in enumerate(names, start=1):
        frame = effects[name]
        fig.add_trace(go.Bar(
            x=frame["level"].tolist(), y=frame["objective"].tolist(), name=name, showlegend=False,
            marker={"color": ACCENT}, text=[f"n={n}" for n in frame["trials"]], textposition="outside",
            hovertemplate=name + "=%{x}<br>mean " + objective + " %{y:.4f}<br>%{text}<extra></extra>"), row=1, col=i)
        fig.update_xaxes(type="category", row=1, col=i)
    fig.update_yaxes(title=f"mean {objective}", row=1, col=1)
    return _layout(fig, f"Main effects: mean {objective} per factor level")


# ------------------------------------------------------------------------------------------------ loss curves

def loss_curves_figure(curves: Sequence[StageCurve]) -> go.Figure | None:
    """``train/loss`` per step, one panel per stage, one line per trial (a trial keeps its colour across panels)."""
    curves = [c for c in curves if c.steps]
    if not curves:
        return None
    stages = sorted({c.stage for c in curves})
    candidates = list(dict.fromkeys(c.candidate for c in curves))
    palette = _palette(len(candidates))
    colors = dict(zip(candidates, palette, strict=True))
    fig = make_subplots(rows=len(stages), cols=1, subplot_titles=stages, vertical_spacing=0.12 / max(1, len(stages)))
    shown: set[str] = set()
    for row, stage in enumerate(stages, start=1):
        for c in (c for c in curves if c.stage == stage):
            fig.add_trace(go.Scatter(
                x=list(c.steps), y=list(c.losses), mode="lines", name=c.candidate, legendgroup=c.candidate,
                showlegend=c.candidate not in shown, line={"color": colors[c.candidate], "width": 1.5},
                hovertemplate=c.candidate + "<br>step %{x}<br>loss %{y:.4f}<extra></extra>"), row=row, col=1)
            shown.add(c.candidate)
        fig.update_yaxes(title="train/loss", row=row, col=1)
    fig.update_xaxes(title="step", row=len(stages), col=1)
    return _layout(fig, "Stage loss curves (train/loss of each stage run)", height=120 + 300 * len(stages))


def _palette(n: int) -> list[str]:
    base = qualitative.Plotly + qualitative.D3 + qualitative.Dark24
    return [base[i % len(base)] for i in range(n)]
