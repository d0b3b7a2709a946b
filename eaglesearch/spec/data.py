"""Where a trial's training and evaluation data come from: the mixtures its stages train on (named sources, see
``spec/sources.py``), its benchmarks, and how samples are rendered and checked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from eaglesearch.spec.aspect import ImagePolicySpec, is_default_policy
from eaglesearch.spec.base import SpecModel
from eaglesearch.spec.sources import SourceSpec, check_mixture, legacy_split, unknown_source_check

SYNTHETIC_TASKS = ("count", "color", "exist", "detail")
# Planted-effect tasks (see eaglesearch/data/synthetic.py): grating / grating_coarse need resolution, color_solo color,
# aspect (wide images) an aspect-aware image policy (data.image: pad or dynamic). arrow (opt-in world skill): a
# medium detail that a frozen pretrained expert exposes only weakly at a resolution above its pretraining one.
SyntheticTask = Literal["count", "color", "exist", "detail", "locate", "ocr", "grating", "grating_coarse",
                        "color_solo", "aspect", "arrow"]


class SyntheticDataSpec(SpecModel):
    """The seeded synthetic generator; it writes LLaVA-format json + PNG images."""

    tasks: tuple[SyntheticTask, ...] = Field(default=SYNTHETIC_TASKS, min_length=1)
    train_per_task: int = Field(default=400, gt=0)
    eval_per_task: int = Field(default=100, gt=0)
    image_size: int = Field(default=128, ge=32, description="side of the square canvas in pixels")
    seed: int = 0


class LlavaSplitSpec(SpecModel):
    """A LLaVA-format conversation json and the folder its ``image`` paths are relative to."""

    json_path: str
    image_folder: str


class BenchmarkSplitSpec(SpecModel):
    """One evaluation benchmark file: its kind (how it is read, prompted and scored), the file, its images."""

    kind: str = Field(default="llava", description="benchmark kind, e.g. textvqa, pope, mme, mmbench, llava")
    path: str = Field(description="the benchmark file (json, jsonl, tsv or parquet)")
    image_folder: str | None = Field(default=None, description="folder images are relative to; none if embedded")
    limit: int | None = Field(default=None, gt=0, description="evaluate only the first N questions (or groups)")
    prompt: str | None = Field(default=None, description="prompt template overriding the kind's standard one")
    scoring: Literal["generate", "likelihood"] | None = Field(
        default=None, description="generate (greedy decoding) or likelihood (rank the answer candidates); "
        "default: the kind's"
    )
    metric: str | None = Field(
        default=None, exclude_if=lambda value: value is None,
        description="score with this registered variant of the kind's metric instead of the kind's official rule, "
        "e.g. pope_lmms_eval (the harness a paper's numbers came from) or pope_lenient; default: the kind's")


TemplateName = Literal["chatml", "plain", "vicuna_v1", "llama3", "tokenizer"]
ProblemAction = Literal["error", "skip"]
ProblemKind = Literal["malformed", "missing_image", "unreadable_image", "no_answer", "template", "text_only",
                      "too_long", "no_target"]
PROBLEM_KINDS: tuple[ProblemKind, ...] = get_args(ProblemKind)


class OnProblemSpec(SpecModel):
    """What to do with a training sample that has a problem: ``error`` (stop, naming it) or ``skip`` (drop and count).

    ``default`` applies to every kind not set here. In YAML, a bare ``on_problem: skip`` is ``{default: skip}``;
    a per-kind value equal to ``default`` is dropped, so equivalent policies compare (and hash) equal.
    """

    default: ProblemAction = "error"
    malformed: ProblemAction | None = Field(default=None, description="record is not a valid LLaVA conversation")
    missing_image: ProblemAction | None = Field(default=None, description="the image file does not exist")
    unreadable_image: ProblemAction | None = Field(default=None, description="the image file cannot be decoded")
    no_answer: ProblemAction | None = Field(default=None, description="no assistant turn ends the conversation")
    template: ProblemAction | None = Field(default=None, description="the conversation does not fit the template")
    text_only: ProblemAction | None = Field(default=None, description="no image, and text-only is unsupported")
    too_long: ProblemAction | None = Field(default=None, description="longer than max_length (never truncated)")
    no_target: ProblemAction | None = Field(default=None, description="nothing to learn: no answer text supervised")

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: object) -> object:
        if isinstance(data, str):
            return {"default": data}
        if isinstance(data, dict):
            default = data.get("default", "error")
            return {k: v for k, v in data.items() if k == "default" or v != default}
        return data

    def action(self, kind: ProblemKind) -> ProblemAction:
        value = getattr(self, kind)
        return self.default if value is None else value


def _split_form(raw: Any) -> str:
    """Which form a ``data.train``/``data.caption`` value is written in (pydantic's union discriminator)."""
    if isinstance(raw, LlavaSplitSpec) or legacy_split(raw):
        return "LlavaSplitSpec"
    return "dict"


# Tags named after the member types, so error messages can walk into the branch (spec/pydantic_errors.py).
Split = Annotated[
    Annotated[LlavaSplitSpec, Tag("LlavaSplitSpec")] | Annotated[dict[str, SourceSpec], Tag("dict")],
    Discriminator(_split_form),
]
"""One LLaVA json (``{json_path, image_folder}``, a one-source mixture) or named sources (``spec/sources.py``)."""

STAGE_MIXTURES = {"sft": "train", "caption": "caption"}
"""Stage ``data`` names with a field of their own: ``sft`` trains on ``data.train``, ``caption`` on
``data.caption``; any other name is a key of ``data.mixtures``."""


@dataclass(frozen=True)
class DeclaredSource:
    """A source as the spec declares it, and where each of its fields is written (for messages)."""

    mixture: str
    name: str
    spec: SourceSpec
    locs: dict[str, tuple[str, ...]]

    def loc(self, field: str) -> tuple[str, ...]:
        return self.locs.get(field, self.locs["format"])


class DataSpec(SpecModel):
    source: Literal["synthetic", "llava"] = Field(
        default="synthetic", description="synthetic: the seeded generator writes the default training sources and "
        "its benchmarks (data.synthetic); llava: the sources and benchmarks are files on disk")
    synthetic: SyntheticDataSpec | None = None
    train: Split | None = Field(
        default=None, description="the SFT mixture: one LLaVA json {json_path, image_folder}, or named sources "
        "{name: {format, path, image_folder, ratio|weight, max_samples, repeats, size}}; default (source synthetic): "
        "the generator's training conversations")
    caption: Split | None = Field(
        default=None, description="image-caption pairs (LLaVA pre-training format, like blip_laion_cc_sbu_558k.json: "
        "a human turn '<image>', a gpt turn with the caption) for train stages with data: caption; one json or named "
        "sources (the synthetic generator writes its own captions.json)")
    mixtures: dict[str, dict[str, SourceSpec]] = Field(
        default_factory=dict, description="more named mixtures, for stages whose data is neither sft nor caption")
    eval: dict[str, BenchmarkSplitSpec] = Field(default_factory=dict, description="benchmark name → benchmark file")
    image_size: int = Field(default=128, ge=32, description="images are loaded as square uint8 tensors of this side")
    image: ImagePolicySpec = Field(
        default_factory=ImagePolicySpec, exclude_if=is_default_policy,
        description="aspect-ratio policy: square (squash), pad (expand to a square on the mean colour) or dynamic "
        "(a per-image grid of image_size tiles, InternVL / Eagle 2); `image: pad` or {resize: dynamic, max_tiles: 6}")
    max_length: int = Field(default=256, gt=0)
    template: TemplateName = Field(
        default="chatml", description="conversation template: chatml, plain (LLaVA pre-training), vicuna_v1, llama3, "
        "tokenizer (the tokenizer's own chat template)")
    on_problem: OnProblemSpec = Field(
        default_factory=OnProblemSpec, description="error or skip (and count) problem samples; one action for all "
        "kinds, or per kind: {default: error, too_long: skip}")
    num_workers: int | None = Field(
        default=None, ge=0, exclude_if=lambda v: v is None,
        description="loader processes that decode images (training and evaluation); 0 decodes in the trial's own "
        "process; default: from the trial's CPU threads (threads - 1 on a GPU, at most 8; 0 on a CPU). Never "
        "changes results (not part of the trial key)")

    @model_validator(mode="before")
    @classmethod
    def _default_generator(cls, data: object) -> object:
        if isinstance(data, dict):
            for field in ("train", "caption"):
                unknown_source_check(f"data.{field}", data.get(field))
            mixtures = data.get("mixtures")
            for name, sources in (mixtures.items() if isinstance(mixtures, dict) else ()):
                unknown_source_check(f"data.mixtures.{name}", sources)
        if isinstance(data, dict) and data.get("source", "synthetic") == "synthetic" and data.get("synthetic") is None:
            return {**data, "synthetic": {}}
        return data

    @field_validator("train", "caption")
    @classmethod
    def _sources(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, dict):
            check_mixture(str(info.field_name), value)
        return value

    @field_validator("mixtures")
    @classmethod
    def _mixtures(cls, value: dict[str, dict[str, SourceSpec]]) -> dict[str, dict[str, SourceSpec]]:
        taken = sorted(set(value) & set(STAGE_MIXTURES))
        if taken:
            raise ValueError(f"data.mixtures cannot define {', '.join(taken)}: those are data.train and data.caption")
        for name, sources in value.items():
            check_mixture(name, sources)
        return value

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> dict[str, Any]:
        # ``mixtures`` arrived after trial keys were first published: left out while empty, so keys stay the same.
        out = handler(self)
        if not out.get("mixtures"):
            out.pop("mixtures", None)
        return out

    @model_validator(mode="after")
    def _check(self) -> DataSpec:
        if self.source == "synthetic" and isinstance(self.caption, LlavaSplitSpec):
            raise ValueError("data.caption is for source 'llava'; with source 'synthetic' the generator writes the "
                             "caption pairs itself (captions.json, one per training image): remove data.caption")
        if self.source == "llava":
            if self.train is None:
                raise ValueError("source 'llava' needs train: {json_path, image_folder} or named sources")
            if not self.eval:
                raise ValueError("source 'llava' needs at least one eval benchmark: {name: {kind, path, image_folder}}")
        return self

    def _split(self, field: str) -> dict[str, SourceSpec] | None:
        value = getattr(self, field)
        if isinstance(value, LlavaSplitSpec):
            return {field: SourceSpec(format="llava", path=value.json_path, image_folder=value.image_folder)}
        if value is not None:
            return value
        if self.synthetic is None:
            return None
        generated = "synthetic" if field == "train" else "synthetic_captions"
        return {generated: SourceSpec(format=generated)}

    def mixture(self, name: str) -> dict[str, SourceSpec] | None:
        """The sources of the mixture a stage names (``sft``, ``caption`` or a key of ``mixtures``); None when the
        data has no such mixture."""
        if name in STAGE_MIXTURES:
            return self._split(STAGE_MIXTURES[name])
        return self.mixtures.get(name)

    @property
    def mixture_names(self) -> tuple[str, ...]:
        """Every mixture a stage can train on."""
        return (*(n for n in STAGE_MIXTURES if self.mixture(n) is not None), *self.mixtures)

    def declared_sources(self) -> list[DeclaredSource]:
        """Every source the spec declares or implies, with the YAML location of each field."""
        out = []
        for mixture in self.mixture_names:
            field = STAGE_MIXTURES.get(mixture)
            base: tuple[str, ...] = ("data", field) if field else ("data", "mixtures", mixture)
            written = getattr(self, field) if field else None
            for name, spec in (self.mixture(mixture) or {}).items():
                if isinstance(written, LlavaSplitSpec):
                    locs = {"format": base, "path": (*base, "json_path"), "image_folder": (*base, "image_folder")}
                elif field is not None and written is None:  # the generator's default: written nowhere
                    locs = {"format": ("data", "source")}
                else:
                    locs = {f: (*base, name, f) for f in SourceSpec.model_fields}
                out.append(DeclaredSource(mixture=mixture, name=name, spec=spec, locs=locs))
        return out

    @property
    def benchmark_names(self) -> tuple[str, ...]:
        """The benchmarks a trial evaluates, by the names its metrics carry: the generator's tasks (when the data
        has a generator), then ``eval``'s keys."""
        generated = tuple(self.synthetic.tasks) if self.synthetic is not None else ()
        return (*generated, *(k for k in self.eval if k not in generated))
