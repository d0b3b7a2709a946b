"""The trial entry point: serve a trial from the record when its key already finished, else train it and record it.

Idempotent by key, which makes Ray Tune's at-least-once re-execution after a resume harmless: a trial already
recorded under this search's parent run is returned as it is; one finished under any earlier search is copied
as a ``cached`` child run; only the rest are trained. A trial that raises is recorded as a FAILED run with its
traceback and reported as ``failed`` (it is not retried: the same spec would fail the same way). A process
that dies (OOM, signal, its node lost) is retried by Ray Tune's ``FailureConfig``; with a remote artifact root
the retry, on whichever node, resumes from the stage checkpoints mirrored there (``trial/scratch_mirror.py``).
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
import traceback
from pathlib import Path

from eaglesearch.execution.request import TrialRequest
from eaglesearch.spec import TrialResult
from eaglesearch.spec.progress import StageProgressFn
from eaglesearch.tracking import TrackingStore, Winners
from eaglesearch.tracking.records import TrialLookup
from eaglesearch.tracking.winners import WEIGHTS_DATA
from eaglesearch.trial.intermediate import IntermediateSettings, Report
from eaglesearch.trial.outcome import PRETRAIN, StageRecord
from eaglesearch.trial.project import in_project
from eaglesearch.trial.run import ProgressFn, run_trial_core
from eaglesearch.trial.workspace import Workspace

log = logging.getLogger(__name__)

NODE_TAG = "eaglesearch.node"
"""Tag of a trial's run: the id of the Ray node that trained it (``ray.nodes()`` maps it to a machine)."""


def ray_node_id() -> str | None:
    """The Ray node this process runs on, or None outside Ray (inline executor)."""
    if "ray" not in sys.modules:  # the inline executor never imports Ray: do not import it here either
        return None
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None


def lookup(store: TrackingStore, req: TrialRequest, found: TrialLookup | None = None) -> TrialResult | None:
    """A result for ``req`` without training: already under this parent, or finished by any earlier search (one
    query, ``found`` when the caller made it: the trial's only lookup)."""
    found = store.lookup_trial(req.parent_id, req.key) if found is None else found
    if found.in_parent is not None:
        return found.in_parent
    source = found.finished
    if source is None:
        return None
    run_id = store.record_cached(
        req.parent_id, req.experiment_id, req.trial, source, search=req.search, round=req.round, role=req.role,
        added=req.added, strategy=req.strategy, label=req.label, leftovers=found.running,
    )
    return source.model_copy(update={"status": "cached", "run_id": run_id})


def log_stage(store: TrackingStore, trial_run_id: str, req: TrialRequest, record: StageRecord) -> str:
    """One nested MLflow run for a stage of the trial: its settings, loss curve and whether it was reused."""
    if record.stage == PRETRAIN:  # a pretrained component: its source and key, no stage settings of this recipe
        params = {"component": record.trainable_label, "pretrained_key": str(record.artifact_key)}
    else:
        stage = req.trial.train.stage(record.stage)
        params = {k: str(v) for k, v in stage.model_dump(mode="json").items() if k not in ("name", "trainable")}
        params["trainable"] = record.trainable_label
    metrics = {"stage/steps": float(record.steps), "stage/resumed_from_step": float(record.resumed_from),
               "stage/samples": float(record.samples), "stage/wall_s": record.wall_s,
               **{f"trainable/{k}": float(v) for k, v in record.trainable.items()}}
    if record.loss_final is not None:
        metrics["train/loss_final"] = record.loss_final
    return store.record_stage(trial_run_id, req.experiment_id, stage=record.stage, index=record.index,
                              status=record.status, trial_key=req.key, expert=record.expert,
                              artifact_key=record.artifact_key, params=params, metrics=metrics,
                              losses=record.losses)


