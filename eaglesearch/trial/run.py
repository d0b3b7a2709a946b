"""Train and evaluate one Eagle model for a TrialSpec: data → tokenizer → stages → benchmarks (data and tokenizer:
``trial/data.py``).

Pure computation: no tracking, no Ray. The worker (``execution/worker.py``) wraps it with MLflow records.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Literal

import torch

from eaglesearch.artifacts import ArtifactStore
from eaglesearch.data import collate_train
from eaglesearch.data.loader import num_workers_for
from eaglesearch.evaluate.prior import prior_records
from eaglesearch.evaluate.run import evaluate_benchmarks
from eaglesearch.evaluate.summary import summarize, summary_metrics
from eaglesearch.model import EagleModel
from eaglesearch.model.cost import measure_cost
from eaglesearch.model.experts.discovery import register_trial_experts
from eaglesearch.model.saved import save_model_folder
from eaglesearch.spec import TrialSpec
from eaglesearch.spec.progress import StageProgressFn
from eaglesearch.train.distributed import WorldInfo, broadcast_parameters, prepare_model, training_device
from eaglesearch.train.fsdp import shard_model
from eaglesearch.train.pretrained import PretrainedComponents
from eaglesearch.train.stages import FEATURES, StagePipeline, StageRecord
from eaglesearch.trial.aspect import image_policy, picture_counts
from eaglesearch.trial.data import ProgressFn, StageDatasets, prepare_data, prepare_tokenizer
from eaglesearch.trial.intermediate import IntermediateEval, IntermediateSettings, subset
from eaglesearch.trial.outcome import TrialOutcome
from eaglesearch.trial.threads import pin_threads
from eaglesearch.trial.workspace import PER_TRIAL, Workspace


def stage_metrics(records: list[StageRecord]) -> dict[str, float]:
    """Trial-level numbers from the stage records: the final stage's loss figures and a line per stage."""
    final = records[-1]
    trained = [r for r in records if r.status == "trained"]
    out: dict[str, float] = {
        "train/loss_first": final.losses[0][1] if final.losses else float("nan"),
        "train/loss_final": final.loss_final if final.loss_final is not None else float("nan"),
        "train/samples_per_s": final.samples / final.wall_s if final.wall_s > 0 else 0.0,
        "train/wall_s": sum(r.wall_s for r in trained),
        "train/resumed_from_step": float(final.resumed_from),
        # Optimizer steps this trial ran itself (restored ones excluded): the compute a multi-fidelity search saves.
        "train/steps_trained": float(sum(r.steps - r.resumed_from for r in trained)),
        "stages/trained": float(len(trained)),
        "stages/reused": float(len(records) - len(trained)),
    }
    for r in records:
        out[f"stage/{r.name}/loss_final"] = r.loss_final if r.loss_final is not None else float("nan")
        out[f"stage/{r.name}/steps"] = float(r.steps)
        if r.status == "trained":
            out[f"stage/{r.name}/wall_s"] = r.wall_s
    return out


