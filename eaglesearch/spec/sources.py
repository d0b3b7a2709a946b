"""Named data sources and the mixtures they form (``data.train``, ``data.caption``, ``data.mixtures``).

A mixture is a mapping ``source name -> SourceSpec``::

    data:
      train:
        llava_665k: {format: llava, path: data/llava_v1_5_mix665k.json, image_folder: data/images, size: 665000}
        docvqa:     {format: hf_disk, path: data/docvqa_train, ratio: 0.1}
        chartqa:    {format: jsonl, path: data/chartqa.jsonl, image_folder: data/chartqa, max_samples: 20000}

How many samples each source contributes to a stage (``eaglesearch/data/mixture.py``): a source's *pool* is its
readable samples, capped at ``max_samples`` (a seeded random subset, Cambrian-1's per-source cap) and listed
``repeats`` times; the mixture has as many samples as all pools together, whatever the shares, so a stage given in
``epochs`` runs the same number of steps for every ratio (trials compare at equal compute). Shares:

* no ``ratio`` anywhere: each source contributes its pool (``weight`` scales that natural share);
* ``ratio`` r: the source is that fraction of the mixture; sources without one share what the ratios leave, in
  proportion to pool × weight; when every source sets a ratio they are normalised (0.2/0.2 is half and half).

The format (how a source is read) is checked against the source registry (``eaglesearch/data/sources``) when a
search is validated; this module checks what the file says about itself. Source names appear in metric names
(``data/<stage>/<source>/samples``), so they are restricted to letters, digits, ``_`` and ``-``.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from eaglesearch.spec.base import SpecModel

SOURCE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,63}$")
SHARE_TOLERANCE = 1e-9
SHARE_FIELDS = ("ratio", "weight", "max_samples", "repeats", "size")
"""How much of a source a mixture uses (and, ``size``, what plan assumes): not what the source holds."""
# Columns a table source (hf_disk, parquet) reads, and their default names.
TableColumn = Literal["id", "conversations", "image"]


class SourceSpec(SpecModel):
    """One named source of a mixture: where its records are, how they are read, and its share."""

    format: str = Field(description="how the source is read: synthetic, synthetic_captions, llava (json), jsonl, "
                        "hf_disk (datasets.save_to_disk folder), parquet, webdataset (tar shards)")
    path: str | None = Field(default=None, description="the file, folder or shard pattern (all formats but synthetic)")
    image_folder: str | None = Field(default=None, description="folder that relative image paths are read from")
    tasks: tuple[str, ...] | None = Field(default=None, min_length=1,
                                          description="synthetic formats: the generator's tasks this source holds")
    columns: dict[TableColumn, str] = Field(default_factory=dict,
                                            description="table formats: column names when not id/conversations/image")
    size: int | None = Field(default=None, gt=0, description="samples the source holds as published; `plan` sizes "
                             "the mixture from it when the files are not on this machine (not part of a share)")
    ratio: float | None = Field(default=None, ge=0, le=1, description="fraction of the mixture from this source")
    weight: float | None = Field(default=None, ge=0, description="multiplier on the source's natural share")
    max_samples: int | None = Field(default=None, description="cap: a seeded random subset of at most this many")
    repeats: int = Field(default=1, ge=1, description="the (capped) pool listed this many times")

    @field_validator("max_samples")
    @classmethod
    def _cap(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError(f"max_samples {value} keeps nothing; give at least 1, or drop the source with ratio: 0")
        return value

    @model_validator(mode="after")
    def _one_share(self) -> SourceSpec:
        if self.ratio is not None and self.weight is not None:
            raise ValueError("give ratio (a fraction of the mixture) or weight (a multiplier on the natural share), "
                             "not both")
        return self


def check_mixture(name: str, sources: dict[str, SourceSpec]) -> dict[str, SourceSpec]:
    """The mixture's own rules, each a ``ValueError`` naming the mixture and the fix."""
    where = f"data.{name}" if name in ("train", "caption") else f"data.mixtures.{name}"
    if not sources:
        raise ValueError(f"{where} names no sources; give at least one {{name: {{format, path, ...}}}}")
    bad = [s for s in sources if not SOURCE_NAME.match(s)]
    if bad:
        raise ValueError(f"{where}: source name(s) {', '.join(map(repr, bad))} must start with a letter and hold only "
                         "letters, digits, '_' and '-' (they become metric names)")
    ratios = {s: spec.ratio for s, spec in sources.items() if spec.ratio is not None}
    rest = [s for s in sources if s not in ratios]
    total = sum(ratios.values())
    if rest and total > 1 + SHARE_TOLERANCE:
        raise ValueError(f"{where}: the ratios add up to {total:g}, more than the whole mixture, and "
                         f"{', '.join(rest)} set none; lower them, or give every source a ratio (then they are "
                         "normalised)")
    if not rest and total <= 0:
        raise ValueError(f"{where}: every ratio is 0, so the mixture is empty; give at least one source a ratio "
                         "above 0")
    if rest and all(sources[s].weight == 0 for s in rest) and total <= 0:
        raise ValueError(f"{where}: every share is 0 (ratios and weights), so the mixture is empty; give at least "
                         "one source a positive ratio or weight")
    return sources


def legacy_split(raw: Any) -> bool:
    """True for the single-file form ``{json_path, image_folder}`` (a one-source LLaVA mixture)."""
    return isinstance(raw, dict) and isinstance(raw.get("json_path"), str)


def unknown_source_check(where: str, raw: Any) -> None:
    """A factor or override that sets a field of a source nobody declared creates a mapping without ``format``:
    name the mistake instead of pydantic's 'format: required'."""
    if not isinstance(raw, dict) or legacy_split(raw):
        return
    declared = [k for k, v in raw.items() if isinstance(v, dict) and "format" in v]
    for name, value in raw.items():
        if isinstance(value, dict) and "format" not in value and declared:
            raise ValueError(f"{where} has no source '{name}' (only {', '.join(sorted(value))} is set for it); "
                             f"declared sources: {', '.join(declared)}. A factor or override can only change a "
                             "declared source; declare new ones with a format")
