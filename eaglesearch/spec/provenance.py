"""Where a trial's value was written: a grid factor, the search space's ``overrides``, or the recipe.

A trial is the recipe, the space's ``overrides`` merged over it, and what the strategy varies. When one of its
fields is invalid the user has to fix the place that wrote it, so an error about ``model.grid`` is reported as
``overrides.model.grid`` (space file) when the overrides set it, as ``model.grid`` in the recipe file when the recipe
did, and as the grid factor or strategy entry when the strategy did.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from eaglesearch.spec.yaml_source import Loc, YamlDocument

EXPERTS_PATH: Loc = ("model", "experts")


def _stage_names(base: Mapping[str, Any]) -> list[str]:
    stages = base.get("train", {}).get("stages") if isinstance(base.get("train"), Mapping) else None
    if not isinstance(stages, list):
        return []
    return [s.get("name", "") if isinstance(s, Mapping) else "" for s in stages]


def named_loc(base: Mapping[str, Any], loc: Loc) -> tuple[str | int, ...]:
    """``loc`` with a stage index replaced by its name (``train.stages.0.lr`` → ``train.stages.sft.lr``), as grid
    factors and overrides write it."""
    names = _stage_names(base)
    if len(loc) > 2 and loc[:2] == ("train", "stages") and isinstance(loc[2], int) and loc[2] < len(names):
        return loc[:2] + (names[loc[2]],) + loc[3:]
    return loc


def _written_at(data: Any, path: tuple[str | int, ...]) -> Loc | None:
    """The longest prefix of ``path`` that ``data`` (parsed YAML) spells out, if it reaches a value that decides
    ``path`` (the whole path, or a scalar/list that replaced the subtree); ``None`` when ``data`` does not set it."""
    node = data
    walked: list[str | int] = []
    for i, part in enumerate(path):
        in_mapping = isinstance(node, Mapping) and part in node
        if in_mapping or (isinstance(node, list) and isinstance(part, int) and part < len(node)):
            node = node[part]
        elif isinstance(node, Mapping) and walked[-1:] == ["train"] and path[-1] in node and i < len(path) - 1:
            return (*walked, path[-1])  # ``train: {lr: ...}``: a stage setting written for every stage
        else:
            return None
        walked.append(part)
        if not isinstance(node, (Mapping, list)) and i < len(path) - 1:
            return tuple(walked)
    return tuple(walked)


@dataclass(frozen=True)
class TrialSources:
    """The files a search's trials are built from, to point an error about a trial field at its source."""

    space: YamlDocument
    recipe: YamlDocument
    overrides: Mapping[str, Any]
    base: Mapping[str, Any]  # recipe + overrides, as the factory merges them (for stage names)

    def factor_for(self, loc: Loc, assignments: Mapping[str, Any]) -> str | None:
        """The grid factor that set ``loc`` (or a field above it), if any."""
        named = named_loc(self.base, loc)
        for factor in assignments:
            parts: tuple[str | int, ...] = EXPERTS_PATH if factor == "experts" else tuple(factor.split("."))
            if named[:len(parts)] == parts or parts[:len(named)] == named:
                return factor
            if len(parts) == 2 and parts[0] == "train" and named[:2] == ("train", "stages") and named[3:] == parts[1:]:
                return factor  # ``train.lr``: a stage setting for every stage
        return None

    def place(self, loc: Loc, assignments: Mapping[str, Any], entry: Loc) -> tuple[YamlDocument, Loc]:
        """The document and location that wrote trial field ``loc``; ``entry`` (the strategy entry the trial was
        built from) when neither a factor, the overrides nor the recipe spells it out."""
        factor = self.factor_for(loc, assignments)
        if factor is not None:
            return self.space, ("strategy", "factors", factor)
        if loc[:2] == EXPERTS_PATH and entry[:2] in (("strategy", "base"), ("strategy", "candidates")):
            return self.space, entry  # greedy: the experts come from this base/candidate entry
        named = named_loc(self.base, loc)
        written = _written_at(self.overrides, named) or _written_at(self.overrides, loc)
        if written is not None:
            return self.space, ("overrides", *written)
        written = _written_at(self.recipe.data, named) or _written_at(self.recipe.data, loc)
        if written is not None and written in self.recipe.lines:
            return self.recipe, written
        return self.space, entry
