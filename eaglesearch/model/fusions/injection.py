"""What the three injection fusions share: a low-resolution query expert and high-resolution auxiliary maps.

LLaVA-HR, Mini-Gemini and deformable attention all keep the *first* expert's tokens as the visual tokens (so
N = grid², as channel concatenation) and inject information from the *other* experts' higher-resolution feature
maps into them. :class:`QueryAuxSplit` holds the widths and resolutions both sides need; :func:`check_heads`
checks a multi-head split of the query width.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from eaglesearch.model.experts.base import VisionExpert
from eaglesearch.model.fusions.base import Fusion, token_width
from eaglesearch.spec import ModelSpec


@dataclass(frozen=True)
class QueryAuxSplit:
    """The query expert (index 0) and the auxiliary experts (1…) of an injection fusion, by their sizes."""

    query_width: int  # width of the query expert's grid tokens
    aux_width: int  # channels of the auxiliary maps once concatenated
    aux_side: int  # the largest native map side among the auxiliary experts

    @classmethod
    def of(cls, spec: ModelSpec, experts: Sequence[VisionExpert]) -> QueryAuxSplit:
        if len(experts) < 2:
            raise ValueError(f"fusion '{spec.fusion}' needs a low-resolution query expert first and at least one "
                             f"high-resolution expert; got {spec.label}")
        aux = experts[1:]
        return cls(query_width=token_width(experts[0], spec.grid), aux_width=sum(e.channels for e in aux),
                   aux_side=max(e.native_grid for e in aux))


class InjectionFusion(Fusion):
    """A fusion that reads the query expert's grid tokens and the auxiliary experts' native maps: the query's norm
    is over its grid-token width, each auxiliary expert's over its map channels."""

    def norm_widths(self, spec: ModelSpec, experts: Sequence[VisionExpert]) -> list[int]:
        return [token_width(experts[0], spec.grid), *(e.channels for e in experts[1:])]


def check_heads(fusion: str, width: int, heads: int) -> None:
    """``heads`` must divide the query width (each head gets ``width // heads`` channels)."""
    if width % heads:
        divisors = [h for h in range(1, min(width, 64) + 1) if width % h == 0]
        raise ValueError(f"fusion '{fusion}': fusion_heads {heads} does not divide the query expert's token width "
                         f"{width}; choose one of {divisors}")
