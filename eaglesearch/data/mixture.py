"""A stage's training samples from its mixture's sources: shares, caps, repeats, seeded and reproducible.

The rules (``spec/sources.py`` states them for users): a source's *pool* is its usable samples, capped at
``max_samples`` and listed ``repeats`` times; the mixture has as many samples as all pools together; with no
``ratio`` anywhere each source contributes its pool × ``weight`` (renormalised), otherwise a ratio is the
source's fraction and sources without one share the rest by pool × weight. Counts are rounded by largest
remainder, so they add up to the mixture's size exactly.

:func:`realise` returns *indices* into the stage's dataset (its kept samples, every source's in stored order),
and is a pure function of the sources, their sample counts, the trial seed and the mixture's name: a killed
trial rebuilds the same list and ``BatchStream`` resumes at the same sample. Per source, the draw is seeded by
``(seed, mixture, source)``: changing one source's ratio changes only the sources whose counts change.

* fewer samples than the pool: a seeded random subset (kept in stored order);
* more: whole passes over the pool, then a seeded random subset for the remainder (no sample twice more often
  than another);
* a cap below the source's size: a seeded random subset of that size (Cambrian-1's per-source cap), drawn first.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from eaglesearch.spec.sources import SourceSpec


@dataclass(frozen=True)
class SourceShare:
    """What one source contributes to a stage: samples it has (usable), its pool, its share and realised count."""

    name: str
    available: int
    pool: int
    share: float
    samples: int

    @property
    def passes(self) -> float:
        """How many times, on average, each available sample appears in the realised mixture."""
        return self.samples / self.available if self.available else 0.0


def is_natural(specs: Mapping[str, SourceSpec]) -> bool:
    """True when nothing reshapes the sources: every sample once, as read (no ratio, weight, cap or repeats)."""
    return all(s.ratio is None and s.weight is None and s.max_samples is None and s.repeats == 1
               for s in specs.values())


def shares(specs: Mapping[str, SourceSpec], available: Mapping[str, int], mixture: str = "train"
           ) -> list[SourceShare]:
    """Each source's share and realised count, given how many usable samples each has. ``ValueError`` (naming
    the source) when a source with a positive share has no usable samples, or the mixture is empty."""
    pools = {n: min(available[n], s.max_samples or available[n]) * s.repeats for n, s in specs.items()}
    total = sum(pools.values())
    ratios = {n: s.ratio for n, s in specs.items() if s.ratio is not None}
    weighted = {n: pools[n] * (specs[n].weight if specs[n].weight is not None else 1.0)
                for n in specs if n not in ratios}
    fraction: dict[str, float] = {}
    if not weighted:
        norm = sum(ratios.values())
        fraction = {n: r / norm for n, r in ratios.items()} if norm > 0 else dict.fromkeys(ratios, 0.0)
    else:
        rest = max(0.0, 1.0 - sum(ratios.values()))
        mass = sum(weighted.values())
        fraction = {**ratios, **{n: (rest * w / mass if mass > 0 else 0.0) for n, w in weighted.items()}}
    empty = [n for n in specs if fraction[n] > 0 and pools[n] == 0]
    if empty:
        raise ValueError(f"mixture '{mixture}': source(s) {', '.join(empty)} have no usable samples but a share "
                         f"of the mixture (every record was skipped or the source is empty); fix the source, or give "
                         "it ratio: 0")
    if total == 0 or sum(fraction.values()) <= 0:
        raise ValueError(f"mixture '{mixture}' has no samples to train on: every source is empty or has a zero "
                         "share; check the sources' paths and ratios")
    counts = _largest_remainder({n: fraction[n] * total for n in specs}, total)
    return [SourceShare(name=n, available=available[n], pool=pools[n], share=fraction[n], samples=counts[n])
            for n in specs]


def _largest_remainder(exact: Mapping[str, float], total: int) -> dict[str, int]:
    floors = {n: math.floor(v + 1e-9) for n, v in exact.items()}
    left = total - sum(floors.values())
    order = sorted(exact, key=lambda n: (-(exact[n] - floors[n]), list(exact).index(n)))
    for n in order[:max(0, left)]:
        floors[n] += 1
    return floors


def realise(specs: Mapping[str, SourceSpec], by_source: Mapping[str, Sequence[int]], seed: int, mixture: str
            ) -> tuple[list[int], list[SourceShare]]:
    """The stage's sample list as indices (``by_source``: each source's indices into the dataset, stored order),
    and each source's share. A natural mixture is every index once, in dataset order (as before mixtures)."""
    available = {n: len(by_source.get(n, ())) for n in specs}
    plan = shares(specs, available, mixture)
    if is_natural(specs):
        return sorted(i for n in specs for i in by_source.get(n, ())), plan
    out: list[int] = []
    for share in plan:
        rng = random.Random(f"eaglesearch.mixture/{seed}/{mixture}/{share.name}")
        items = list(by_source.get(share.name, ()))
        cap = specs[share.name].max_samples
        if cap is not None and cap < len(items):
            items = [items[i] for i in sorted(rng.sample(range(len(items)), cap))]
        pool = items * specs[share.name].repeats
        whole, part = divmod(share.samples, len(pool)) if pool else (0, 0)
        out += pool * whole + [pool[i] for i in sorted(rng.sample(range(len(pool)), part))]
    return out, plan
