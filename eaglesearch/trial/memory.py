"""Does each trial fit its GPUs? The memory plan of a search, and the fit check ``validate``/``plan``/``run`` apply.

For every trial the plan reports (greedy: the base, base + each candidate and the largest reachable set; grid:
every trial) the model is built on ``meta`` and, for each stage that trains the combined model, priced by
:mod:`eaglesearch.model.memory` as the trainer runs it:

* GPU trials (``gpus_per_trial`` > 0): bf16 mixed precision, activation checkpointing of the LM's layers and the
  experts' blocks on (the trainer turns it on for every GPU run), ``gpus_per_trial`` data-parallel workers each
  holding a micro-batch of the stage's ``micro_batch_size`` (default: its share of ``batch_size``), under ``ddp`` and under ``fsdp``;
* CPU trials: fp32, no checkpointing, one process; shown, never refused.

Beside GPU memory, each trial's **host RAM per rank** is estimated (:class:`~eaglesearch.model.host_memory.HostMemory`):
the model as loaded (bf16 for GPU trials, fp32 on CPU) plus the largest expert while it is built at fp32, and for
CPU trials
the training step; ``plan`` shows it.

``resources.parallelism: auto`` picks ddp when it fits, else fsdp. The GPU size is ``resources.gpu_memory_gb``, else
what the visible GPU reports (a fraction of it for ``gpus_per_trial`` < 1); with neither, nothing is refused. A
trial that does not fit is refused with one message naming the fixes that would make it fit, each priced.
Per-expert stages (pre-alignment) train a one-expert model with the LM frozen and are not priced here.
"""

from __future__ import annotations

from dataclasses import dataclass

from eaglesearch.model import build_eagle
from eaglesearch.model.host_memory import HostMemory, estimate_host_memory
from eaglesearch.model.memory import (
    BF16_MIXED,
    FP32,
    LMShape,
    MemoryEstimate,
    MemoryInputs,
    Parallelism,
    param_split,
    vision_activations,
)
from eaglesearch.model.meta import skeleton
from eaglesearch.spec import ResourcesSpec, TrialSpec
from eaglesearch.spec.train import StageSpec
from eaglesearch.train import apply_trainable
from eaglesearch.trial.gpu_size import available_gpu_memory_gb
from eaglesearch.trial.plan import Vocabulary, architecture_only

MAX_GPUS_SUGGESTED = 64


@dataclass(frozen=True)
class StageMemory:
    """One stage of a trial, priced under ddp and fsdp (both the same for a one-process CPU trial)."""

    stage: StageSpec
    inputs: MemoryInputs
    micro_batch: int
    checkpointing: bool
    gpus: int

    def estimate(self, parallelism: Parallelism, **changes: int | bool) -> MemoryEstimate:
        setup = {"micro_batch": self.micro_batch, "checkpointing": self.checkpointing, "gpus": self.gpus, **changes}
        return self.inputs.estimate(parallelism=parallelism, **setup)  # type: ignore[arg-type]


