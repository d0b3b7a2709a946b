"""The stage pipeline: run a trial's training stages in order, reusing stage artifacts other trials already built.

A trial's ``train.stages`` (see :mod:`eaglesearch.spec.train`) split in two groups:

1. **Per-expert stages** (Eagle's pre-alignment, ``per_expert: true``). For each expert of the trial, a one-expert
   model (that expert, a projector of its own, the trial's LM) trains on the stage's data. The trained expert is a
   *stage artifact*, content-addressed by everything it depends on (:func:`per_expert_payload`) and kept in an
   :class:`~eaglesearch.artifacts.ArtifactStore`: a later trial, round or search that needs the same
   pre-aligned expert loads it instead of training it, and concurrent trials train it once (a claim in the store).
   Chained per-expert stages key each artifact on the previous one's key.
2. **Joint stages** (``per_expert: false``): the full model, its experts loaded from their artifacts, trains stage
   after stage, each with its own trainable parts, data, optimizer and length.

Every part of a model is initialised from its own seed (``build_eagle(..., seed=)``), so the LM a per-expert stage
aligns to is the very LM of the full model, and an expert's initial weights do not depend on its neighbours.

Resumability: a stage checkpoints into ``scratch`` (``<scratch>/stages/<artifact key>`` for a per-expert stage,
shared by every trial that may build it; ``<scratch>/trials/<trial key>/<stage>`` for a joint stage). A joint stage
that finished writes ``done.pt`` (the weights it trained, and the RNG state), so a trial killed in stage 3 restores
stages 1-2 from their results and resumes stage 3 from its last checkpoint: the final weights equal an
uninterrupted run's.

Sharded models (FSDP, :mod:`eaglesearch.train.fsdp`): every rank joins the gathering of a stage's full state,
rank 0 writes the artifact or ``done.pt`` from it, and after the last stage rank 0 gets an unsharded copy of the
model (built afresh, the gathered state loaded) for evaluation.

Multi-fidelity rungs (``trial.budget``, see ``eaglesearch/search/halving.py``): a rung trains its final joint stage
only to ``trial.stop_step(steps)`` and keeps that stage's ``last.pt`` (no ``done.pt``). Joint stages checkpoint
under the *full* trial's key (``trial.full_key``), so every rung of a candidate and its full trial share one
folder: a higher rung, or the full trial, resumes from the previous rung's checkpoint.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from eaglesearch.artifacts import ArtifactStore, WaitState, artifact_key
from eaglesearch.data.loader import stream_settings
from eaglesearch.model import EagleModel, build_eagle
from eaglesearch.model.build import part_seed
from eaglesearch.model.language import load_dtype
from eaglesearch.spec import ExpertSpec, ModelSpec, TrialSpec
from eaglesearch.spec.progress import StageProgress, StageProgressFn
from eaglesearch.spec.train import STAGE_NON_SEMANTIC, StageSpec, semantic_stage
from eaglesearch.train import distributed, fsdp
from eaglesearch.train.checkpoint import gathered_trained_state, rng_state, save_atomic, set_rng_state
from eaglesearch.train.checkpoint_writer import remove_checkpoints
from eaglesearch.train.loop import batches, train
from eaglesearch.train.mirror import CheckpointMirror, mirrored
from eaglesearch.train.pretrained import PretrainedComponents
from eaglesearch.train.stage_record import StageRecord
from eaglesearch.train.trainable import apply_trainable, widen_trainable

STAGE_VERSION = "stages-1"
"""Part of every stage-artifact key: bump it when a code change alters what a stage computes."""

PREALIGNED = "prealigned_expert"
"""Artifact kind of a per-expert stage's result."""
PRETRAIN = "pretrain"
"""Stage name of the records of pretrained components (index 0: before every stage of the recipe)."""

EXPERT_FILE, PROJECTOR_FILE, RECORD_FILE, DONE_FILE = "expert.pt", "projector.pt", "stage.json", "done.pt"

