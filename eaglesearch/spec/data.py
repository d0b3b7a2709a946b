"""Where a trial's training and evaluation data come from."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from eaglesearch.spec.base import SpecModel

SYNTHETIC_TASKS = ("count", "color", "exist", "detail")


class SyntheticDataSpec(SpecModel):
    """The seeded synthetic generator; it writes LLaVA-format json + PNG images."""

    tasks: tuple[Literal["count", "color", "exist", "detail", "grating", "color_solo"], ...] = Field(
        default=SYNTHETIC_TASKS, min_length=1)
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


class DataSpec(SpecModel):
    source: Literal["synthetic", "llava"] = "synthetic"
    synthetic: SyntheticDataSpec | None = None
    train: LlavaSplitSpec | None = None
    eval: dict[str, BenchmarkSplitSpec] = Field(default_factory=dict, description="benchmark name → benchmark file")
    image_size: int = Field(default=128, ge=32, description="images are loaded as square uint8 tensors of this side")
    max_length: int = Field(default=256, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _default_generator(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("source", "synthetic") == "synthetic" and data.get("synthetic") is None:
            return {**data, "synthetic": {}}
        return data

    @model_validator(mode="after")
    def _check(self) -> DataSpec:
        if self.source == "llava":
            if self.train is None:
                raise ValueError("source 'llava' needs train: {json_path, image_folder}")
            if not self.eval:
                raise ValueError("source 'llava' needs at least one eval benchmark: {name: {kind, path, image_folder}}")
        return self
