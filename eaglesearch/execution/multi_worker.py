"""One trial trained by several data-parallel workers: a Ray Train ``TorchTrainer`` run from inside the trial.

The trial process (a Ray Tune function trial, or any process that can start Ray) calls
:func:`run_trial_multi_worker`. It starts ``k`` Ray Train workers (Train V2 sets up the gloo/nccl process group);
each builds the same data index, tokenizer and seeded model, trains with its ``WorldInfo`` (each rank reads and
decodes only its contiguous rows of every global batch, gradients summed, so the losses equal a 1-worker run's),
every rank evaluates its share of the benchmark items (DDP; FSDP: rank 0 alone), and rank 0 gathers them and
reports the :class:`TrialOutcome` *as a checkpoint*: in Train V2 ``Result.metrics`` is ``None``
unless a checkpoint was reported, and the driver needs the whole outcome (loss history, predictions), not only
flat metrics. Pure computation like :func:`~eaglesearch.trial.run.run_trial_core`: no tracking here.

How many workers, how they hold the model (DDP: a full copy per worker; FSDP: a shard per worker, see
``train/fsdp.py``) and the CPUs each reserves: ``worker_group.py``. Costs: Ray Train adds ~30 s of start-up per trial on CPU.
"""

from __future__ import annotations

import pickle
import shutil
import tempfile
import threading
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from eaglesearch.execution.stage_progress import Relay
from eaglesearch.execution.worker_group import Parallelism
from eaglesearch.spec import TrialSpec
from eaglesearch.spec.progress import StageProgressFn
from eaglesearch.trial.outcome import TrialOutcome
from eaglesearch.trial.project import in_project
from eaglesearch.trial.run import run_trial_rank
from eaglesearch.trial.workspace import Workspace, is_remote_url

OUTCOME_FILE = "outcome.pkl"
WEIGHTS_FOLDER = "weights"  # rank 0's final model (model/saved.py) travels back inside the reported checkpoint


def _train_loop_per_worker(config: dict[str, Any]) -> None:
    """What each Ray Train worker runs (module-level, so Ray pickles it by reference)."""
    import ray.train

    import eaglesearch  # noqa: F401  (sets OMP_WAIT_POLICY in this fresh process)

    context = ray.train.get_context()
    from ray.train.torch import get_device  # this worker's GPU (or the CPU)

    trial = TrialSpec.model_validate(config["trial"])
    with tempfile.TemporaryDirectory() as tmp, in_project(config.get("project_dir"), trial):
        keep = Path(tmp) / WEIGHTS_FOLDER if config.get("keep_weights") else None
        outcome = run_trial_rank(trial, Workspace.at(config["workdir"], config["artifacts"]), int(config["threads"]),
                                 context.get_world_rank(), context.get_world_size(),
                                 progress=(lambda msg: print(f"[{trial.label}] {msg}", flush=True)),
                                 parallelism=config.get("parallelism", "ddp"), device=get_device(), keep_weights=keep,
                                 stage_progress=config.get("stage_progress") if context.get_world_rank() == 0 else None)
        # ray.train.report is a barrier: every rank calls it once; only rank 0's metrics and checkpoint count.
        if outcome is None:
            ray.train.report({}, checkpoint=None)
            return
        outcome.weights = None  # the driver finds the folder inside the checkpoint, not at this worker's path
        with open(Path(tmp) / OUTCOME_FILE, "wb") as fh:
            pickle.dump(outcome, fh)
        ray.train.report({"objective": outcome.objective, **outcome.metrics},
                         checkpoint=ray.train.Checkpoint.from_directory(tmp))


def train_storage(workspace: Workspace) -> dict[str, Any]:
    """Where Ray Train keeps the run (and the outcome rank 0 reports as a checkpoint, which this process reads):
    the scratch folder on one machine; with a remote artifact root ``<root>/ray_train`` in that store, because
    rank 0 may run on another node. pyarrow cannot take s3fs's endpoint settings from a URL, so the fsspec
    filesystem is handed over as it is (the path then without its scheme)."""
    if not is_remote_url(workspace.artifacts):
        return {"storage_path": str(workspace.scratch_dir / "ray_train")}
    import fsspec
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    fs, root = fsspec.core.url_to_fs(workspace.artifacts)
    return {"storage_path": f"{root.rstrip('/')}/ray_train", "storage_filesystem": PyFileSystem(FSSpecHandler(fs))}


