"""Compile a search's record into ``<out>/<search>/leaderboard.{md,csv,tex}``, ``report.html`` (+ ``rounds.md``,
``stages.md``), log them on the search run and publish the ranking to the MLflow UI."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from eaglesearch.report.data_mix import mixture_markdown, mixture_table
from eaglesearch.report.html import report_html
from eaglesearch.report.latex import leaderboard_latex
from eaglesearch.report.mlflow_view import leaderboard
from eaglesearch.report.pareto import pareto_section
from eaglesearch.report.plots import StageCurve
from eaglesearch.report.render import to_csv, to_markdown
from eaglesearch.report.rounds import rule_line, rung_lines
from eaglesearch.report.table import ANSWER_PRIOR, OK_STATUSES, ranked_table, round_table
from eaglesearch.tracking import RunRecord, TrackingStore
from eaglesearch.tracking.records import TAG_STOPPED

ARTIFACT_DIR = "report"
TieFunction = Callable[[pd.DataFrame, pd.DataFrame], Mapping[str, str]]  # (table, runs) -> key -> "1" / "=1"


@dataclass(frozen=True)
class ReportPaths:
    markdown: Path
    csv: Path
    rounds_markdown: Path | None
    table: pd.DataFrame
    parent_id: str
    stages_markdown: Path | None = None
    html: Path | None = None
    latex: Path | None = None
    data_markdown: Path | None = None


def _settings(parent: RunRecord, objective: str | None, mode: str | None,
              baseline_key: str | None) -> tuple[str, str, str | None]:
    """Explicit arguments win; then the parent run's params ``objective``/``mode``/``baseline_key``."""
    params = parent.params
    objective = objective or params.get("objective") or "objective"
    mode = mode or params.get("mode") or "max"
    if baseline_key is None:
        baseline_key = params.get("baseline_key") or None
        if baseline_key in ("None", "null"):
            baseline_key = None
    return objective, mode, baseline_key


def _is_greedy(runs: pd.DataFrame, parent: RunRecord) -> bool:
    if "strategy" in runs.columns and (runs["strategy"] == "greedy").any():
        return True
    return parent.params.get("strategy") == "greedy"


def _header(title: str, search: str, parent: RunRecord, store: TrackingStore) -> list[str]:
    started = parent.start_time.strftime("%Y-%m-%d %H:%M UTC") if parent.start_time is not None else "–"
    return [
        f"# {title}: {search}",
        "",
        f"- search: `{search}`",
        f"- parent run: `{parent.run_id}` ({parent.status.lower()}, `{parent.name}`)",
        f"- started: {started}; report written {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- tracking: `{store.uri}`",
    ]


