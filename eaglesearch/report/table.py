"""Ranked tables from a ``TrackingStore.trial_runs`` frame: the leaderboard and the greedy per-round table."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

OK_STATUSES = ("finished", "cached")
ANSWER_PRIOR = "answer prior"  # label of the baseline row (eaglesearch.evaluate.prior)
# Output column -> source column in ``trial_runs`` frames.
COST_COLUMNS: dict[str, str] = {
    "params": "cost/params_total",
    "trainable": "cost/params_trainable",
    "visual_tokens": "cost/visual_tokens",
    "vision_gflops": "cost/vision_gflops",
    "gflops": "cost/gflops_per_sample",
    "train_s": "train/wall_s",
    "trial_s": "cost/wall_s",
}
INT_COLUMNS = ("rank", "round", "params", "trainable", "visual_tokens")
ERROR_CHARS = 80


def _column(runs: pd.DataFrame, name: str, default: Any = None) -> pd.Series:
    if name in runs.columns:
        return runs[name]
    return pd.Series([default] * len(runs), index=runs.index, dtype=object if default is None else None)


def _numeric(runs: pd.DataFrame, name: str) -> pd.Series:
    return pd.to_numeric(_column(runs, name), errors="coerce").astype(float)


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    return str(value)


def short_error(error: Any, limit: int = ERROR_CHARS) -> str | None:
    """First non-empty line of an error, cut to ``limit`` characters."""
    text = _text(error)
    if not text:
        return None
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line if len(line) <= limit else line[:limit - 1] + "…"


def _status(runs: pd.DataFrame) -> pd.Series:
    """``finished``/``cached``/``failed`` from the status tag; a run without one falls back to MLflow's status."""
    tag = _column(runs, "status_tag").map(_text)
    mlflow_status = _column(runs, "status").map(_text).fillna("")
    fallback = mlflow_status.str.lower().replace({"killed": "failed"})
    return tag.where(tag.notna(), fallback)


def _check_mode(mode: str) -> None:
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', not {mode!r}")


def _baseline(frame: pd.DataFrame, baseline_key: str | None) -> pd.Series | None:
    """The row deltas refer to: ``baseline_key`` if given, else the single round-0 row, else none."""
    ok = frame[frame["_ok"]]
    if baseline_key is not None:
        rows = ok[ok["key"] == baseline_key]
    else:
        rows = ok[ok["round"] == 0]
        if len(rows) != 1:
            rows = ok[ok["_role"] == "base"]
    if len(rows) == 0 or (baseline_key is None and len(rows) != 1):
        return None
    return rows.iloc[0]


def prior_row(runs: pd.DataFrame, frame: pd.DataFrame, accs: list[str], objective: str,
              base: pd.Series | None) -> pd.DataFrame | None:
    """The ``answer prior`` baseline row (status ``baseline``, no rank): the ``prior/*`` metrics the trials logged
    (the same for every trial on the same data; the first finished trial's are used). None when no trial has them
    or the table ranks by a metric the baseline does not have."""
    source = f"prior/{objective}"
    if source not in runs.columns:
        return None
    values = pd.to_numeric(runs[source], errors="coerce")
    usable = values[frame["_ok"].reindex(values.index, fill_value=False) & values.notna()]
    if usable.empty:
        return None
    at = usable.index[0]
    row: dict[str, Any] = {"candidate": ANSWER_PRIOR, "status": "baseline", "objective": float(values[at])}
    for name in accs:
        row[name] = pd.to_numeric(pd.Series([runs.at[at, f"prior/{name}"] if f"prior/{name}" in runs.columns
                                             else math.nan]), errors="coerce").iloc[0]
    low, high = f"prior/{objective}_low", f"prior/{objective}_high"
    row["objective_low"] = float(runs.at[at, low]) if low in runs.columns else math.nan
    row["objective_high"] = float(runs.at[at, high]) if high in runs.columns else math.nan
    row["delta"] = row["objective"] - base["objective"] if base is not None else math.nan
    return pd.DataFrame([row], index=["prior"])


