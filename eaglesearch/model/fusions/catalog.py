"""What each fusion strategy is, without torch: its constraints and its visual-token count, declared once.

:data:`FUSION_KINDS` maps every ``ModelSpec.fusion`` name to a :class:`FusionKind`: the torch class that implements
it (``"module:Class"``, imported only when a model is built), how many tokens it makes, and what it requires of its
experts. ``model/validate.py`` checks a spec against these attributes and ``trial/preflight.py`` counts tokens with
:func:`visual_tokens`, so ``eaglesearch validate`` never imports torch for the fusions that ``needs_built_experts``
says can be checked from their declarations alone; each :class:`~eaglesearch.model.fusions.base.Fusion` subclass
reads its own kind (``Fusion.kind``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from eaglesearch.spec import ExpertSpec, ModelSpec

TokenRule = Literal["shared", "appended", "query"]


@dataclass(frozen=True)
class FusionKind:
    """One fusion strategy, as validation sees it.

    ``tokens``: how many visual tokens per image: ``shared`` every expert gives the same count, which is the output's
    (channel concatenation); ``appended`` the sum of the experts' counts; ``query`` the first expert's grid², the
    others only inform it. ``query_first``: the first expert is a low-resolution query and every other one must see
    a strictly higher resolution; tiled experts are refused. ``vit_query``: the query expert is run block by block, so
    its family must be a plain ViT (``ExpertFamily.vit``). ``tiles_alone``: a tiled expert is allowed only as the sole
    expert. ``needs_built_experts``: some constraint reads built experts (e.g. ``fusion_heads`` dividing the query
    width), so a full check builds them on ``meta`` (which imports torch).
    """

    name: str
    implementation: str
    tokens: TokenRule
    query_first: bool = False
    vit_query: bool = False
    tiles_alone: bool = False
    needs_built_experts: bool = False


FUSION_KINDS: dict[str, FusionKind] = {kind.name: kind for kind in (
    FusionKind("channel_concat", "eaglesearch.model.fusions.channel_concat:ChannelConcat", tokens="shared",
               tiles_alone=True),
    FusionKind("sequence_append", "eaglesearch.model.fusions.sequence_append:SequenceAppend", tokens="appended"),
    FusionKind("llava_hr", "eaglesearch.model.fusions.llava_hr:LlavaHR", tokens="query", query_first=True,
               vit_query=True, needs_built_experts=True),
    FusionKind("mini_gemini", "eaglesearch.model.fusions.mini_gemini:MiniGemini", tokens="query", query_first=True,
               needs_built_experts=True),
    FusionKind("deformable", "eaglesearch.model.fusions.deformable:DeformableAttention", tokens="query",
               query_first=True, needs_built_experts=True),
)}


def fusion_kind(name: str) -> FusionKind:
    """The kind named ``name``; ``ValueError`` listing the known names otherwise."""
    try:
        return FUSION_KINDS[name]
    except KeyError:
        raise ValueError(f"unknown fusion '{name}'; available: {', '.join(sorted(FUSION_KINDS))}") from None


def expert_token_count(expert: ExpertSpec, grid: int) -> int:
    """Tokens one expert gives on a ``grid``: grid², or (1 + tiles²)·grid² when tiled (``tiling.py``)."""
    views = 1 + expert.tiles**2 if expert.resize == "tile" else 1
    return views * grid * grid


def visual_tokens(spec: ModelSpec) -> int:
    """Visual tokens per image of ``spec``'s fusion, from the spec alone (what ``Fusion.num_tokens`` will be).

    ``ValueError`` when a ``shared`` fusion's experts give different counts (``validate_model`` says why first)."""
    counts = [expert_token_count(e, spec.grid) for e in spec.experts]
    rule = fusion_kind(spec.fusion).tokens
    if rule == "appended":
        return sum(counts)
    if rule == "query":
        return spec.grid * spec.grid
    if len(set(counts)) != 1:
        raise ValueError(f"fusion '{spec.fusion}' needs the same number of tokens from every expert; {spec.label} "
                         f"gives {counts}")
    return counts[0]