def leaderboard_markdown(table: pd.DataFrame, runs: pd.DataFrame, search: str, parent: RunRecord,
                         store: TrackingStore) -> str:
    objective, mode = table.attrs.get("objective", "objective"), table.attrs.get("mode", "max")
    trials = table[table["status"] != "baseline"]  # the answer-prior row is a reference, not a trial
    counts = trials["status"].value_counts()
    summary = ", ".join(f"{counts[s]} {s}" for s in ("finished", "cached", "failed", "stopped") if s in counts)
    base_key = table.attrs.get("baseline_key")
    base = "none" if base_key is None else f"`{base_key}` ({_label_of(table, base_key)})"
    lines = _header("Leaderboard", search, parent, store)
    lines += [
        f"- objective: `{objective}` ({mode}); delta is relative to the baseline: {base}",
        f"- trials: {len(trials)} ({summary or 'none recorded'})",
        "",
    ]
    lines.append(to_markdown(table, humanize=True) if len(table) else "_No trials recorded under this parent run._\n")
    failed = runs[_failed_mask(runs)] if len(runs) else runs
    if len(failed):
        lines += ["## Failed trials", ""]
        for _, row in failed.iterrows():
            error = str(row.get("error") or "no error recorded").strip()
            lines.append(f"- **{row.get('label')}** (round {row.get('round')}, key `{row.get('key')}`, "
                         f"run `{row.get('run_id')}`):")
            lines += ["", "  ```", *(f"  {ln}" for ln in error.splitlines()), "  ```", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _failed_mask(runs: pd.DataFrame) -> pd.Series:
    tag = runs["status_tag"] if "status_tag" in runs.columns else pd.Series(None, index=runs.index)
    return tag.eq("failed") | (tag.isna() & runs.get("status", pd.Series("", index=runs.index)).eq("FAILED"))


def _label_of(table: pd.DataFrame, key: str) -> str:
    rows = table[table["key"] == key]
    return str(rows["candidate"].iloc[0]) if len(rows) else "?"


def round_skills(rounds: pd.DataFrame, runs: pd.DataFrame, top: int = 3, floor: float = 0.05) -> dict[int, str]:
    """Round → what its chosen trial gained per benchmark over the previous round's choice, e.g.
    ``"+sam: detail +0.45, locate +0.38"`` (the ``top`` largest gains of at least ``floor``; "no benchmark gained
    ..." otherwise). Says which missing skill each adopted expert brought."""
    scores = [c for c in runs.columns if isinstance(c, str) and c.startswith("score/")]
    if not scores or "key" not in runs.columns:
        return {}
    by_key = runs.drop_duplicates("key").set_index("key")[scores].apply(pd.to_numeric, errors="coerce")
    chosen = rounds[rounds["chosen"] == "✓"].sort_values("round")
    out: dict[int, str] = {}
    previous = None
    for _, row in chosen.iterrows():
        if previous is not None and row["key"] in by_key.index and previous in by_key.index:
            gains = (by_key.loc[row["key"]] - by_key.loc[previous]).dropna().sort_values(ascending=False)
            best = [f"{name.removeprefix('score/')} {value:+.2f}" for name, value in gains.items() if value >= floor]
            added = row.get("added") or row["candidate"]
            out[int(row["round"])] = (f"+{added}: " + ", ".join(best[:top]) if best
                                      else f"+{added}: no benchmark gained {floor:.2f} or more")
        previous = row["key"]
    return out


def rounds_markdown(rounds: pd.DataFrame, search: str, parent: RunRecord, store: TrackingStore,
                    objective: str, mode: str, runs: pd.DataFrame | None = None) -> str:
    lines = _header("Greedy rounds", search, parent, store)
    lines.append(f"- objective: `{objective}` ({mode}); gain is the improvement over the previous round's choice "
                 "(✓) in the search's direction (positive = better)")
    rule = rule_line(parent.tags)
    lines += [f"- {rule}", ""] if rule else [""]
    skills = round_skills(rounds, runs) if runs is not None and len(runs) else {}
    rungs = rung_lines(parent.tags)
    for rnd, rows in rounds.groupby("round", sort=True):
        ok = rows["status"].isin(OK_STATUSES).sum()
        lines += [f"## Round {rnd} ({len(rows)} trials, {ok} usable)", ""]
        if int(rnd) in rungs:
            lines += [rungs[int(rnd)], ""]
        if int(rnd) in skills:
            lines += [f"Adopted {skills[int(rnd)]}", ""]
        elif not (rows["chosen"] == "✓").any() and parent.tags.get(TAG_STOPPED):
            gain = pd.to_numeric(rows["gain"], errors="coerce").max()
            best = f" (best gain {gain:+.4f})" if pd.notna(gain) else ""
            lines += [f"Not adopted: the search stopped here, {parent.tags[TAG_STOPPED]}{best}", ""]
        lines.append(to_markdown(rows.drop(columns="round")))
    return "\n".join(lines).rstrip("\n") + "\n"


def write_report(store: TrackingStore, search: str, out_dir: Path, parent_id: str | None = None,
                 objective: str | None = None, mode: str | None = None,
                 baseline_key: str | None = None, ties: TieFunction | None = None) -> ReportPaths:
    """Write ``out_dir/<search>/leaderboard.md``, ``leaderboard.csv``, for greedy searches ``rounds.md``, for
    recipes of several stages ``stages.md``, and ``data.md`` (samples per trial, stage and source); log them on the parent run under ``report/``. ``parent_id=None`` takes the search's latest parent run.

    ``objective``/``mode``/``baseline_key`` left as None default to the parent run's params of those names,
    then to ``"objective"``/``"max"``/none. ``ties(table, runs)``, when given, returns trial key → rank label with
    statistical ties marked (``"=1"``); it fills a ``tie`` column next to ``rank``.
    """
    if parent_id is None:
        parent_id = store.latest_parent(search)
        if parent_id is None:
            raise LookupError(f"no search named '{search}' is recorded in {store.uri}; run it first "
                              f"(eaglesearch run ...) or point MLFLOW_TRACKING_URI at the store that has it")
    parent = store.get_run(parent_id)
    objective, mode, baseline_key = _settings(parent, objective, mode, baseline_key)
    runs = store.trial_runs(parent_id)
    table = ranked_table(runs, objective=objective, mode=mode, baseline_key=baseline_key)
    if ties is not None and objective == "objective" and len(table):
        labels = ties(table, runs)
        table.insert(1, "tie", table["key"].map(lambda k: labels.get(str(k), "")))

    folder = Path(out_dir) / search
    folder.mkdir(parents=True, exist_ok=True)
    md_path, csv_path = folder / "leaderboard.md", folder / "leaderboard.csv"
    pareto = pareto_section(runs, parent.params, objective, mode)  # two-objective searches only
    md_path.write_text(leaderboard_markdown(table, runs, search, parent, store) + pareto, encoding="utf-8")
    csv_path.write_text(to_csv(table), encoding="utf-8")
    rounds_path, rounds = None, None
    if _is_greedy(runs, parent) and len(runs):
        rounds_path = folder / "rounds.md"
        rounds = round_table(runs, objective=objective, mode=mode)
        rounds_path.write_text(rounds_markdown(rounds, search, parent, store, objective, mode, runs),
                               encoding="utf-8")
    stages_path = None
    stages = store.stage_runs(search)
    stages = stages[stages["parent"].isin(set(runs["run_id"]))] if len(stages) and len(runs) else stages.iloc[0:0]
    # A one-stage recipe with no pretrained components has nothing to add to the leaderboard.
    if len(stages) and (stages["index"].max() > 1 or stages["stage"].nunique() > 1):
        stages_path = folder / "stages.md"
        stages_path.write_text(stages_markdown(stages, runs, search, parent, store), encoding="utf-8")
    data_path = None
    mixtures = mixture_table(runs)
    if len(mixtures):
        data_path = folder / "data.md"
        data_path.write_text(mixture_markdown(mixtures, search), encoding="utf-8")
    html_path, tex_path = folder / "report.html", folder / "leaderboard.tex"
    html_path.write_text(report_html(search, table, runs, parent, store.uri, rounds, stage_curves(store, stages, runs)),
                         encoding="utf-8")
    tex_path.write_text(leaderboard_latex(table, search), encoding="utf-8")
    for path in (md_path, csv_path, rounds_path, stages_path, data_path, html_path, tex_path):
        if path is not None:
            store.log_artifact(parent_id, path, ARTIFACT_DIR)
    prior = table[table["candidate"] == ANSWER_PRIOR]
    if len(prior):  # the baseline on the parent run, beside the ranked trials
        row = prior.iloc[0]
        values = {f"answer_prior/{c}": float(row[c]) for c in table.columns
                  if (c == "objective" or str(c).startswith("score/")) and pd.notna(row[c])}
        store.log_metrics(parent_id, values)
    store.publish_leaderboard(leaderboard(table, runs, search, parent))
    return ReportPaths(markdown=md_path, csv=csv_path, rounds_markdown=rounds_path, table=table,
                       parent_id=parent_id, stages_markdown=stages_path, html=html_path, latex=tex_path,
                       data_markdown=data_path)


def stage_curves(store: TrackingStore, stages: pd.DataFrame, runs: pd.DataFrame) -> list[StageCurve]:
    """The ``train/loss`` history of every stage run of these trials. A per-expert stage artifact (same
    ``artifact_key``) is drawn once, named by its expert, from the run that trained it; joint stages once per
    trial, named by the trial."""
    if stages.empty:
        return []
    labels = dict(zip(runs["run_id"], runs["label"], strict=False)) if "label" in runs.columns else {}
    ordered = stages.assign(_trained=stages["status"] != "trained").sort_values(
        ["index", "_trained", "run_id"], kind="stable")
    seen: set[str] = set()
    curves = []
    for _, row in ordered.iterrows():
        artifact = row["artifact_key"] if isinstance(row["artifact_key"], str) and row["artifact_key"] else None
        if artifact is not None and artifact in seen:
            continue
        history = store.metric_history(str(row["run_id"]), "train/loss")
        if not history:
            continue
        if artifact is not None:
            seen.add(artifact)
        expert = row["expert"] if isinstance(row["expert"], str) and row["expert"] else None
        name = expert if artifact is not None and expert else str(labels.get(row["parent"], row["parent"]))
        curves.append(StageCurve(candidate=name, stage=f"{int(row['index'])}. {row['stage']}",
                                 steps=tuple(int(s) for s, _ in history), losses=tuple(float(v) for _, v in history)))
    return curves


def stages_table(stages: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per stage of every trial, in trial then stage order: what trained, what was reused, final loss."""
    labels = dict(zip(runs["run_id"], runs["label"], strict=False)) if "label" in runs.columns else {}
    rounds = dict(zip(runs["run_id"], runs["round"], strict=False)) if "round" in runs.columns else {}

    def column(name: str) -> pd.Series:
        return stages[name] if name in stages.columns else pd.Series(float("nan"), index=stages.index)

    table = pd.DataFrame({
        "candidate": stages["parent"].map(labels),
        "round": stages["parent"].map(rounds),
        "stage": [f"{i}. {s}" + (f" / {e}" if isinstance(e, str) and e else "")
                  for i, s, e in zip(stages["index"], stages["stage"], stages["expert"], strict=True)],
        "status": stages["status"],
        "steps": column("stage/steps").round().astype("Int64"),
        "loss_final": column("train/loss_final"),
        "train_s": column("stage/wall_s").where(stages["status"] == "trained").round(1),
        "artifact": stages["artifact_key"].fillna(""),
    })
    order = table.assign(_index=stages["index"], _expert=stages["expert"].fillna(""))
    order = order.sort_values(["round", "candidate", "_index", "_expert"], kind="stable")
    return order.drop(columns=["_index", "_expert"]).reset_index(drop=True)


def stages_markdown(stages: pd.DataFrame, runs: pd.DataFrame, search: str, parent: RunRecord,
                    store: TrackingStore) -> str:
    table = stages_table(stages, runs)
    per_expert = stages[stages["artifact_key"].notna()]
    trained = per_expert[per_expert["status"] == "trained"]
    lines = _header("Training stages", search, parent, store)
    lines += [
        (f"- per-expert stage artifacts: {per_expert['artifact_key'].nunique()} used by this search, "
         f"{len(trained)} trained here, {len(per_expert) - len(trained)} uses served from the artifact store"),
        "- reused rows show the curve's final loss of the run that built the artifact; train_s only where trained",
        "",
        to_markdown(table),
    ]
    return "\n".join(lines).rstrip("\n") + "\n"
