"""What ``eaglesearch plan`` says about the data: for each stage of the planned trials, its mixture's sources,
their sizes, shares and the samples each contributes, and the steps that makes for a stage given in epochs.

A source's size is counted when that is cheap and the files are here (``DataSource.count``), else taken from its
declared ``size`` (the paper recipes declare the published sizes, so a paper-scale mixture is sized before its
files are downloaded). Sizes ignore samples the data policy would skip: the trial logs the realised counts
(``data/<stage>/<source>/samples``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from eaglesearch.data.mixture import SourceShare, shares
from eaglesearch.data.sources import SourceContext, build_source
from eaglesearch.spec import TrialSpec
from eaglesearch.spec.sources import SourceSpec


@dataclass(frozen=True)
class SourcePlan:
    name: str
    format: str
    size: int | None
    sized_by: str  # "counted", "declared" or "unknown"
    share: SourceShare | None  # None while some source's size is unknown


@dataclass(frozen=True)
class MixturePlan:
    stage: str
    mixture: str
    sources: list[SourcePlan]
    steps: int | None  # the stage's optimizer steps (None: given in epochs of a mixture of unknown size)

    @property
    def total(self) -> int | None:
        if any(s.share is None for s in self.sources):
            return None
        return sum(s.share.samples for s in self.sources if s.share is not None)


def _size(name: str, trial: TrialSpec, spec: SourceSpec, workdir: Path) -> tuple[int | None, str]:
    try:
        counted = build_source(name, spec, SourceContext(data=trial.data, data_dir=workdir)).count()
    except (OSError, ValueError):
        counted = None
    if counted is not None:
        return counted, "counted"
    if spec.size is not None:
        return spec.size, "declared"
    return None, "unknown"


def plan_mixtures(trials: list[TrialSpec], workdir: Path) -> list[MixturePlan]:
    """One plan per distinct (stage, mixture declaration) among ``trials`` (a ratio grid: one per ratio)."""
    seen: dict[str, MixturePlan] = {}
    for trial in trials:
        for stage in trial.train.active:
            specs = trial.data.mixture(stage.data) or {}
            key = json.dumps([stage.name, stage.steps, stage.epochs, stage.batch_size,
                              {n: s.model_dump(mode="json") for n, s in specs.items()},
                              trial.data.synthetic.model_dump(mode="json") if trial.data.synthetic else None],
                             sort_keys=True)
            if key in seen:
                continue
            sized = {n: _size(n, trial, s, workdir) for n, s in specs.items()}
            drawn: dict[str, SourceShare] = {}
            if all(size is not None for size, _ in sized.values()):
                try:
                    drawn = {s.name: s for s in shares(specs, {n: v[0] or 0 for n, v in sized.items()}, stage.data)}
                except ValueError:
                    drawn = {}
            rows = [SourcePlan(name=n, format=s.format, size=sized[n][0], sized_by=sized[n][1], share=drawn.get(n))
                    for n, s in specs.items()]
            total = sum(d.samples for d in drawn.values()) if drawn else None
            steps = stage.steps if stage.steps is not None else (stage.total_steps(total) if total else None)
            seen[key] = MixturePlan(stage=stage.name, mixture=stage.data, sources=rows, steps=steps)
    return list(seen.values())