DatasetFor = Callable[[StageSpec, int], Dataset]
"""``(stage, visual tokens per image) -> training dataset`` of that stage (the caller reads and caches the data)."""
Collate = Callable[[list[dict[str, torch.Tensor]]], dict[str, torch.Tensor]]
Say = Callable[[str], None]


@dataclass
class PipelineResult:
    model: EagleModel
    stages: list[StageRecord]


def stage_seed(seed: int, stage: StageSpec) -> int:
    """The data-order seed of a stage: independent of the stage's position and of the other stages."""
    return part_seed(seed, f"data/{stage.name}") % (2**31)


def stage_fields(stage: StageSpec) -> dict[str, Any]:
    """The stage settings a result depends on (no name, switch or logging cadence)."""
    return semantic_stage(stage, exclude={"name", "enabled", *STAGE_NON_SEMANTIC})


def prealign_model(spec: ModelSpec, expert: ExpertSpec) -> ModelSpec:
    """The one-expert model a per-expert stage trains: the expert, channel concatenation (a projector of its own)
    and the trial's LM and tokenizer. No fusion norm: pre-alignment shapes one expert's raw features for the LM, the
    norm is the mixture's concern (and :func:`per_expert_payload` leaves ``fusion_norm`` out of the artifact key)."""
    return spec.model_copy(update={"experts": (expert,), "fusion": "channel_concat", "fusion_norm": "none",
                                   "freeze_projector": False})


def per_expert_payload(trial: TrialSpec, expert: ExpertSpec, stage: StageSpec, previous: str | None) -> dict[str, Any]:
    """Everything a pre-aligned expert depends on; its :func:`~eaglesearch.artifacts.artifact_key` names it.

    Freeze flags the stage overrides are left out (a stage that trains the whole expert gives the same result for a
    frozen or a trainable expert spec), so the freeze ablations of a search share one artifact. The evaluation
    benchmarks are left out too.
    """
    trainable = stage.trainable
    expert_dump = expert.model_dump(mode="json")
    if trainable.expert_setting(expert.name) != "spec":
        expert_dump.pop("freeze"), expert_dump.pop("trainable_blocks")
    lm_dump = trial.model.lm.model_dump(mode="json")
    if trainable.lm != "spec":
        lm_dump.pop("freeze")
    return {
        "version": STAGE_VERSION,
        "kind": PREALIGNED,
        "expert": expert_dump,
        "model": {"grid": trial.model.grid, "projector": trial.model.projector, "lm": lm_dump,
                  "tokenizer": trial.model.tokenizer.model_dump(mode="json")},
        "data": trial.data.model_dump(mode="json", exclude={"eval"}),
        "stage": stage_fields(stage),
        "seed": trial.seed,
        "after": previous,
    }