@dataclass(frozen=True)
class TrialMemory:
    """A trial's peak memory per GPU (the peak over its stages), whether it fits and, if not, what would."""

    label: str
    on_gpu: bool
    stages: tuple[StageMemory, ...]
    parallelism: Parallelism
    available_gb: float | None  # None: nothing to check against (CPU trial, or no GPU size known)
    host: HostMemory | None = None  # host RAM per rank (model build; CPU trials: also training)
    assumed: str | None = None  # the LM's config could not be read: what was assumed (trial.plan.Architecture)

    def peak(self, parallelism: Parallelism) -> tuple[StageMemory, MemoryEstimate]:
        """The stage with the highest peak under ``parallelism``, and its estimate."""
        priced = [(s, s.estimate(parallelism)) for s in self.stages]
        return max(priced, key=lambda pair: pair[1].total)

    @property
    def estimate(self) -> MemoryEstimate:
        return self.peak(self.parallelism)[1]

    @property
    def fits(self) -> bool | None:
        return None if self.available_gb is None else self.estimate.total_gb <= self.available_gb

    def fixes(self) -> list[str]:
        """Changes that each alone make the trial fit, with the memory per GPU they give."""
        available = self.available_gb
        assert available is not None

        def fits(estimate: MemoryEstimate) -> bool:
            return estimate.total_gb <= available

        stage, current = self.peak(self.parallelism)
        found: list[str] = []
        if self.parallelism == "ddp":
            fsdp = stage.estimate("fsdp")
            if all(fits(s.estimate("fsdp")) for s in self.stages):
                found.append(f"resources.parallelism: fsdp ({fsdp.total_gb:.1f} GB/GPU)")
        for gpus in range(stage.gpus + 1, MAX_GPUS_SUGGESTED + 1):
            if all(fits(s.estimate("fsdp", gpus=gpus)) for s in self.stages):
                found.append(f"resources.gpus_per_trial: {gpus} with parallelism fsdp "
                             f"({stage.estimate('fsdp', gpus=gpus).total_gb:.1f} GB/GPU)")
                break
        for micro in range(current.micro_batch - 1, 0, -1):
            smaller = stage.estimate(self.parallelism, micro_batch=micro)
            if fits(smaller) and (stage.stage.batch_size // stage.gpus) % micro == 0:
                found.append(f"micro_batch_size: {micro} in stage '{stage.stage.name}' ({smaller.total_gb:.1f} GB/GPU)")
                break
        if not current.checkpointing:
            ckpt = stage.estimate(self.parallelism, checkpointing=True)
            if fits(ckpt):
                found.append(f"activation checkpointing ({ckpt.total_gb:.1f} GB/GPU)")
        return found

    def refusal(self) -> str:
        """The message for a trial that does not fit: what it needs, what there is, and the fixes."""
        stage, estimate = self.peak(self.parallelism)
        fixes = self.fixes()
        ckpt = "" if not estimate.checkpointing else (" Activation checkpointing of the LM and the experts is "
                                                      "already counted (the trainer turns it on for GPU runs).")
        todo = ("Fixes, each enough alone: " + "; ".join(fixes) + "." if fixes else
                "No single fix (fsdp, up to 64 GPUs, micro-batch 1, checkpointing) is enough: combine them, or "
                "freeze parts of the model (experts or LM) or drop experts.")
        sized = (" The LM was sized from the recipe's lm dimensions (its config could not be read here)."
                 if self.assumed else "")
        return (f"trial {self.label}: stage '{stage.stage.name}' needs ~{estimate.total_gb:.1f} GB per GPU "
                f"({estimate.setup}: {estimate.breakdown()}) but one GPU has {self.available_gb:.0f} GB "
                f"(resources.gpu_memory_gb or the visible GPU).{ckpt}{sized} {todo}")


def _workers(resources: ResourcesSpec) -> int:
    return int(resources.gpus_per_trial) if resources.gpus_per_trial > 1 else 1


def trial_memory(trial: TrialSpec, resources: ResourcesSpec, available_gb: float | None) -> TrialMemory:
    """Build ``trial``'s model on ``meta`` and price each of its combined-model stages."""
    arch = architecture_only(trial.model)
    spec = arch.spec
    on_gpu = resources.gpus_per_trial > 0
    precision = BF16_MIXED if on_gpu else FP32
    workers = _workers(resources)
    with skeleton():
        model = build_eagle(spec, Vocabulary(trial.model.tokenizer.vocab_size), weights=False)
    lm = LMShape.from_config(model.lm.config)
    stages = []
    for stage in trial.train.joint_stages:
        apply_trainable(model, stage.trainable, spec)
        vision = vision_activations(model, trial.data.image_size)
        worst = trial.data.image.max_images  # a picture's worst case: max tiles + thumbnail
        inputs = MemoryInputs(params=param_split(model), lm=lm, vision_bytes_per_image=vision.plain * worst,
                              precision=precision, optimizer=stage.optimizer, seq_len=trial.data.max_length,
                              vision_bytes_checkpointed=vision.checkpointed * worst)
        share = max(1, stage.batch_size // workers)
        micro = min(stage.micro_batch_size or share, share)
        stages.append(StageMemory(stage=stage, inputs=inputs, micro_batch=micro, checkpointing=on_gpu, gpus=workers))
    # experts are built at fp32 and then cast; the LM is read straight into its dtype (one tensor at a time)
    host = estimate_host_memory(param_split(model).total, max(param_split(e).total for e in model.experts.values()),
                                load_bytes=precision.weight,
                                step=0 if on_gpu else max(s.estimate("ddp").total for s in stages), ranks=workers)
    parallelism: Parallelism = "ddp"
    if resources.parallelism == "fsdp":
        parallelism = "fsdp"
    elif resources.parallelism == "auto" and available_gb is not None and on_gpu:
        ddp_fits = all(s.estimate("ddp").total_gb <= available_gb for s in stages)
        parallelism = "ddp" if ddp_fits else "fsdp"
    return TrialMemory(label=trial.label, on_gpu=on_gpu, stages=tuple(stages), parallelism=parallelism,
                       available_gb=available_gb if on_gpu else None, host=host, assumed=arch.assumed)


def host_memory(trial: TrialSpec, resources: ResourcesSpec) -> HostMemory:
    """Estimated peak host RAM of one rank of ``trial`` (see :class:`~eaglesearch.model.host_memory.HostMemory`)."""
    memory = trial_memory(trial, resources, None)
    assert memory.host is not None
    return memory.host


def plan_memory(trials: list[TrialSpec], resources: ResourcesSpec, available_gb: float | None = None) \
        -> list[TrialMemory]:
    """The memory of every trial a search reaches (its strategy's ``planned_trials``); ``available_gb`` defaults
    to :func:`available_gpu_memory_gb`."""
    available = available_gb if available_gb is not None else available_gpu_memory_gb(resources)
    return [trial_memory(t, resources, available) for t in trials]


def memory_refusals(trials: list[TrialSpec], resources: ResourcesSpec) -> list[str]:
    """One message per trial that cannot fit its GPUs; empty when all fit or nothing can be checked
    (CPU-only trials are not checked, nor are GPU trials when no GPU size is known)."""
    if available_gpu_memory_gb(resources) is None:
        return []
    return [m.refusal() for m in plan_memory(trials, resources) if m.fits is False]