def run_trial_core(
    trial: TrialSpec, workspace: Workspace, threads: int, progress: ProgressFn | None = None,
    world: WorldInfo | None = None, parallelism: Literal["ddp", "fsdp"] = "ddp", device: torch.device | None = None,
    intermediate: IntermediateSettings | None = None, keep_weights: Path | None = None,
    stage_progress: StageProgressFn | None = None,
) -> TrialOutcome | None:
    """Build, train (every stage, see :mod:`eaglesearch.train.stages`) and evaluate the model ``trial`` describes.
    Deterministic for a fixed seed and thread count.

    With ``world`` (one rank of a data-parallel trial, see ``execution/multi_worker.py``) every rank trains its
    shard of each global batch on its device and (DDP) evaluates its share of the benchmark items; rank 0 gathers
    them and returns the outcome, the others return None.
    ``parallelism`` says how the ranks hold the model: ``ddp`` a full copy each (gradients all-reduced), ``fsdp``
    a shard each (:mod:`eaglesearch.train.fsdp`; rank 0 evaluates an unsharded copy). ``device`` defaults to
    :func:`~eaglesearch.train.distributed.training_device`.

    With ``intermediate`` (a scheduler such as ASHA watches the trial) the final stage is evaluated on a subset
    every ``intermediate.every`` steps and reported (``trial/intermediate.py``); the result is unchanged.

    With ``keep_weights`` a full-budget trial writes its final model into that folder (``model/saved.py``: every
    weight, the spec, the tokenizer), for the search to keep if it ranks among its best; a rung (``budget``) does not,
    its weights are not a result.

    ``stage_progress`` is told where training is (:class:`~eaglesearch.spec.progress.StageProgress`) at every
    logged step of every stage, on rank 0 only: the search's progress display.
    """
    say = progress or (lambda _msg: None)
    main = world is None or world.is_main
    if not main:
        say = lambda _msg: None
    started = time.perf_counter()
    pin_threads(threads)
    register_trial_experts(trial.model.experts)  # a fresh Ray worker process knows only the built-in families
    if world is not None:
        for stage in trial.train.active:
            if stage.batch_size % world.world_size:
                raise ValueError(f"stage '{stage.name}': batch_size={stage.batch_size} does not divide by "
                                 f"{world.world_size} workers; use a multiple of the worker count")

    say("preparing data")
    data = prepare_data(trial.data, workspace, captions=any(s.data == "caption" for s in trial.train.active))
    private = workspace.scratch_dir / "trials" / trial.key / "private" if workspace.artifacts == PER_TRIAL else None
    store = ArtifactStore(private / "artifacts" if private else workspace.artifacts)
    mirror = workspace.scratch_mirror()  # remote artifact root: checkpoints there too, for a retry on another node
    if mirror is not None and private is None and main:
        mirror.claim(workspace.trial_scratch(trial.full_key))  # a later search may run a once-released candidate
        for gone in mirror.sweep(workspace.trial_scratch(trial.full_key).parent):  # this node's released rungs
            say(f"deleted released checkpoints {gone.name[:12]} (a discontinued candidate's)")
    pretrained = PretrainedComponents(store, say)
    tokenizer = prepare_tokenizer(trial, data, workspace, pretrained)
    datasets = StageDatasets(trial, data, tokenizer, say)
    device = device or training_device()
    sharded = parallelism == "fsdp" and world is not None and world.world_size > 1

    def place(model: EagleModel) -> EagleModel:
        if sharded:  # identical on every rank, then sharded (its own mixed precision and checkpointing on GPU)
            broadcast_parameters(model)
            return shard_model(model)  # type: ignore[return-value]
        model = prepare_model(model)  # gradient checkpointing on GPU; nothing on CPU
        if world is not None:
            broadcast_parameters(model)
        return model

    watch = None
    if intermediate is not None and main:
        watch = IntermediateEval(trial, tokenizer, subset(data.benchmarks, intermediate.limit), intermediate.every,
                                 intermediate.report)
    say(f"building {trial.label} ({trial.train.label})")
    # No reuse ("per-trial"): a private store and scratch inside the trial's folder, deleted when it finishes.
    pipeline = StagePipeline(trial, tokenizer, datasets, lambda b: collate_train(b, tokenizer.pad_token_id),
                             store=store, scratch=private or workspace.scratch_dir, world=world,
                             device=device, say=say, on_model=place, pretrained=pretrained, on_final_step=watch,
                             mirror=mirror, on_progress=stage_progress if main else None)
    result = pipeline.run()
    # Every rank holding the whole model (DDP) evaluates its share of each benchmark; under FSDP only rank 0 has it.
    eval_shard = (world.rank, world.world_size) if world is not None and world.world_size > 1 and not sharded \
        else None
    if not main and eval_shard is None:
        return None
    model = result.model

    say("evaluating")
    if main:
        sft = datasets(trial.train.joint_stages[-1], model.num_visual_tokens)
        first = {k: v.to(device) for k, v in collate_train([sft[0]], tokenizer.pad_token_id).items()}
        images = picture_counts(trial, data.train)
        cost = measure_cost(model, first["images"], first, images_per_sample=images.mean if images else 1.0)
    records, eval_s = evaluate_benchmarks(model, tokenizer, data.benchmarks, image_size=trial.data.image_size,
                                          batch_size=trial.eval.batch_size, max_new_tokens=trial.eval.max_new_tokens,
                                          template=trial.data.template, policy=image_policy(trial), shard=eval_shard,
                                          num_workers=num_workers_for(trial.data.num_workers, threads,
                                                                      device.type == "cuda"))
    if not main:
        return None
    summary = summarize(records, trial.eval, seed=trial.seed)
    if private is None:  # later trials with the same frozen experts start from these maps
        model.save_expert_features(workspace.scratch_dir / FEATURES)

    metrics: dict[str, float] = summary_metrics(summary)
    baseline = prior_records(data.train, data.benchmarks)
    if baseline:  # the answer-prior row of the reports: what always answering the commonest answer scores
        metrics.update({f"prior/{k}": v for k, v in summary_metrics(summarize(baseline, trial.eval,
                                                                              seed=trial.seed)).items()})
    metrics.update({
        **stage_metrics(result.stages),
        "train/workers": float(world.world_size if world is not None else 1),
        "train/fsdp": float(sharded),
        "eval/wall_s": eval_s,
        **cost.as_metrics(),
        **datasets.metrics(),
    })
    metrics["cost/wall_s"] = time.perf_counter() - started
    weights = None
    if keep_weights is not None and trial.budget is None:
        weights = save_model_folder(model, tokenizer, trial, Path(keep_weights))
    shutil.rmtree(workspace.scratch_dir / "trials" / trial.key, ignore_errors=True)  # kept only for retries
    if mirror is not None:
        mirror.close(workspace.scratch_dir / "trials" / trial.key)
    return TrialOutcome(objective=summary.objective, metrics=metrics, loss_history=result.stages[-1].losses,
                        predictions=records, stages=result.stages, weights=weights)


def run_trial_rank(trial: TrialSpec, workspace: Workspace, threads: int, rank: int, world_size: int, *,
                   parallelism: Literal["ddp", "fsdp"] = "ddp", device: torch.device | None = None,
                   progress: ProgressFn | None = None, keep_weights: Path | None = None,
                   stage_progress: StageProgressFn | None = None) -> TrialOutcome | None:
    """One rank of a data-parallel trial whose process group is already up (a Ray Train worker): rank 0 returns the
    outcome (and tells ``stage_progress`` where training is), the others None (see :func:`run_trial_core`)."""
    return run_trial_core(trial, workspace, threads, progress, world=WorldInfo(rank, world_size),
                          parallelism=parallelism, device=device, keep_weights=keep_weights,
                          stage_progress=stage_progress)
