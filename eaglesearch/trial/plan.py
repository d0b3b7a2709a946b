"""``eaglesearch plan``: what a search will run and what each model costs, without training anything.

For every distinct model the strategy can reach first (greedy: the base, base + each candidate, and the largest
reachable set; grid: every trial), the planner builds the model as a trial would and reports parameters (total,
trainable, vision side), visual tokens and forward FLOPs measured by ``torch.utils.flop_counter`` (vision per
image, whole model per sample).

* Models that fit here (tiny scale) are built on the CPU from the trial's real data and tokenizer, and two timed
  optimizer steps give the estimated training time (fastest step × steps).
* Paper-scale models (paper presets, hub LMs) are built on the ``meta`` device from their configs: no weights
  are loaded or allocated, so a 7B model is sized in seconds. The LM is built from its own config (local folder,
  ``pkg://``, hub cache, GGUF header); when none can be read offline, from the recipe's ``lm`` dimensions, and the
  plan says so (``ModelPlan.assumed``). Step time is not estimated there (it depends on the GPUs).

Each model is also priced in memory per GPU (``trial.memory``: weights, gradients, optimizer state and
activations under ddp and fsdp, against the GPU size).

Under ``data.image: dynamic`` a picture becomes several square images (tiles + thumbnail): the plan reads the
headers of up to 256 training pictures spread over the data (``trial/aspect.py``) and reports how many images they
become (``images``); per-sample FLOPs use the mean, memory the worst case (``max_tiles`` + thumbnail). Where no
picture can be read (paths only on the cluster) the per-sample numbers use the worst case.

A model's estimate covers the stages every trial runs (the combined model's). Per-expert stages (pre-alignment)
are planned separately: one stage artifact per distinct expert (and stage) the search can reach, each trained once
for the whole search and skipped when the artifact store already holds it; at tiny scale each is timed on its
one-expert model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from eaglesearch.artifacts import ArtifactStore, artifact_key
from eaglesearch.data import TrainDataset, collate_train
from eaglesearch.data.aspect import ImageCounts
from eaglesearch.data.sources import source_class
from eaglesearch.model import IMAGE_TOKEN, build_eagle
from eaglesearch.model.cost import count_flops, measure_cost
from eaglesearch.model.language import language_model_config
from eaglesearch.model.meta import skeleton
from eaglesearch.spec import ExpertSpec, ModelSpec, ResourcesSpec, TrialSpec
from eaglesearch.spec.train import StageSpec
from eaglesearch.train import apply_trainable, build_optimizer
from eaglesearch.train.pretrained import PretrainedComponents
from eaglesearch.train.stages import PREALIGNED, per_expert_payload, prealign_model
from eaglesearch.trial.aspect import image_policy, picture_counts
from eaglesearch.trial.data import PreparedData, prepare_data, prepare_tokenizer
from eaglesearch.trial.mixture_plan import MixturePlan, plan_mixtures
from eaglesearch.trial.threads import pin_threads
from eaglesearch.trial.workspace import PER_TRIAL, Workspace

TINY_PRESETS = (None, "tiny", "tiny_random")  # presets that are built here; any other (paper, mim) on meta
META_TEXT_TOKENS = 128  # text tokens per sample assumed for the whole-model FLOPs of a paper-scale plan


@dataclass(frozen=True)
class ModelPlan:
    label: str
    scale: str  # "measured here" or "meta (config only)"
    params_total: int
    params_trainable: int
    params_vision: int
    visual_tokens: int
    vision_gflops_per_image: float
    gflops_per_sample: float | None
    step_s: float | None
    est_train_s: float | None
    memory: Any = None  # TrialMemory (trial.memory): estimated peak memory per GPU, ddp and fsdp, and host RAM
    assumed: str | None = None  # the LM's architecture could not be read: what was assumed instead (meta plans)
    images: ImageCounts | None = None  # dynamic image policy: square images per picture over sampled pictures
    images_worst: int = 1  # the most square images a picture can become (data.image.max_images)


@dataclass(frozen=True)
class ArtifactPlan:
    """One per-expert stage artifact the search needs: built once, then reused by every trial with that expert."""

    expert: str
    stage: str
    key: str
    stored: bool  # already in the artifact store: nothing to train
    step_s: float | None
    est_train_s: float | None


@dataclass(frozen=True)
class ComponentPlan:
    """One pretrained tiny component the search uses (the world's LM, a pretext-pretrained expert)."""

    kind: str
    name: str
    key: str
    where: str  # "shipped" (in the package), "store" (built earlier), "build" (pretrained on first use)


@dataclass(frozen=True)
class Plan:
    strategy: str
    trials_per_round: list[int]
    models: list[ModelPlan]
    artifacts: list[ArtifactPlan] = field(default_factory=list)
    pretrained: list[ComponentPlan] = field(default_factory=list)
    mixtures: list[MixturePlan] = field(default_factory=list)  # each stage's data: sources, sizes, shares

    @property
    def est_train_s(self) -> float | None:
        """Upper bound: the slowest model's stages for every trial, plus each per-expert artifact still to build."""
        timed = [m.est_train_s for m in self.models if m.est_train_s is not None]
        if not timed:
            return None
        todo = [a.est_train_s or 0.0 for a in self.artifacts if not a.stored]
        return max(timed) * self.total_trials + sum(todo)

    @property
    def total_trials(self) -> int:
        return sum(self.trials_per_round)


def needs_meta(trial: TrialSpec) -> bool:
    """True for models that can't be built here: paper presets, hub LMs or tokenizers, data not generated here."""
    model = trial.model
    generated = all(source_class(d.spec.format).generated for d in trial.data.declared_sources())
    return (any(e.preset not in TINY_PRESETS for e in model.experts) or model.lm.kind == "hf"
            or model.tokenizer.kind == "hf" or not generated)


def _vision_params(counts: dict[str, int]) -> int:
    return sum(v for k, v in counts.items() if k.startswith("expert/")) + counts["fusion"] + counts["projector"]


def measure_here(trial: TrialSpec, workspace: Workspace, threads: int) -> ModelPlan:
    pin_threads(threads)
    data = prepare_data(trial.data, workspace)
    tokenizer = prepare_tokenizer(trial, data, workspace)
    stage = trial.train.joint_stages[-1]  # the final stage: what the trial's model trains last
    torch.manual_seed(trial.seed)
    model = build_eagle(trial.model, tokenizer)
    apply_trainable(model, stage.trainable, trial.model)
    dataset = TrainDataset(data.train[: stage.batch_size], tokenizer, image_size=trial.data.image_size,
                           num_visual_tokens=model.num_visual_tokens, max_length=trial.data.max_length,
                           image_policy=image_policy(trial))
    batch = collate_train([dataset[i] for i in range(len(dataset))], tokenizer.pad_token_id)
    images = picture_counts(trial, data.train)
    cost = measure_cost(model, batch["images"], batch, images_per_sample=images.mean if images else 1.0)
    model.train()
    step_s = _timed_steps(model, batch, build_optimizer(model, stage))
    # The combined model's stages at the final stage's step time (per-expert stages: see plan_artifacts).
    steps = sum(s.total_steps(len(data.train)) for s in trial.train.joint_stages)
    return ModelPlan(
        label=trial.label, scale="measured here", params_total=cost.params["total"],
        params_trainable=cost.params["trainable"], params_vision=_vision_params(cost.params),
        visual_tokens=cost.visual_tokens, vision_gflops_per_image=cost.vision_flops_per_image / 1e9,
        gflops_per_sample=(cost.flops_per_sample or 0) / 1e9, step_s=step_s, est_train_s=step_s * steps,
        images=images, images_worst=trial.data.image.max_images,
    )


class Vocabulary:
    """Just enough of a tokenizer for building a model on ``meta``: a size and the special-token ids."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.pad_token_id, self.eos_token_id, self.unk_token_id = 0, 1, None

    def __len__(self) -> int:
        return self.size

    def convert_tokens_to_ids(self, token: str) -> int | None:
        return self.size - 1 if token == IMAGE_TOKEN else None


@dataclass(frozen=True)
class Architecture:
    """What ``plan`` builds on the ``meta`` device for a model spec (with ``build_eagle(..., weights=False)``), and,
    when the LM's real architecture could not be read, the sentence saying so and what was assumed instead."""

    spec: ModelSpec
    assumed: str | None = None


def architecture_only(spec: ModelSpec) -> Architecture:
    """The model's architecture with nothing to download: an ``hf`` LM is built from its own config (local folder,
    ``pkg://`` folder, hub cache or GGUF header: :func:`~eaglesearch.model.language.language_model_config`). When
    that config cannot be read here, the LM is sized as a Llama-style decoder with the recipe's ``lm`` dimensions,
    and :attr:`Architecture.assumed` says so: never silently."""
    lm = spec.lm
    if lm.kind != "hf":
        return Architecture(spec)
    try:
        language_model_config(lm)
        return Architecture(spec)
    except ValueError as err:
        assumed = lm.model_copy(update={"kind": "tiny_llama", "name_or_path": None, "gguf_file": None})
        note = (f"{err}. ASSUMED instead: a Llama-style decoder with the recipe's lm dimensions (hidden_size "
                f"{lm.hidden_size}, num_layers {lm.num_layers}, num_heads {lm.num_heads}, num_kv_heads "
                f"{lm.num_kv_heads}, intermediate_size {lm.intermediate_size}, vocabulary "
                f"tokenizer.vocab_size {spec.tokenizer.vocab_size}); parameters, FLOPs and memory of this model are "
                "only as right as those numbers. Fix: put the model where it can be read offline (a local folder "
                "with config.json for lm.name_or_path, or the HF cache via HF_HOME)")
        return Architecture(spec.model_copy(update={"lm": assumed}), assumed=note)


def measure_on_meta(trial: TrialSpec) -> ModelPlan:
    arch = architecture_only(trial.model)
    spec = arch.spec
    images = picture_counts(trial)
    per_sample = images.mean if images else float(trial.data.image.max_images)  # no pictures here: worst case
    with skeleton():
        model = build_eagle(spec, Vocabulary(trial.model.tokenizer.vocab_size), weights=False)
    apply_trainable(model, trial.train.joint_stages[-1].trainable, spec)
    with torch.device("meta"):
        image = torch.empty(1, 3, trial.data.image_size, trial.data.image_size, dtype=torch.uint8)
        vision = count_flops(model.encode_images, image)
        visual = round(model.num_visual_tokens * per_sample)
        embeds = torch.empty(1, visual + META_TEXT_TOKENS, model.lm.config.hidden_size)
        lm_flops = count_flops(model.lm, inputs_embeds=embeds)
    counts = model.param_counts()
    return ModelPlan(
        label=trial.label, scale="meta (config only)", params_total=counts["total"],
        params_trainable=counts["trainable"], params_vision=_vision_params(counts),
        visual_tokens=model.num_visual_tokens, vision_gflops_per_image=vision / 1e9,
        gflops_per_sample=(vision * per_sample + lm_flops) / 1e9, step_s=None, est_train_s=None, assumed=arch.assumed,
        images=images, images_worst=trial.data.image.max_images,
    )


def _timed_steps(model: torch.nn.Module, batch: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer) -> float:
    times = []
    for _ in range(3):
        start = time.perf_counter()
        loss = model(batch["images"], batch["input_ids"], batch["attention_mask"], labels=batch["labels"]).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return min(times[1:])  # the first step pays one-off allocation costs


def plan_artifacts(trials: list[TrialSpec], workspace: Workspace, measure: bool) -> list[ArtifactPlan]:
    """Every distinct per-expert stage artifact ``trials`` need, whether the store already holds it, and
    (tiny scale, ``measure``) its training time timed on the one-expert model."""
    store = ArtifactStore(workspace.artifacts) if workspace.artifacts != PER_TRIAL else None
    found: dict[str, ArtifactPlan] = {}
    for trial in trials:
        prepared = None  # the trial's data and tokenizer, read once when a measurement needs them
        for expert in trial.model.experts:
            previous = None
            for stage in trial.train.per_expert_stages:
                key = artifact_key(per_expert_payload(trial, expert, stage, previous))
                previous = key
                if key in found:
                    continue
                stored = store is not None and store.is_complete(PREALIGNED, key)
                step_s = est = None
                if measure and not stored and not needs_meta(trial):
                    if prepared is None:
                        data = prepare_data(trial.data, workspace)
                        prepared = data, prepare_tokenizer(trial, data, workspace)
                    step_s, steps = _time_per_expert(trial, expert, stage, *prepared)
                    est = step_s * steps
                found[key] = ArtifactPlan(expert=expert.label, stage=stage.name, key=key, stored=stored,
                                          step_s=step_s, est_train_s=est)
    return list(found.values())


def _time_per_expert(trial: TrialSpec, expert: ExpertSpec, stage: StageSpec, data: PreparedData,
                     tokenizer: Any) -> tuple[float, int]:
    spec = prealign_model(trial.model, expert)
    model = build_eagle(spec, tokenizer, seed=trial.seed)
    apply_trainable(model, stage.trainable, spec)
    samples = data.samples(stage.data) or data.train
    dataset = TrainDataset(samples[: stage.batch_size], tokenizer, image_size=trial.data.image_size,
                           num_visual_tokens=model.num_visual_tokens, max_length=trial.data.max_length,
                           template=stage.template or trial.data.template, image_policy=image_policy(trial))
    batch = collate_train([dataset[i] for i in range(len(dataset))], tokenizer.pad_token_id)
    model.train()
    return _timed_steps(model, batch, build_optimizer(model, stage)), stage.total_steps(len(samples))


def make_plan(trials: list[TrialSpec], strategy: str, trials_per_round: list[int], resources: ResourcesSpec,
              workspace: Workspace, measure_costs: bool = True, gpu_memory_gb: float | None = None) -> Plan:
    """The plan of a search reaching ``trials`` (its strategy's ``planned_trials``); with ``measure_costs`` every
    planned model is built (and timed at tiny scale) and priced in memory per GPU against ``gpu_memory_gb`` (default:
    ``resources.gpu_memory_gb`` or the visible GPU)."""
    from eaglesearch.trial.memory import available_gpu_memory_gb, trial_memory

    models: list[ModelPlan] = []
    threads = resources.torch_threads
    if measure_costs:
        pin_threads(threads)
        varied = len({t.train.label for t in trials}) > 1  # e.g. pre-alignment on/off: name the stages per row
        policies = len({t.data.image for t in trials}) > 1  # square / pad / dynamic: name the image policy per row
        available = gpu_memory_gb if gpu_memory_gb is not None else available_gpu_memory_gb(resources)
        for trial in trials:
            plan = measure_on_meta(trial) if needs_meta(trial) else measure_here(trial, workspace, threads)
            plan = replace(plan, memory=trial_memory(trial, resources, available))
            if policies:
                plan = replace(plan, label=f"{plan.label} [image: {trial.data.image.label or 'square'}]")
            models.append(replace(plan, label=f"{plan.label} ({trial.train.label})") if varied else plan)
    artifacts = plan_artifacts(trials, workspace, measure=measure_costs)
    return Plan(strategy=strategy, trials_per_round=trials_per_round, models=models,
                artifacts=artifacts, pretrained=plan_pretrained(trials, workspace),
                mixtures=plan_mixtures(trials, workspace.data_dir))


def plan_pretrained(trials: list[TrialSpec], workspace: Workspace) -> list[ComponentPlan]:
    """Every pretrained tiny component ``trials`` load, once each, and where it will come from."""
    store = ArtifactStore(workspace.artifacts) if workspace.artifacts != PER_TRIAL else None
    components = PretrainedComponents(store or ArtifactStore(workspace.scratch_dir / "plan-artifacts"))
    seen: dict[str, ComponentPlan] = {}
    for trial in trials:
        if trial.model.experts[0].preset == "paper":
            continue
        for kind, name, key in components.needed(trial.model):
            if key not in seen:
                where = components.available(kind, key) if store is not None else None
                seen[key] = ComponentPlan(kind=kind, name=name, key=key, where=where or "build")
    return list(seen.values())