def _run_name(trial: TrialSpec) -> str:
    """``train-trial_id=<tune trial id>`` inside a Tune trial (no timestamp: driver restores need a stable name)."""
    try:
        from ray import tune

        trial_id = tune.get_context().get_trial_id()
    except Exception:  # noqa: BLE001 - not inside a Tune trial
        trial_id = None
    return f"train-trial_id={trial_id or trial.key}"


def _fit(trainer: Any) -> Any:
    """``trainer.fit()`` off the main thread. On the main thread Ray Train installs its own SIGINT handler and never
    puts the previous one back: Ctrl-C during the fit would only abort training, and any Ctrl-C after it would call
    ``abort`` on a finished controller and exit 0. From a helper thread it installs none, so Ctrl-C stays the
    search's: the join below raises ``KeyboardInterrupt`` (exit 130, runs KILLED). Inside a Tune trial the fit is
    already off the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return trainer.fit()
    box: dict[str, Any] = {}

    def fit() -> None:
        try:
            box["result"] = trainer.fit()
        except BaseException as err:  # noqa: BLE001 - re-raised on the caller's thread
            box["error"] = err

    thread = threading.Thread(target=fit, name="ray-train-fit", daemon=True)
    thread.start()
    thread.join()  # interruptible: a Ctrl-C raises KeyboardInterrupt here
    if "error" in box:
        raise box["error"]
    return box["result"]


def run_trial_multi_worker(trial: TrialSpec, workspace: Workspace, threads: int, workers: int,
                           use_gpu: bool | None = None, cpus_per_worker: float = 1.0,
                           name: str | None = None, parallelism: Parallelism = "ddp",
                           keep_weights: Path | None = None, max_failures: int = 0,
                           project_dir: str | None = None,
                           stage_progress: StageProgressFn | None = None) -> TrialOutcome:
    """Train ``trial`` on ``workers`` data-parallel Ray Train workers (``parallelism``: each holding the whole model
    or a shard of it) and return rank 0's outcome; with ``keep_weights``, rank 0's final model is copied there.

    Needs a running Ray (inside a Tune trial it is; elsewhere call ``ray.init`` first). ``use_gpu`` defaults to
    whether CUDA is visible here; each worker then takes one GPU (nccl), otherwise ``cpus_per_worker`` CPUs (gloo).
    A worker group that loses a rank (its process or node died) is restarted up to ``max_failures`` times; the
    ranks resume from the stage checkpoints (mirrored into a remote artifact store, see
    ``trial/scratch_mirror.py``). Each rank runs in ``project_dir`` (the driver's folder, which the trial's
    relative paths mean; ``trial/project.py``); rank 0 tells ``stage_progress`` where training is, through a
    :class:`~eaglesearch.execution.stage_progress.Relay`. Raises the workers' error if training failed.
    """
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    use_gpu = torch.cuda.is_available() if use_gpu is None else use_gpu
    resources = {"GPU": 1.0, "CPU": cpus_per_worker} if use_gpu else {"CPU": cpus_per_worker}
    with Relay(stage_progress) if stage_progress is not None else nullcontext() as relay:
        trainer = TorchTrainer(
            _train_loop_per_worker,
            train_loop_config={"trial": trial.model_dump(mode="json"), "workdir": str(workspace.root),
                               "artifacts": workspace.artifacts, "threads": max(1, threads // workers),
                               "parallelism": parallelism,
                               "keep_weights": keep_weights is not None, "project_dir": project_dir,
                               "stage_progress": relay.sender() if relay is not None else None},
            scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu, resources_per_worker=resources),
            run_config=RunConfig(name=name or _run_name(trial),
                                 failure_config=FailureConfig(max_failures=max_failures), **train_storage(workspace)),
        )
        result = _fit(trainer)
    if result.error is not None:
        raise result.error
    if result.checkpoint is None:
        raise RuntimeError("the Ray Train workers finished without reporting the trial outcome")
    with result.checkpoint.as_directory() as folder:
        with open(Path(folder) / OUTCOME_FILE, "rb") as fh:
            outcome: TrialOutcome = pickle.load(fh)
        if keep_weights is not None and (Path(folder) / WEIGHTS_FOLDER).is_dir():
            shutil.copytree(Path(folder) / WEIGHTS_FOLDER, keep_weights)
            outcome.weights = Path(keep_weights)
    return outcome