class StagePipeline:
    """Runs one trial's stages; see the module docstring."""

    def __init__(self, trial: TrialSpec, tokenizer: Any, dataset_for: DatasetFor, collate: Collate, *,
                 store: ArtifactStore, scratch: Path, world: distributed.WorldInfo | None = None,
                 device: torch.device | None = None, say: Say | None = None,
                 on_model: Callable[[EagleModel], EagleModel] | None = None,
                 pretrained: PretrainedComponents | None = None,
                 on_final_step: Callable[[EagleModel, int, int], None] | None = None,
                 mirror: CheckpointMirror | None = None, on_progress: StageProgressFn | None = None) -> None:
        self.trial, self.tokenizer, self.dataset_for, self.collate = trial, tokenizer, dataset_for, collate
        self.pretrained = pretrained or PretrainedComponents(store, say)
        self.store, self.scratch, self.world = store, Path(scratch), world
        self.device = device or torch.device("cpu")
        self.dtype = load_dtype(self.device)  # weights are read in it; what trains is widened on the device
        self.say: Say = say or (lambda _msg: None)
        self.on_model = on_model or (lambda model: model)
        self.on_final_step, self.mirror = on_final_step, mirror  # intermediate evaluations; checkpoints shared
        self.on_progress = on_progress  # structured stage progress for the search's display (main rank only)
        self.main = world is None or world.is_main
        self.records: list[StageRecord] = []
        stages = trial.train.active
        self.index = {s.name: i + 1 for i, s in enumerate(stages)}
        self.count = len(stages)

    # ----------------------------------------------------------------------------------------- the run

    def run(self) -> PipelineResult:
        experts: dict[str, dict[str, torch.Tensor]] = {}
        for expert in self.trial.model.experts:
            state = self._per_expert(expert)
            if state is not None:
                experts[expert.name] = state
        model = build_eagle(self.trial.model, self.tokenizer, seed=self.trial.seed, dtype=self.dtype)
        self.pretrained.load_into(model, self.trial.model)
        for name, state in experts.items():
            model.experts[name].load_state_dict(state)
        model = self.on_model(widen_trainable(model.to(self.device), self.trial.train.joint_stages, self.trial.model))
        if not fsdp.is_sharded(model):  # a sharded expert's maps need every rank; nothing to cache per rank
            _unwrap(model).cache_expert_features(self.trial.train.feature_cache_mb, self.scratch / FEATURES)
        for stage in self.trial.train.joint_stages:
            self._joint(model, stage)
        if fsdp.is_sharded(model):
            model = self._unsharded(model)
        return PipelineResult(model=model, stages=self._component_records() + self.records)

    def _component_records(self) -> list[StageRecord]:
        """The pretrained components this trial used, as stage records of a ``pretrain`` stage (index 0): trained
        here, or reused (shipped with the package or found in the artifact store)."""
        return [StageRecord(stage=PRETRAIN, index=0, data="world", status="trained" if c.source == "trained"
                            else "reused", steps=c.steps, expert=c.name, artifact_key=c.key, losses=c.losses,
                            loss_final=c.losses[-1][1] if c.losses else None, wall_s=c.wall_s,
                            trainable_label=f"{c.kind} ({c.source})")
                for c in self.pretrained.records.values()]

    def _unsharded(self, model: EagleModel) -> EagleModel:
        """Rank 0: a plain copy of the sharded ``model`` on this device (other ranks: ``model`` itself)."""
        state = fsdp.full_state(model)  # collective
        if not self.main:
            return model
        del model
        plain = build_eagle(self.trial.model, self.tokenizer, seed=self.trial.seed, dtype=self.dtype)
        plain.load_state_dict(state)
        return plain.to(self.device)

    # ---------------------------------------------------------------------------------- per-expert stages

    def _per_expert(self, expert: ExpertSpec) -> dict[str, torch.Tensor] | None:
        """Obtain the expert's per-expert stages in order; its final weights (None without such stages)."""
        previous: str | None = None
        folder: Path | None = None
        for stage in self.trial.train.per_expert_stages:
            payload = per_expert_payload(self.trial, expert, stage, previous)
            key = artifact_key(payload)
            built: list[StageRecord] = []

            def build(out: Path | None, stage: StageSpec = stage, key: str = key, after: Path | None = folder,
                      built: list[StageRecord] = built) -> None:
                built.append(self._train_expert(expert, stage, key, after, out))

            folder = self._obtain(key, payload, build, f"{stage.name}/{expert.name}")
            if built:
                self.records.append(built[0])
            else:
                record = StageRecord.from_json(json.loads((folder / RECORD_FILE).read_text())["record"])
                # The builder's curve and counts; this trial's stage name and position (names are not in the key).
                # A retried trial finding the artifact its own first attempt built still counts as its builder.
                record.status = "trained" if record.built_by == self.trial.key else "reused"
                record.resumed_from = record.resumed_from if record.status == "trained" else 0
                record.stage, record.index = stage.name, self.index[stage.name]
                self.records.append(record)
                self.say(f"stage {self.index[stage.name]}/{self.count} {stage.name}/{expert.name}: "
                         f"reused artifact {key}")
            previous = key
        if folder is None:
            return None
        return torch.load(folder / EXPERT_FILE, map_location="cpu", weights_only=True)

    def _obtain(self, key: str, payload: dict[str, Any], build: Callable[[Path | None], None], what: str) -> Path:
        """The artifact's folder, built here when nobody has; every rank of a data-parallel trial joins the build."""

        def waiting(state: WaitState) -> None:
            holder = state.holder.describe() if state.holder else "another process"
            self.say(f"{what}: waiting {state.waited_s:.0f}s for {holder} to finish building artifact {key}")

        world = self.world
        if world is None or world.world_size == 1:
            return self.store.obtain(PREALIGNED, key, payload, build, on_wait=waiting)
        import torch.distributed as dist

        if world.is_main:
            def build_with_all(out: Path | None) -> None:
                dist.broadcast_object_list(["build"], src=0)
                build(out)

            folder = self.store.obtain(PREALIGNED, key, payload, build_with_all, on_wait=waiting)
            dist.broadcast_object_list(["done"], src=0)
            return folder
        while True:
            message: list[Any] = [None]
            dist.broadcast_object_list(message, src=0)
            if message[0] != "build":
                break
            build(None)  # train alongside rank 0; only rank 0 writes the artifact
        found = self.store.get(PREALIGNED, key)
        if found is None:
            raise RuntimeError(f"artifact {PREALIGNED}/{key} is not readable from this worker at {self.store.url}; "
                               "data-parallel workers on several machines need a shared artifact root")
        return found

    def _train_expert(self, expert: ExpertSpec, stage: StageSpec, key: str, after: Path | None,
                      out: Path | None) -> StageRecord:
        spec = prealign_model(self.trial.model, expert)
        model = build_eagle(spec, self.tokenizer, seed=self.trial.seed, dtype=self.dtype)
        self.pretrained.load_into(model, spec)
        if after is not None:  # chained per-expert stages continue from the previous one's result
            model.experts[expert.name].load_state_dict(
                torch.load(after / EXPERT_FILE, map_location="cpu", weights_only=True))
            model.projector.load_state_dict(torch.load(after / PROJECTOR_FILE, map_location="cpu",
                                                       weights_only=True))
        model = self.on_model(widen_trainable(model.to(self.device), [stage], spec))
        record = self._train(model, spec, stage, self.scratch / "stages" / f"{PREALIGNED}-{key}",
                                     expert=expert.name, key=key)
        state = fsdp.full_state(model) if fsdp.is_sharded(model) else _unwrap(model).state_dict()  # collective
        if out is not None:
            torch.save(_part(state, f"experts.{expert.name}."), out / EXPERT_FILE)
            torch.save(_part(state, "projector."), out / PROJECTOR_FILE)
            (out / RECORD_FILE).write_text(json.dumps({"record": record.to_json(), "stage": stage_fields(stage)},
                                                      indent=1) + "\n")
        if self.main:
            shutil.rmtree(self.scratch / "stages" / f"{PREALIGNED}-{key}", ignore_errors=True)
        return record

    # -------------------------------------------------------------------------------------- joint stages

    def _joint(self, model: EagleModel, stage: StageSpec) -> None:
        folder = self.scratch / "trials" / self.trial.full_key / stage.name
        done = folder / DONE_FILE
        rung = self.trial.budget is not None and stage.name == self.trial.train.joint_stages[-1].name
        if rung and done.is_file():
            raise RuntimeError(f"stage '{stage.name}' of this rung (budget {self.trial.budget}) already finished "
                               f"at the full budget in {folder}; a rung cannot be evaluated from it. Delete the "
                               "folder to train the rung again")
        if done.is_file():  # finished before this process started: restore its result, skip the work
            saved = torch.load(done, map_location="cpu", weights_only=True)
            if fsdp.is_sharded(model):
                fsdp.load_full_state(model, saved["model"])
            else:
                _unwrap(model).load_state_dict(saved["model"], strict=False)
            set_rng_state(saved["rng"])
            record = StageRecord.from_json(json.loads(saved["record"]))
            if record.built_by not in (None, self.trial.key):  # trained by a rung of this trial, not by this trial
                record.status = "reused"
            self.records.append(record)
            self.say(f"stage {self.index[stage.name]}/{self.count} {stage.name}: restored (finished earlier)")
            return
        record = self._train(model, self.trial.model, stage, folder, expert=None, key=None, rung=rung)
        if rung:  # keep last.pt at the stop step: the next rung or the full trial continues from it
            self.records.append(record)
            return
        if self.trial.budget is not None:  # an earlier stage of a rung: its continuation reuses it
            record.built_by = self.trial.key
        trained = gathered_trained_state(_unwrap(model))  # collective for a sharded model
        if self.main:
            save_atomic(done, {"model": _cpu(trained), "rng": rng_state(),
                                "record": json.dumps(record.to_json())})
            remove_checkpoints(folder)
        if self.world is not None and self.world.world_size > 1:
            import torch.distributed as dist

            dist.barrier()
        self.records.append(record)

    # ---------------------------------------------------------------------------------------- one stage

    def _train(self, model: EagleModel, spec: ModelSpec, stage: StageSpec, checkpoints: Path, *,
               expert: str | None, key: str | None, rung: bool = False) -> StageRecord:
        inner = _unwrap(model)
        counts = apply_trainable(inner, stage.trainable, spec)
        dataset = self.dataset_for(stage, inner.num_visual_tokens)
        steps = stage.total_steps(len(dataset))  # type: ignore[arg-type]
        if self.world is not None and stage.batch_size % self.world.world_size:
            raise ValueError(f"stage '{stage.name}': batch_size {stage.batch_size} does not divide by "
                             f"{self.world.world_size} workers; use a multiple of the worker count")
        stream = batches(dataset, stage.batch_size, self.collate, stage_seed(self.trial.seed, stage),
                         **stream_settings(self.trial.data.num_workers, self.world, self.device))
        label = f"{stage.name}/{expert}" if expert else stage.name
        position = f"stage {self.index[stage.name]}/{self.count} {label}"
        stop = self.trial.stop_step(steps) if rung else None
        hook = self.on_final_step
        final = expert is None and stage.name == self.trial.train.joint_stages[-1].name
        on_step = mirrored(self.mirror, checkpoints, (lambda done: hook(model, done, steps)) if hook is not None
                           and final else None, self.say, position)  # a retry on another node resumes
        self.say(f"{position}: {steps} steps on {stage.data} data, trains {stage.trainable.label} "
                 f"({counts.get('total', 0):,} parameters)" + (f"; rung: stops at step {stop}" if stop else ""))
        logged: list[tuple[int, float]] = []
        first: list[tuple[int, float]] = []  # (step, time) of the first step logged in this process: the pace

        def on_log(step: int, loss: float) -> None:
            logged.append((step, loss))
            self.say(f"{position} step {step + 1}/{steps} loss {loss:.4f}")
            if self.on_progress is None or not self.main:
                return
            now = time.monotonic()
            first[:] = first or [(step, now)]
            done, (step0, t0) = step + 1, first[0]
            eta = (now - t0) / (step - step0) * (steps - done) if step > step0 else None
            self.on_progress(StageProgress(label=label, index=self.index[stage.name], count=self.count, step=done,
                                           steps=steps, loss=loss, eta_s=eta))

        stats = train(model, stream, stage.with_steps(steps), on_log=on_log, checkpoint_dir=checkpoints,
                      world=self.world, stop_at=stop, on_step=on_step, final_checkpoint=rung)  # else: done.pt
        record = StageRecord(stage=stage.name, index=self.index[stage.name], data=stage.data, status="trained",
                             steps=stats.steps, expert=expert, artifact_key=key, resumed_from=stats.resumed_from,
                             losses=logged, loss_final=stats.loss_final, wall_s=stats.wall_s, samples=stats.samples,
                             trainable=counts, trainable_label=stage.trainable.label,
                             built_by=self.trial.key if expert else None)
        return record


FEATURES = "features"
"""Folder of the scratch directory holding frozen experts' saved feature maps, one file per expert weights."""


def _unwrap(model: Any) -> EagleModel:
    return getattr(model, "module", model)


def _cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in state.items()}


def _part(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of a model's state under ``prefix`` (``experts.clip.``), keyed relative to it, on the CPU."""
    return _cpu({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