def execute_trial(req: TrialRequest, progress: ProgressFn | None = None, report: Report | None = None,
                  stage_progress: StageProgressFn | None = None) -> TrialResult:
    """Serve ``req`` from the record, or train, evaluate and record it. With ``report`` and ``req.eval_every``
    (a scheduler watches the trial) intermediate evaluations are handed to ``report`` as training goes; a
    data-parallel trial (``workers > 1``) reports only its final result. ``stage_progress`` is told where training is
    (a data-parallel trial's rank 0 relays it; see ``execution/stage_progress.py``)."""
    store = TrackingStore(req.tracking_uri)
    found = store.lookup_trial(req.parent_id, req.key)
    cached = lookup(store, req, found)
    if cached is not None:
        return cached
    keep = _weights_folder(req) if req.keep_weights else None
    node = ray_node_id()  # where it ran: on a cluster, which machine to look at when it fails
    run_id = store.start_trial(
        req.parent_id, req.experiment_id, req.trial, search=req.search, round=req.round, role=req.role,
        added=req.added, strategy=req.strategy, label=req.label, tags={NODE_TAG: node} if node else None,
        leftovers=found.running,
    )
    try:
        with in_project(req.project_dir, req.trial):  # the trial's relative paths mean the driver's folder
            if req.workers > 1:
                from eaglesearch.execution.multi_worker import run_trial_multi_worker

                outcome = run_trial_multi_worker(req.trial, Workspace.at(req.workdir, req.artifacts), req.threads,
                                                 req.workers, cpus_per_worker=req.cpus_per_worker,
                                                 parallelism=req.parallelism, keep_weights=keep,
                                                 max_failures=req.max_failures, project_dir=req.project_dir,
                                                 stage_progress=stage_progress)
            else:
                watch = (IntermediateSettings(req.eval_every, req.eval_limit, report)
                         if report is not None and req.eval_every else None)
                outcome = run_trial_core(req.trial, Workspace.at(req.workdir, req.artifacts), req.threads, progress,
                                         intermediate=watch, keep_weights=keep, stage_progress=stage_progress)
    except Exception as err:  # noqa: BLE001 - every trial error is recorded, the search goes on
        if keep is not None:
            shutil.rmtree(keep.parent, ignore_errors=True)
        summary = f"{type(err).__name__}: {err}"
        store.fail_trial(run_id, f"{summary}\n\n{traceback.format_exc()}")
        return TrialResult(key=req.key, status="failed", error=summary, run_id=run_id)

    for record in outcome.stages:
        log_stage(store, run_id, req, record)
    with tempfile.TemporaryDirectory() as tmp:
        store.log_artifact(run_id, outcome.write_predictions(Path(tmp)))
    if outcome.weights is not None:  # before the run is FINISHED, so the search's pruning sees them
        _log_weights(store, run_id, outcome.weights)
    elif keep is not None:
        shutil.rmtree(keep.parent, ignore_errors=True)
    result = TrialResult(key=req.key, status="finished", objective=outcome.objective, metrics=outcome.metrics,
                         run_id=run_id)
    store.finish_trial(run_id, result, history=outcome.loss_history)  # the loss curve travels with the result
    return result


def _weights_folder(req: TrialRequest) -> Path:
    """Where the trial writes its final model before it is logged: the workspace's scratch (room for a 7B model,
    unlike /tmp on many machines); deleted once logged."""
    scratch = Workspace.at(req.workdir, req.artifacts).scratch_dir / "weights"
    scratch.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{req.key}-", dir=scratch)) / WEIGHTS_DATA


def _log_weights(store: TrackingStore, run_id: str, folder: Path) -> None:
    """Log the weights with the run; a failure (disk, store) leaves the result valid, the weights not kept."""
    try:
        Winners(store.uri).log_weights(run_id, folder)
    except Exception:  # the trial's numbers stand without its weights
        log.warning("could not log the weights of run %s; the result is recorded without them", run_id,
                    exc_info=True)
        store.log_text(run_id, traceback.format_exc(), "weights_error.txt")
    finally:
        shutil.rmtree(folder.parent, ignore_errors=True)
