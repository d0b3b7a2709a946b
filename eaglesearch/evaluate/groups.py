"""Group averages of benchmark scores, on the paper's scale.

The Eagle/Cambrian tables (``reference/eagle.md`` §5(f)) report four group averages, each a plain mean of its
members after putting every member on a 0-100 scale:

- Knowledge Avg = mean(SQA-IMG, MMMU, MathVista, AI2D)
- General Avg   = mean(MME/20, MMBench, SEED-IMG, GQA)
- OCR&Doc Avg   = mean(ChartQA, OCRBench/10, TextVQA, DocVQA)
- Vision Avg    = mean(MMVP, RealWorldQA)

Here a benchmark's score is its metric's primary value. Fraction metrics (accuracy in [0, 1]) are multiplied by
100 when the group is a ``percent`` group; the two benchmarks with a native scale are divided instead: MME's primary
is the perception score (0-2000, so /20) and OCRBench's is the number correct out of 1000 (so /10).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

_FRACTION_TOL = 1e-9


@dataclass(frozen=True)
class AggregateGroup:
    """A named average of benchmark scores.

    ``members``: benchmark names, in display order. ``scale``: a divisor per member that reports on its own native
    scale (``{"mme": 20, "ocrbench": 10}``); a member with a divisor is never multiplied by 100. ``percent``: when
    true, every member *without* a divisor is a fraction in [0, 1] and is multiplied by 100 before averaging (a value
    outside [0, 1] is an error, since it means the metric already reports percent). When false, members are averaged
    as given (divided by their divisor, if any).
    """

    name: str
    members: tuple[str, ...]
    scale: Mapping[str, float] = field(default_factory=dict, hash=False)
    percent: bool = False

    def __post_init__(self) -> None:
        members = tuple(self.members)
        if not members:
            raise ValueError(f"aggregate group {self.name!r} has no members")
        duplicates = sorted({m for m in members if members.count(m) > 1})
        if duplicates:
            raise ValueError(f"aggregate group {self.name!r} lists {', '.join(duplicates)} more than once")
        unknown = sorted(set(self.scale) - set(members))
        if unknown:
            raise ValueError(f"aggregate group {self.name!r}: scale names {', '.join(unknown)}, which are not members "
                             f"(members: {', '.join(members)})")
        scale: dict[str, float] = {}
        for bench, divisor in self.scale.items():
            divisor = float(divisor)
            if not math.isfinite(divisor) or divisor <= 0:
                raise ValueError(f"aggregate group {self.name!r}: divisor for {bench} must be a positive number, "
                                 f"got {divisor}")
            scale[bench] = divisor
        object.__setattr__(self, "members", members)
        object.__setattr__(self, "scale", MappingProxyType(scale))


def member_value(group: AggregateGroup, benchmark: str, score: float) -> float:
    """One member's contribution on the group's scale.

    ``score / scale[benchmark]`` for a member with a divisor; ``score * 100`` for any other member of a percent
    group (``score`` must lie in [0, 1]); ``score`` otherwise.
    """
    if benchmark not in group.members:
        raise KeyError(f"{benchmark} is not a member of aggregate group {group.name!r} "
                       f"(members: {', '.join(group.members)})")
    value = float(score)
    if not math.isfinite(value):
        raise ValueError(f"aggregate group {group.name!r}: {benchmark} scored {value}")
    divisor = group.scale.get(benchmark)
    if divisor is not None:
        return value / divisor
    if group.percent:
        if not -_FRACTION_TOL <= value <= 1 + _FRACTION_TOL:
            raise ValueError(f"aggregate group {group.name!r} multiplies fraction scores by 100, but {benchmark} "
                             f"scored {value}, which is not in [0, 1]; give {benchmark} a divisor in `scale` if its "
                             f"metric reports on another scale")
        return value * 100.0
    return value


def combine(group: AggregateGroup, scores: Mapping[str, float]) -> float:
    """The group average: the arithmetic mean over ``group.members`` of :func:`member_value`.

    ``scores`` maps benchmark name to its primary score; names that are not members are ignored, a missing member is
    a ``KeyError`` naming it.
    """
    missing = [m for m in group.members if m not in scores]
    if missing:
        raise KeyError(f"aggregate group {group.name!r} needs {', '.join(missing)}, which were not scored "
                       f"(scored: {', '.join(sorted(scores)) or 'none'})")
    return sum(member_value(group, m, scores[m]) for m in group.members) / len(group.members)


def mean_group(names: Sequence[str], name: str = "Avg") -> AggregateGroup:
    """The plain mean of the named benchmarks' scores, as given (no divisor, no percent)."""
    return AggregateGroup(name=name, members=tuple(names))


PAPER_GROUPS: Mapping[str, AggregateGroup] = MappingProxyType({
    "knowledge": AggregateGroup("Knowledge Avg", ("scienceqa", "mmmu", "mathvista", "ai2d"), percent=True),
    "general": AggregateGroup("General Avg", ("mme", "mmbench", "seed", "gqa"), {"mme": 20.0}, percent=True),
    "ocr_doc": AggregateGroup("OCR&Doc Avg", ("chartqa", "ocrbench", "textvqa", "docvqa"), {"ocrbench": 10.0},
                              percent=True),
    "vision": AggregateGroup("Vision Avg", ("mmvp", "realworldqa"), percent=True),
})
"""The four group averages of the Eagle/Cambrian main table (``reference/eagle.md`` §5(f)), keyed by short id."""
