"""Where a trial's training and evaluation data come from."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field, model_validator

from eaglesearch.spec.base import SpecModel

SYNTHETIC_TASKS = ("count", "color", "exist", "detail")
# Planted-effect tasks (see eaglesearch/data/synthetic.py): grating / grating_coarse need resolution, color_solo color.
SyntheticTask = Literal["count", "color", "exist", "detail", "locate", "ocr", "grating", "grating_coarse",
                        "color_solo"]


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


class DataSpec(SpecModel):
    source: Literal["synthetic", "llava"] = "synthetic"
    synthetic: SyntheticDataSpec | None = None
    train: LlavaSplitSpec | None = None
    caption: LlavaSplitSpec | None = Field(
        default=None, description="image-caption pairs (LLaVA pre-training format, like blip_laion_cc_sbu_558k.json: "
        "a human turn '<image>', a gpt turn with the caption) for train stages with data: caption; source llava "
        "only (the synthetic generator writes its own captions.json)")
    eval: dict[str, BenchmarkSplitSpec] = Field(default_factory=dict, description="benchmark name → benchmark file")
    image_size: int = Field(default=128, ge=32, description="images are loaded as square uint8 tensors of this side")
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
        if isinstance(data, dict) and data.get("source", "synthetic") == "synthetic" and data.get("synthetic") is None:
            return {**data, "synthetic": {}}
        return data

    @model_validator(mode="after")
    def _check(self) -> DataSpec:
        if self.source == "synthetic" and self.caption is not None:
            raise ValueError("data.caption is for source 'llava'; with source 'synthetic' the generator writes the "
                             "caption pairs itself (captions.json, one per training image): remove data.caption")
        if self.source == "llava":
            if self.train is None:
                raise ValueError("source 'llava' needs train: {json_path, image_folder}")
            if not self.eval:
                raise ValueError("source 'llava' needs at least one eval benchmark: {name: {kind, path, image_folder}}")
        return self