def ranked_table(runs: pd.DataFrame, objective: str = "objective", mode: str = "max",
                 baseline_key: str | None = None) -> pd.DataFrame:
    """One row per trial, best first; columns ``rank, candidate, round, status, score/*, objective, objective_low, objective_high, delta,
    params, trainable, visual_tokens, vision_gflops, gflops, train_s, trial_s, key, error``.

    Ties share a rank (1, 2, 2, 4) and are ordered by round then label. Trials without a usable objective
    (failed ones above all) get no rank and sit at the bottom, failed last. ``delta`` is objective minus the
    baseline's objective (``baseline_key``'s row, else the round-0 row); the baseline's key is in
    ``attrs["baseline_key"]``.
    """
    _check_mode(mode)
    frame = pd.DataFrame(index=runs.index)
    frame["candidate"] = _column(runs, "label").map(_text)
    frame["round"] = pd.to_numeric(_column(runs, "round"), errors="coerce").astype("Int64")
    frame["status"] = _status(runs)
    accs = sorted(c for c in runs.columns if isinstance(c, str) and c.startswith("score/"))
    for name in accs:
        frame[name] = _numeric(runs, name)
    frame["objective"] = _numeric(runs, objective)
    # The 95% interval is recorded for the recipe's objective; a ranking by another metric has none.
    frame["objective_low"] = _numeric(runs, "objective_low") if objective == "objective" else math.nan
    frame["objective_high"] = _numeric(runs, "objective_high") if objective == "objective" else math.nan
    frame["key"] = _column(runs, "key").map(_text)
    frame["error"] = _column(runs, "error").map(short_error)
    frame["_role"] = _column(runs, "role").map(_text)
    frame["_ok"] = frame["status"].isin(OK_STATUSES) & frame["objective"].notna()

    base = _baseline(frame, baseline_key)
    frame["delta"] = frame["objective"] - base["objective"] if base is not None else math.nan
    for out, source in COST_COLUMNS.items():
        frame[out] = _numeric(runs, source)

    ranks = frame.loc[frame["_ok"], "objective"].rank(method="min", ascending=(mode == "min"))
    frame["rank"] = ranks.reindex(frame.index)
    # Sort: ranked rows by rank; then unranked live/odd rows; failed ones last. Ties by round, then label.
    frame["_group"] = 0
    frame.loc[~frame["_ok"], "_group"] = 1
    frame.loc[frame["status"] == "failed", "_group"] = 2
    frame["_label"] = frame["candidate"].fillna("")
    frame = frame.sort_values(["_group", "rank", "round", "_label"], na_position="last", kind="stable")

    columns = ["rank", "candidate", "round", "status", *accs, "objective", "objective_low", "objective_high", "delta",
               *COST_COLUMNS, "key", "error"]
    prior = prior_row(runs, frame, accs, objective, base)
    if prior is not None:  # after the ranked rows, before unranked and failed ones
        ranked = int(frame["_ok"].sum())
        frame = pd.concat([frame.iloc[:ranked], prior, frame.iloc[ranked:]])
    out = frame[columns].reset_index(drop=True)
    for name in INT_COLUMNS:
        out[name] = pd.to_numeric(out[name], errors="coerce").round().astype("Int64")
    out.attrs["baseline_key"] = None if base is None else base["key"]
    out.attrs["objective"] = objective
    out.attrs["mode"] = mode
    return out


def _chosen_in_round(rows: pd.DataFrame, next_rows: pd.DataFrame | None, mode: str) -> Any:
    """Index of the round's chosen trial: the one every next-round label extends (greedy builds on it),
    else the round's best usable objective."""
    if next_rows is not None and len(next_rows):
        labels = [lbl for lbl in next_rows["candidate"] if lbl]
        for idx, label in rows["candidate"].items():
            if label and labels and all(nl.startswith(f"{label}+") for nl in labels):
                return idx
    ok = rows[rows["status"].isin(OK_STATUSES) & rows["objective"].notna()]
    if ok.empty:
        return None
    return ok["objective"].idxmax() if mode == "max" else ok["objective"].idxmin()


