"""Fusion strategies: how the experts' features become one sequence of visual tokens (reference/eagle.md §2).

Five strategies, one module each, registered by the names a ``ModelSpec.fusion`` takes:

* ``channel_concat`` (Eagle): grid tokens concatenated on channels, one shared projector;
* ``sequence_append``: per-expert projectors, token sequences appended (owns the projection);
* ``llava_hr``: MR-adapters inject the high-resolution experts into the first (ViT) expert between its blocks;
* ``mini_gemini``: the first expert's tokens cross-attend the high-resolution maps in co-located windows;
* ``deformable``: as mini_gemini, with deformable sampling around each token's cell centre.

Every fusion reads each expert's features through its per-expert norm first (``ModelSpec.fusion_norm``:
``none`` / ``layernorm`` / ``rmsnorm`` / ``standardize``, :mod:`eaglesearch.model.fusions.norm`).

Start from :func:`build_fusion`; which combinations can be built is checked cheaply by
:func:`eaglesearch.model.validate.validate_model` from each strategy's declaration in ``catalog.py`` (no torch). The
torch classes are imported when a fusion is built or first named here.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from eaglesearch.model.fusions.catalog import FUSION_KINDS, FusionKind, fusion_kind
from eaglesearch.spec import ModelSpec

if TYPE_CHECKING:
    from eaglesearch.model.experts.base import VisionExpert
    from eaglesearch.model.fusions.base import Fusion, expert_tokens
    from eaglesearch.model.fusions.channel_concat import ChannelConcat
    from eaglesearch.model.fusions.deformable import DeformableAttention
    from eaglesearch.model.fusions.llava_hr import LlavaHR
    from eaglesearch.model.fusions.mini_gemini import MiniGemini
    from eaglesearch.model.fusions.sequence_append import SequenceAppend


def fusion_class(name: str) -> type[Fusion]:
    """The torch class of fusion ``name`` (imported now); ``ValueError`` for an unknown name."""
    module, _, attribute = fusion_kind(name).implementation.partition(":")
    return getattr(importlib.import_module(module), attribute)


def build_fusion(spec: ModelSpec, experts: Sequence[VisionExpert], lm_dim: int) -> Fusion:
    """The fusion ``spec.fusion`` for ``experts`` (built from ``spec.experts``, in order) and an LM of width
    ``lm_dim``."""
    return fusion_class(spec.fusion)(spec, experts, lm_dim)


_CLASSES = {"ChannelConcat": "channel_concat", "DeformableAttention": "deformable", "LlavaHR": "llava_hr",
            "MiniGemini": "mini_gemini", "SequenceAppend": "sequence_append"}


def __getattr__(name: str) -> Any:
    """``FUSIONS`` (name → class) and the torch classes, imported on first access."""
    if name == "FUSIONS":
        return {n: fusion_class(n) for n in FUSION_KINDS}
    if name in _CLASSES:
        return fusion_class(_CLASSES[name])
    if name in ("Fusion", "expert_tokens"):
        return getattr(importlib.import_module("eaglesearch.model.fusions.base"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FUSIONS", "FUSION_KINDS", "ChannelConcat", "DeformableAttention", "Fusion", "FusionKind", "LlavaHR", "MiniGemini",
    "SequenceAppend", "build_fusion", "expert_tokens", "fusion_class", "fusion_kind",
]
