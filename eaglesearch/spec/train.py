"""How a trial trains: an ordered list of stages, each with its own trainable parts, data, optimizer and length.

The Eagle paper's recipes are stage lists (``eaglesearch/recipes/``): ``llava`` aligns a fresh projector on caption
pairs, then fine-tunes everything on SFT data; ``eagle-prealign`` first trains *each* expert with its own projector
against the frozen LM (a ``per_expert`` stage, cached and reused across trials), then aligns a new projector over
the fused experts on caption pairs, then fine-tunes everything.

In YAML, a ``train:`` mapping without ``stages`` is one SFT stage named ``sft`` with those settings, so::

    train: {steps: 300, lr: 5.0e-4}

is the same trial as ``train: {stages: [{name: sft, steps: 300, lr: 5.0e-4}]}``; next to ``stages``, a stage setting
applies to every stage (``train: {steps: 10}`` in a search's overrides). A stage with ``enabled: false``
is dropped before the trial is keyed: a search toggles pre-alignment with the factor
``train.stages.prealign.enabled: [true, false]`` and the disabled variant has the key of the recipe without that
stage. Search-space overrides and factors address a stage by name (``train.stages.sft.lr``).
"""

from __future__ import annotations

import math
import re
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from eaglesearch.spec.base import SpecModel, repeated
from eaglesearch.spec.data import TemplateName

PartSetting = Literal["spec", "all", "none"] | int
"""How much of a part trains in a stage: ``spec`` (as the model spec says: an expert's ``freeze`` and
``trainable_blocks``, ``lm.freeze``, ``freeze_projector``), ``all``, ``none``, or N >= 1: only the last N blocks
(ViT blocks / ConvNeXt stages of an expert, decoder layers of the LM plus its final norm)."""

DEFAULT_STEPS = 150
_MIXTURE_NAME = r"^[a-z][a-z0-9_]{0,31}$"
_STAGE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def _check_part(value: PartSetting, where: str) -> PartSetting:
    if isinstance(value, int) and not isinstance(value, bool) and value < 1:
        raise ValueError(f"{where}: last-N blocks must be at least 1 (use 'none' to freeze it)")
    return value