def round_table(runs: pd.DataFrame, objective: str = "objective", mode: str = "max") -> pd.DataFrame:
    """Greedy rounds: every candidate of every round with its objective, the gain over the previous round's
    choice in the search's direction (positive = better, also in ``min`` mode), and ``chosen`` = "✓" on the trial
    the round picked. Columns ``round, candidate, added, status, objective, gain, chosen, key``; rounds ascending,
    best first within. A record with the rounds' verdicts (``eaglesearch.decision`` tags and ``round/gain*``
    metrics) adds ``interval`` (the gain's paired interval and its confidence level) and ``decision`` after
    ``gain``."""
    _check_mode(mode)
    frame = pd.DataFrame(index=runs.index)
    frame["round"] = pd.to_numeric(_column(runs, "round"), errors="coerce").astype("Int64")
    frame["candidate"] = _column(runs, "label").map(_text)
    frame["added"] = _column(runs, "added").map(_text)
    frame["status"] = _status(runs)
    frame["objective"] = _numeric(runs, objective)
    # The 95% interval is recorded for the recipe's objective; a ranking by another metric has none.
    frame["objective_low"] = _numeric(runs, "objective_low") if objective == "objective" else math.nan
    frame["objective_high"] = _numeric(runs, "objective_high") if objective == "objective" else math.nan
    frame["gain"] = math.nan
    frame["chosen"] = ""
    frame["key"] = _column(runs, "key").map(_text)

    rounds = sorted(r for r in frame["round"].dropna().unique())
    recorded = _column(runs, "chosen_tag").map(_text) == "true"  # the strategy's own choices, when recorded
    incumbent: float | None = None
    for i, rnd in enumerate(rounds):
        rows = frame[frame["round"] == rnd]
        next_rows = frame[frame["round"] == rounds[i + 1]] if i + 1 < len(rounds) else None
        if incumbent is not None:
            frame.loc[rows.index, "gain"] = (rows["objective"] - incumbent) * (1.0 if mode == "max" else -1.0)
        if recorded.any():  # a round without a recorded choice was not adopted (the search stopped there)
            picked = rows.index[recorded[rows.index]]
            chosen = picked[0] if len(picked) else None
        else:  # older records: infer the choice from the next round's labels or the best objective
            chosen = _chosen_in_round(rows, next_rows, mode)
        if chosen is not None:
            frame.loc[chosen, "chosen"] = "✓"
            value = frame.loc[chosen, "objective"]
            incumbent = None if pd.isna(value) else float(value)

    sign = -1.0 if mode == "max" else 1.0
    frame["_order"] = frame["objective"] * sign
    frame["_label"] = frame["candidate"].fillna("")
    columns = ["round", "candidate", "added", "status", "objective", "gain", "chosen", "key"]
    decision = _column(runs, "decision").map(_text)
    if decision.notna().any():  # the strategy's own verdicts: its gains (identical) with their intervals
        recorded_gain = _numeric(runs, "round/gain")
        frame["gain"] = recorded_gain.where(recorded_gain.notna(), frame["gain"])
        frame["interval"] = [interval_text(lo, hi, lvl) for lo, hi, lvl in zip(
            _numeric(runs, "round/gain_low"), _numeric(runs, "round/gain_high"), _numeric(runs, "round/gain_level"),
            strict=True)]
        frame["decision"] = decision
        columns[6:6] = ["interval", "decision"]
    frame = frame.sort_values(["round", "_order", "_label"], na_position="last", kind="stable")
    return frame[columns].reset_index(drop=True)


def interval_text(low: float, high: float, level: float) -> str | None:
    """``[-0.031, +0.062] 98.3%``: a gain's interval and its confidence level; None when there is none."""
    if any(v is None or math.isnan(v) for v in (low, high, level)):
        return None
    return f"[{low:+.3f}, {high:+.3f}] {100 * level:.3g}%"
