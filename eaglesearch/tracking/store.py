"""TrackingStore: the one typed door to MLflow (experiments, parent search runs, child trial runs)."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no progress bars in logs
# No "View run ... at URL" line per finished run: on a tracking server each costs a get_run request besides.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

from mlflow.entities import Metric, RunStatus, ViewType
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.tracking import MlflowClient

from eaglesearch.spec.trial import TrialResult, TrialSpec
from eaglesearch.tracking import mlflow_ui as UI
from eaglesearch.tracking import patience
from eaglesearch.tracking import records as R
from eaglesearch.tracking.batches import as_params, as_tags, chunks, curve, latest, pack
from eaglesearch.tracking.uri import absolute_uri, sqlite_path

_QUIET = ("alembic", "mlflow.store.db.utils", "mlflow.store.db", "mlflow.tracking._tracking_service")
_PAGE = 1000
_EXPERIMENTS_PER_QUERY = 100


def _quiet_mlflow() -> None:
    """Silence schema-migration chatter (``Creating initial MLflow database tables...``) and friends."""
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)


class TrackingStore:
    """A thin wrapper around ``MlflowClient``: one experiment per search, a parent run per invocation, a child
    run per trial. Every call is safe from any process (Ray workers) given an absolute URI, and waits out a
    tracking server that does not answer (``patience.py``).

    Requests are few (each is a round trip and a database transaction on a tracking server): a trial is one
    lookup, one ``create_run``, its params in one batch, two uploads (its spec and predictions) straight to the
    artifact location ``create_run`` answered (no ``get_run`` first), its curve and final metrics in one batch
    and the status change."""

    def __init__(self, uri: str) -> None:
        _quiet_mlflow()
        patience.install()
        self.uri = absolute_uri(uri)
        self._client: MlflowClient = patience.PatientClient(MlflowClient(tracking_uri=self.uri), self.uri)  # type: ignore[assignment]
        self._artifact_uris: dict[str, str] = {}  # run id -> artifact location, for runs this store created

    def __repr__(self) -> str:
        return f"TrackingStore({self.uri!r})"

    # ---------------------------------------------------------------- experiments and parent runs

    def ensure_experiment(self, search: str) -> str:
        """The id of the experiment named ``search``, created (or restored from deletion) if needed."""
        exp = self._client.get_experiment_by_name(search)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                self._client.restore_experiment(exp.experiment_id)
            if exp.tags.get(UI.EXPERIMENT_KIND_TAG) != UI.EXPERIMENT_KIND_TRAINING:
                self._mark_training(exp.experiment_id)
            return exp.experiment_id
        try:
            exp_id = self._client.create_experiment(search, artifact_location=self._artifact_location(search),
                                                    tags={UI.EXPERIMENT_KIND_TAG: UI.EXPERIMENT_KIND_TRAINING})
        except MlflowException:  # created meanwhile by another process
            exp = self._client.get_experiment_by_name(search)
            if exp is None:
                raise
            return exp.experiment_id
        return exp_id

    def _mark_training(self, experiment_id: str) -> None:
        """A model-training experiment for the MLflow UI (runs table), not a GenAI one (traces overview)."""
        self._client.set_experiment_tag(experiment_id, UI.EXPERIMENT_KIND_TAG, UI.EXPERIMENT_KIND_TRAINING)

    def _artifact_location(self, search: str) -> str | None:
        """Beside the database for sqlite stores (not in whatever the cwd is); the server's default otherwise."""
        db = sqlite_path(self.uri)
        return None if db is None else (db.parent / "mlartifacts" / search).as_uri()

    def open_parent(self, search: str, fingerprint: str, tune_name: str, space_text: str,
                    params: dict[str, str]) -> tuple[str, bool]:
        """Resume the RUNNING parent with this ``tune_name`` (an interrupted invocation): ``(id, True)``;
        else create a parent run, log ``search_space.yaml`` and ``params``: ``(id, False)``."""
        exp_id = self.ensure_experiment(search)
        live = self._search(
            [exp_id], R.tag_filter({R.TAG_KIND: R.KIND_SEARCH, R.TAG_TUNE_NAME: tune_name}, status="RUNNING"),
            order_by=["attributes.start_time DESC"], max_results=1)
        if live:
            return live[0].info.run_id, True
        tags = {R.TAG_KIND: R.KIND_SEARCH, R.TAG_SEARCH: search, R.TAG_FINGERPRINT: fingerprint,
                R.TAG_TUNE_NAME: tune_name}
        name = f"{search}@{datetime.now().strftime('%Y%m%d-%H%M%S')}"
        run_id = self._create_run(exp_id, name, tags)
        self._log_all(run_id, params=params)
        self.log_text(run_id, space_text, R.ARTIFACT_SEARCH_SPACE)
        return run_id, False

    def close_parent(self, run_id: str, status: str = "FINISHED") -> None:
        RunStatus.from_string(status)  # fail early on a typo
        self._client.set_terminated(run_id, status)

    def record_choices(self, parent_id: str, chosen_keys: list[str], stopped: str | None,
                       parent_tags: dict[str, str] | None = None) -> None:
        """Tag the adopted runs (``chosen_tag`` "true"); the stop reason and ``parent_tags`` on the parent."""
        runs = self.trial_runs(parent_id)
        for run_id in runs.loc[runs["key"].isin(chosen_keys), "run_id"]:
            self._client.set_tag(run_id, R.TAG_CHOSEN, "true")
        self._log_all(parent_id, tags={R.TAG_STOPPED: stopped or "", **(parent_tags or {})})

    def latest_parent(self, search: str) -> str | None:
        """The newest parent run of ``search``, FINISHED ones first; None if the search was never recorded."""
        exp = self._client.get_experiment_by_name(search)
        if exp is None or exp.lifecycle_stage == "deleted":
            return None
        for status in ("FINISHED", None):
            found = self._search([exp.experiment_id], R.tag_filter({R.TAG_KIND: R.KIND_SEARCH}, status=status),
                                 order_by=["attributes.start_time DESC"], max_results=1)
            if found:
                return found[0].info.run_id
        return None

    # ---------------------------------------------------------------- lookups

    def find_finished(self, key: str) -> TrialResult | None:
        """The most recent FINISHED trial run with this key in any experiment (not failed, not cached)."""
        query = R.tag_filter({R.TAG_KEY: key, R.TAG_STATUS: R.STATUS_FINISHED, R.TAG_KIND: R.KIND_TRIAL},
                             status="FINISHED")
        best = None
        for ids in chunks(self._experiment_ids(), _EXPERIMENTS_PER_QUERY):
            found = self._search(ids, query, order_by=["attributes.end_time DESC"], max_results=1)
            if found and (best is None or (found[0].info.end_time or 0) > (best.info.end_time or 0)):
                best = found[0]
        return None if best is None else R.trial_result(best)

    def find_in_parent(self, parent_id: str, key: str) -> TrialResult | None:
        """A completed (finished, cached or failed) child of ``parent_id`` with this key, the latest one."""
        exp_id = self._client.get_run(parent_id).info.experiment_id
        runs = self._search([exp_id], R.tag_filter({R.TAG_PARENT: parent_id, R.TAG_KEY: key}))
        done = [r for r in runs if R.is_done(r)]
        return R.trial_result(max(done, key=R.run_priority)) if done else None

    def lookup_trial(self, parent_id: str, key: str) -> R.TrialLookup:
        """:meth:`find_in_parent` and :meth:`find_finished` at once, and the key's leftover RUNNING runs under the
        parent: every run of ``key`` in one query (per 100 experiments), the worker's one lookup per trial."""
        runs: list[Any] = []
        for ids in chunks(self._experiment_ids(), _EXPERIMENTS_PER_QUERY):
            runs.extend(self._search(ids, R.tag_filter({R.TAG_KEY: key})))
        return R.lookup_in(runs, parent_id)

    def trial_results(self, parent_id: str, experiment_id: str) -> dict[str, TrialResult]:
        """The completed result of every trial key under ``parent_id``, read in one query (what a replay of the
        strategy on the record needs)."""
        return R.results_by_key(self._search([experiment_id], R.tag_filter({R.TAG_PARENT: parent_id})))

    def running_trials(self, parent_id: str, experiment_id: str, key: str) -> list[str]:
        """Run ids of ``key``'s runs still RUNNING under ``parent_id`` (a worker was stopped or died)."""
        query = R.tag_filter({R.TAG_PARENT: parent_id, R.TAG_KEY: key}, status="RUNNING")
        return [run.info.run_id for run in self._search([experiment_id], query)]

    def trial_runs(self, parent_id: str) -> pd.DataFrame:
        """One row per trial of the parent (duplicates of a key collapsed to the run that completed last)."""
        exp_id = self._client.get_run(parent_id).info.experiment_id
        runs = self._search([exp_id], R.tag_filter({R.TAG_PARENT: parent_id}))
        return R.runs_frame(R.dedupe_by_key(runs))

    def get_run(self, run_id: str) -> R.RunRecord:
        """Params, tags, latest metrics and times of any run, as plain values."""
        return R.run_record(self._client.get_run(run_id))

    def metric_history(self, run_id: str, name: str) -> list[tuple[int, float]]:
        history = self._client.get_metric_history(run_id, name)
        return [(m.step, m.value) for m in sorted(history, key=lambda m: (m.step, m.timestamp))]

    # ---------------------------------------------------------------- trial runs

    def start_trial(self, parent_id: str, experiment_id: str, trial: TrialSpec, *, search: str, round: int,
                    role: str, added: str | None, strategy: str, label: str, tags: dict[str, str] | None = None,
                    leftovers: Sequence[str] | None = None) -> str:
        """Create the child run of a trial (status tag ``running``, plus ``tags``); RUNNING leftovers are KILLED:
        ``leftovers`` (from :meth:`lookup_trial`), or those a query finds when not given."""
        return self._create_child(parent_id, experiment_id, trial, status=R.STATUS_RUNNING, search=search,
                                  round=round, role=role, added=added, strategy=strategy, label=label, extra_tags=tags,
                                  leftovers=leftovers)

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int | None = None,
                    tags: dict[str, str] | None = None) -> None:
        self._log_all(run_id, latest(metrics, step or 0), tags=tags)

    def log_history(self, run_id: str, name: str, points: Iterable[tuple[int, float]]) -> None:
        """A metric's whole history (``(step, value)`` pairs, e.g. a loss curve) in batches of MLflow's limit."""
        self._log_all(run_id, curve(name, points))

    def log_text(self, run_id: str, text: str, artifact_path: str) -> None:
        """``text`` as the artifact file ``artifact_path`` (e.g. ``error.txt`` or ``reports/table.md``)."""
        folder, name = os.path.split(artifact_path)
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / name
            local.write_text(text, encoding="utf-8")
            self.log_artifact(run_id, local, folder or None)

    def log_artifact(self, run_id: str, local_path: str | Path, artifact_path: str | None = None) -> None:
        """Upload a file; straight to the run's artifact location when this store created the run."""
        location = self._artifact_uris.get(run_id)
        if location is None or Path(local_path).is_dir():
            self._client.log_artifact(run_id, str(local_path), artifact_path)
            return
        repo = get_artifact_repository(location, tracking_uri=self.uri)
        patience.call_patiently(self.uri, repo.log_artifact, str(local_path), artifact_path)

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[str]:
        """Artifact paths of a run directly under ``path`` (folders included), sorted."""
        return sorted(f.path for f in self._client.list_artifacts(run_id, path))

    def download_artifact(self, run_id: str, path: str, dst_dir: str | Path) -> Path:
        """Copy one artifact of ``run_id`` (e.g. ``predictions.jsonl``) into ``dst_dir``; its local path."""
        return Path(self._client.download_artifacts(run_id, path, str(dst_dir)))

    def finish_trial(self, run_id: str, result: TrialResult, history: Iterable[tuple[int, float]] = ()) -> None:
        """Log the loss curve ``history`` (``train/loss``), the final metrics and the status tag ``finished`` in as
        few batches as MLflow allows (the tag in the last), then terminate FINISHED: until then the run is never
        served as a result, whatever was written before a failure.

        A result whose status is ``failed`` is recorded by :meth:`fail_trial` instead."""
        if result.status == R.STATUS_FAILED:
            self.fail_trial(run_id, result.error or "failed (no error text)")
            return
        metrics = [*curve("train/loss", history), *latest(_final_metrics(result))]
        self._log_all(run_id, metrics, tags={R.TAG_STATUS: R.STATUS_FINISHED})
        self._client.set_terminated(run_id, "FINISHED")

    def stop_trial(self, run_id: str, metrics: dict[str, float], reason: str) -> None:
        """A trial a scheduler stopped early: its last intermediate ``metrics``, status tag ``stopped`` and the
        ``reason`` as error tag; terminated FINISHED so its search's resume finds it (:meth:`find_finished` does
        not: its numbers are partial)."""
        self._log_all(run_id, latest(metrics), tags={R.TAG_STATUS: R.STATUS_STOPPED,
                                                       R.TAG_ERROR: reason[:R.ERROR_TAG_CHARS]})
        self._client.set_terminated(run_id, "FINISHED")

    def fail_trial(self, run_id: str, error: str) -> None:
        """Status tag ``failed``, the error's start as tag, the full text as ``error.txt``; terminate FAILED."""
        self.log_text(run_id, error, R.ARTIFACT_ERROR)
        self._log_all(run_id, tags={R.TAG_STATUS: R.STATUS_FAILED, R.TAG_ERROR: error[:R.ERROR_TAG_CHARS]})
        self._client.set_terminated(run_id, "FAILED")

    def record_cached(self, parent_id: str, experiment_id: str, trial: TrialSpec, source: TrialResult, *,
                      search: str, round: int, role: str, added: str | None, strategy: str, label: str,
                      leftovers: Sequence[str] | None = None) -> str:
        """A FINISHED child run (status ``cached``) that copies ``source``'s final metrics, not its history."""
        extra = {R.TAG_CACHED_FROM: source.run_id} if source.run_id else {}
        run_id = self._create_child(parent_id, experiment_id, trial, status=R.STATUS_CACHED, search=search,
                                    round=round, role=role, added=added, strategy=strategy, label=label,
                                    extra_tags=extra, leftovers=leftovers)
        self._log_all(run_id, latest(_final_metrics(source)))
        self._client.set_terminated(run_id, "FINISHED")
        return run_id

    # ---------------------------------------------------------------- stage runs

    def record_stage(self, trial_run_id: str, experiment_id: str, *, stage: str, index: int, status: str,
                     trial_key: str, expert: str | None = None, artifact_key: str | None = None,
                     params: dict[str, str] | None = None, metrics: dict[str, float] | None = None,
                     losses: list[tuple[int, float]] = ()) -> str:  # type: ignore[assignment]
        """A FINISHED run nested under a trial's run for one of its training stages, with its ``train/loss`` curve.

        ``status`` is ``trained`` (this trial ran it) or ``reused`` (a stage artifact another trial built; the curve
        is the builder's). Per-expert stages get one run per expert (tag ``eaglesearch.stage_expert``)."""
        name = f"{index}. {stage}" + (f" / {expert}" if expert else "")
        tags = {R.TAG_PARENT: trial_run_id, R.TAG_KIND: R.KIND_STAGE, R.TAG_STAGE: stage,
                R.TAG_STAGE_INDEX: str(int(index)), R.TAG_STATUS: status, R.TAG_TRIAL_KEY: trial_key}
        if expert:
            tags[R.TAG_STAGE_EXPERT] = expert
        if artifact_key:
            tags[R.TAG_ARTIFACT_KEY] = artifact_key
        run_id = self._create_run(experiment_id, name, tags)
        self._log_all(run_id, [*curve("train/loss", losses), *latest(metrics or {})], params=params or {})
        self._client.set_terminated(run_id, "FINISHED")
        return run_id

    def stage_runs(self, search: str | None = None, trial_run_id: str | None = None) -> pd.DataFrame:
        """Stage runs (one row each: run_id, stage, index, expert, status, artifact_key, trial_key, parent, then
        their latest metrics), of one search's experiment or all, optionally of one trial run."""
        if search is not None:
            exp = self._client.get_experiment_by_name(search)
            ids = [exp.experiment_id] if exp is not None else []
        else:
            ids = self._experiment_ids()
        filters = {R.TAG_KIND: R.KIND_STAGE, **({R.TAG_PARENT: trial_run_id} if trial_run_id else {})}
        return R.stage_frame(self._search(ids, R.tag_filter(filters)) if ids else [])

    # ---------------------------------------------------------------- the leaderboard in the MLflow UI

    def publish_leaderboard(self, board: UI.Leaderboard) -> None:
        """Show a search run's ranking in the MLflow UI: the experiment's kind, description (the ranked table) and
        saved leaderboard view; the best trial on the parent run; rank-prefixed names and a rank tag on trials."""
        exp_id = self._client.get_run(board.parent_id).info.experiment_id
        self._mark_training(exp_id)
        self._client.set_experiment_tag(exp_id, UI.NOTE_TAG, board.description)
        self._client.set_experiment_tag(exp_id, UI.VIEW_TAG, UI.view_tag_value(board))
        tags = {UI.TAG_BEST_CANDIDATE: board.best_candidate, UI.TAG_BEST_KEY: board.best_key}
        best = {UI.METRIC_BEST: board.best_objective, UI.METRIC_BEST_LOW: board.best_low,
                UI.METRIC_BEST_HIGH: board.best_high}
        self._log_all(board.parent_id, latest(best), tags={k: v for k, v in tags.items() if v is not None})
        for run_id, name in board.run_names.items():
            self._client.update_run(run_id, name=name)
            self._client.set_tag(run_id, UI.TAG_RANK, board.ranks.get(run_id, ""))

    def experiment_tags(self, experiment_id: str) -> dict[str, str]:
        return dict(self._client.get_experiment(experiment_id).tags)

    def leaderboard_experiments(self) -> list[tuple[str, str]]:
        """(name, id) of every active experiment that carries the eaglesearch leaderboard view, by name."""
        found = []
        token = None
        while True:
            page = self._client.search_experiments(view_type=ViewType.ACTIVE_ONLY, max_results=_PAGE,
                                                   page_token=token)
            found.extend((e.name, e.experiment_id) for e in page if UI.VIEW_TAG in e.tags)
            token = page.token
            if not token:
                return sorted(found)

    # ---------------------------------------------------------------- internals

    def _create_child(self, parent_id: str, experiment_id: str, trial: TrialSpec, *, status: str, search: str,
                      round: int, role: str, added: str | None, strategy: str, label: str,
                      extra_tags: dict[str, str] | None = None, leftovers: Sequence[str] | None = None) -> str:
        key = trial.key
        if leftovers is None:
            leftovers = self.running_trials(parent_id, experiment_id, key)
        for run_id in leftovers:  # runs of this key a killed worker left RUNNING under the parent
            self._client.set_terminated(run_id, "KILLED")
        tags = {
            R.TAG_PARENT: parent_id, R.TAG_KIND: R.KIND_TRIAL, R.TAG_KEY: key, R.TAG_SEARCH: search,
            R.TAG_ROUND: str(int(round)), R.TAG_ROLE: role, R.TAG_LABEL: label, R.TAG_STRATEGY: strategy,
            R.TAG_STATUS: status, **(extra_tags or {}),
        }
        if added is not None:
            tags[R.TAG_ADDED] = added
        run_id = self._create_run(experiment_id, label, tags)
        self._log_all(run_id, params=trial.flat_params())
        self.log_text(run_id, trial.model_dump_json(indent=2), R.ARTIFACT_TRIAL_SPEC)
        return run_id

    def _create_run(self, experiment_id: str, name: str, tags: dict[str, str]) -> str:
        """A new run; its artifact location is kept, so uploads to it need no ``get_run`` first."""
        info = self._client.create_run(experiment_id, run_name=name, tags=tags).info
        self._artifact_uris[info.run_id] = info.artifact_uri
        return info.run_id

    def _log_all(self, run_id: str, metrics: Iterable[Metric] = (), params: dict[str, str] | None = None,
                 tags: dict[str, str] | None = None) -> None:
        """Metrics, params and tags in as few ``log_batch`` requests as MLflow allows, the tags in the last."""
        for chunk_metrics, chunk_params, chunk_tags in pack(metrics, as_params(params or {}), as_tags(tags)):
            self._client.log_batch(run_id, metrics=chunk_metrics, params=chunk_params, tags=chunk_tags)

    def _experiment_ids(self) -> list[str]:
        ids: list[str] = []
        token = None
        while True:
            page = self._client.search_experiments(view_type=ViewType.ACTIVE_ONLY, max_results=_PAGE,
                                                   page_token=token)
            ids.extend(e.experiment_id for e in page)
            token = page.token
            if not token:
                return ids

    def _search(self, experiment_ids: list[str], query: str, order_by: list[str] | None = None,
                max_results: int | None = None) -> list[Any]:
        """All runs matching ``query`` (paginated), or the first ``max_results``."""
        out: list[Any] = []
        token = None
        while True:
            want = _PAGE if max_results is None else min(_PAGE, max_results - len(out))
            page = self._client.search_runs(experiment_ids, filter_string=query, run_view_type=ViewType.ACTIVE_ONLY,
                                            max_results=want, order_by=order_by, page_token=token)
            out.extend(page)
            token = page.token
            if not token or (max_results is not None and len(out) >= max_results):
                return out


def _final_metrics(result: TrialResult) -> dict[str, float]:
    metrics = dict(result.metrics)
    if result.objective is not None:
        metrics["objective"] = result.objective
    return metrics