class TrainableSpec(SpecModel):
    """Which parameters a stage updates. Everything not named trains as the model spec says (``spec``)."""

    experts: PartSetting | dict[str, PartSetting] = Field(
        default="spec", description="every expert, or a mapping expert name -> setting (unnamed experts: spec)")
    projector: Literal["spec"] | bool = Field(
        default="spec", description="the projector and the fusion's own parameters")
    lm: PartSetting = Field(default="spec", description="the language model")

    @field_validator("experts")
    @classmethod
    def _experts(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for name, setting in value.items():
                _check_part(setting, f"trainable.experts.{name}")
            return {k: v for k, v in value.items() if v != "spec"} or "spec"
        return _check_part(value, "trainable.experts")

    @field_validator("lm")
    @classmethod
    def _lm(cls, value: Any) -> Any:
        return _check_part(value, "trainable.lm")

    def expert_setting(self, name: str) -> PartSetting:
        if isinstance(self.experts, dict):
            return self.experts.get(name, "spec")
        return self.experts

    @property
    def label(self) -> str:
        """e.g. ``experts=all projector lm=last2``: what trains, for logs and stage runs."""
        def show(value: PartSetting) -> str:
            return f"last{value}" if isinstance(value, int) else str(value)

        experts = (",".join(f"{k}={show(v)}" for k, v in self.experts.items()) if isinstance(self.experts, dict)
                   else show(self.experts))
        return f"experts={experts} projector={self.projector} lm={show(self.lm)}"


class StageSpec(SpecModel):
    """One training stage: what trains, on which data, with which optimizer, for how long."""

    name: str = Field(description="unique within the recipe: lowercase letters, digits and '_'")
    enabled: bool = Field(default=True, description="false: the stage is dropped (a search factor can toggle it)")
    per_expert: bool = Field(
        default=False,
        description="train each expert separately with its own projector (Eagle's pre-alignment); the result is a "
        "stage artifact per expert, cached by content and reused by every trial and search that needs it")
    data: str = Field(default="sft", pattern=_MIXTURE_NAME,
                      description="the mixture the stage trains on: sft (data.train), caption (data.caption: "
                      "image-caption pairs) or a key of data.mixtures")
    template: TemplateName | None = Field(default=None, description="conversation template; default: data.template")
    trainable: TrainableSpec = TrainableSpec()
    steps: int | None = Field(default=None, gt=0, description="optimizer steps (steps or epochs; neither: 150 steps)")
    epochs: float | None = Field(default=None, gt=0, description="passes over the stage's data, instead of steps")
    batch_size: int = Field(default=16, gt=0, description="global batch: samples per optimizer step, all workers")
    micro_batch_size: int | None = Field(
        default=None, gt=0,
        description="samples per forward pass on one worker; the global batch is reached by gradient accumulation "
        "(batch_size = micro_batch_size x accumulation x workers). Default: the whole share at once")
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(default=5e-4, gt=0)
    expert_lr: float | None = Field(
        default=None, gt=0, description="learning rate of the vision experts' trainable parameters (Eagle's "
        "vision_tower_lr); default: lr")
    weight_decay: float = Field(default=0.01, ge=0)
    betas: tuple[float, float] = Field(default=(0.9, 0.98), description="AdamW betas")
    momentum: float = Field(default=0.9, ge=0, lt=1, description="SGD momentum")
    schedule: Literal["cosine", "linear", "constant"] = Field(
        default="cosine", description="after linear warmup: cosine or linear decay to zero, or constant")
    warmup_ratio: float = Field(default=0.05, ge=0, le=1)
    grad_clip: float = Field(default=1.0, gt=0)
    log_every: int = Field(default=10, gt=0, description="steps between logged losses (not part of the trial key)")
    checkpoint_every: int | None = Field(
        default=None, ge=0,
        description="steps between in-stage checkpoints (0: only at the end of the stage; default: every "
        "checkpoint_every_s seconds instead); not part of the key")
    checkpoint_every_s: float = Field(
        default=600.0, gt=0,
        description="seconds between in-stage checkpoints when checkpoint_every is not set (decided at the next "
        "log_every step; the end of the stage is always checkpointed); not part of the key")

    @model_validator(mode="before")
    @classmethod
    def _default_length(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("steps") is None and data.get("epochs") is None:
            return {**data, "steps": DEFAULT_STEPS}
        return data

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _STAGE_NAME.match(value):
            raise ValueError(f"stage name {value!r}: use 1-32 lowercase letters, digits or '_', starting with a letter")
        return value

    @model_validator(mode="after")
    def _check(self) -> StageSpec:
        if self.steps is not None and self.epochs is not None:
            raise ValueError(f"stage '{self.name}': give steps or epochs, not both (an override that sets one should "
                             "set the other to null)")
        if self.micro_batch_size is not None and self.batch_size % self.micro_batch_size:
            raise ValueError(f"stage '{self.name}': batch_size {self.batch_size} is not a multiple of "
                             f"micro_batch_size {self.micro_batch_size}")
        return self

    def total_steps(self, dataset_size: int) -> int:
        """Optimizer steps of this stage over a dataset of ``dataset_size`` samples (``epochs`` rounds up)."""
        if self.steps is not None:
            return self.steps
        assert self.epochs is not None
        per_epoch = max(1, dataset_size // self.batch_size)
        return max(1, math.ceil(self.epochs * per_epoch))

    def with_steps(self, steps: int) -> StageSpec:
        """This stage with its length fixed to ``steps`` (what the training loop runs)."""
        return self.model_copy(update={"steps": steps, "epochs": None})


_STAGE_FIELDS = set(StageSpec.model_fields) - {"name", "enabled", "per_expert", "data"}
_TRAIN_FIELDS = {"stages", "feature_cache_mb"}


class TrainSpec(SpecModel):
    """The ordered training stages of a trial; disabled ones are kept (a factor may enable them) but not run."""

    stages: tuple[StageSpec, ...] = Field(min_length=1)
    feature_cache_mb: int = Field(
        default=0, ge=0, description="memory (MiB, all experts together) for the feature maps of frozen experts, "
        "computed once per image instead of at every step (0: off; not part of the trial key)")
    yaml_shorthands: ClassVar[tuple[str, ...]] = ()  # set below: stage settings allowed directly under train

    @model_validator(mode="before")
    @classmethod
    def _shorthands(cls, data: object) -> object:
        """A flat mapping of stage settings is one SFT stage named ``sft``; next to ``stages``, a stage setting
        applies to every stage (``train.steps: 10`` in a search's overrides shortens them all)."""
        if not isinstance(data, dict) or set(data) - _STAGE_FIELDS - _TRAIN_FIELDS:
            return data  # let validation name the unknown keys
        own = {k: v for k, v in data.items() if k in _TRAIN_FIELDS and k != "stages"}
        shared = {k: v for k, v in data.items() if k not in _TRAIN_FIELDS}
        if "stages" not in data:
            return {"stages": [{"name": "sft", **shared}], **own}
        stages = data["stages"]
        if shared and isinstance(stages, (list, tuple)):
            stages = [{**s, **shared} if isinstance(s, dict) else s for s in stages]
            if "steps" in shared:
                stages = [{**s, "epochs": None} if isinstance(s, dict) else s for s in stages]
            if "epochs" in shared:
                stages = [{**s, "steps": None} if isinstance(s, dict) else s for s in stages]
        return {"stages": stages, **own}

    @field_validator("stages", mode="after")
    @classmethod
    def _check(cls, stages: tuple[StageSpec, ...]) -> tuple[StageSpec, ...]:
        dupes = repeated([s.name for s in stages])
        if dupes:
            raise ValueError(f"stage names must be unique; repeated: {', '.join(dupes)}")
        active = [s for s in stages if s.enabled]
        if not active:
            raise ValueError("every stage is disabled; enable at least one")
        joint = [i for i, s in enumerate(active) if not s.per_expert]
        if not joint:
            raise ValueError("only per-expert stages are enabled; add a stage that trains the combined model")
        late = [s.name for s in active[joint[0]:] if s.per_expert]
        if late:
            raise ValueError(f"per-expert stages must come before the combined model's stages: move {', '.join(late)}")
        return stages

    @property
    def active(self) -> tuple[StageSpec, ...]:
        """The enabled stages, in order: what the trial runs (disabled stages are not part of its key)."""
        return tuple(s for s in self.stages if s.enabled)

    def semantic(self) -> dict[str, Any]:
        """What the trial's numbers depend on: the enabled stages without their logging fields."""
        return {"stages": [semantic_stage(s, exclude=STAGE_NON_SEMANTIC) for s in self.active]}

    @property
    def per_expert_stages(self) -> tuple[StageSpec, ...]:
        return tuple(s for s in self.active if s.per_expert)

    @property
    def joint_stages(self) -> tuple[StageSpec, ...]:
        return tuple(s for s in self.active if not s.per_expert)

    def stage(self, name: str) -> StageSpec:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(f"no stage '{name}'; stages: {', '.join(s.name for s in self.stages)}")

    @property
    def label(self) -> str:
        """e.g. ``prealign>align>sft``."""
        return ">".join(s.name for s in self.active)


TrainSpec.yaml_shorthands = tuple(sorted(_STAGE_FIELDS))

# Fields that change how a trial is logged, not what it computes; left out of trial keys and stage-artifact keys.
STAGE_NON_SEMANTIC = frozenset({"log_every", "checkpoint_every", "checkpoint_every_s"})
# Fields added after keys were first published: left out of a key while unset, so existing keys stay as they were.
STAGE_OPTIONAL = frozenset({"expert_lr"})


def semantic_stage(stage: StageSpec, exclude: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
    """A stage's settings for a content key: without ``exclude``, and without optional fields left unset."""
    unset = {name for name in STAGE_OPTIONAL if getattr(stage, name) is None}
    return stage.model_dump(mode="json", exclude={*exclude, *unset})
