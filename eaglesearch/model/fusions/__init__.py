"""Fusion strategies: how the experts' features become one sequence of visual tokens (reference/eagle.md §2).

Five strategies, one module each, registered by the names a ``ModelSpec.fusion`` takes:

* ``channel_concat`` (Eagle): grid tokens concatenated on channels, one shared projector;
* ``sequence_append``: per-expert projectors, token sequences appended (owns the projection);
* ``llava_hr``: MR-adapters inject the high-resolution experts into the first (ViT) expert between its blocks;
* ``mini_gemini``: the first expert's tokens cross-attend the high-resolution maps in co-located windows;
* ``deformable``: as mini_gemini, with deformable sampling around each token's cell centre.

Start from :func:`build_fusion`. What each fusion asks of its experts is its class's ``rules`` (a torch-free
descriptor in ``rules.py``), which :func:`eaglesearch.model.validate.validate_model` checks without building.
"""

from __future__ import annotations

from collections.abc import Sequence

from eaglesearch.model.experts.base import VisionExpert
from eaglesearch.model.fusions.base import Fusion, expert_tokens
from eaglesearch.model.fusions.channel_concat import ChannelConcat
from eaglesearch.model.fusions.deformable import DeformableAttention
from eaglesearch.model.fusions.llava_hr import LlavaHR
from eaglesearch.model.fusions.mini_gemini import MiniGemini
from eaglesearch.model.fusions.sequence_append import SequenceAppend
from eaglesearch.spec import ModelSpec

FUSIONS: dict[str, type[Fusion]] = {
    "channel_concat": ChannelConcat,
    "sequence_append": SequenceAppend,
    "llava_hr": LlavaHR,
    "mini_gemini": MiniGemini,
    "deformable": DeformableAttention,
}


def build_fusion(spec: ModelSpec, experts: Sequence[VisionExpert], lm_dim: int) -> Fusion:
    """The fusion ``spec.fusion`` for ``experts`` (built from ``spec.experts``, in order) and an LM of width
    ``lm_dim``."""
    if spec.fusion not in FUSIONS:
        raise ValueError(f"unknown fusion '{spec.fusion}'; available: {', '.join(sorted(FUSIONS))}")
    return FUSIONS[spec.fusion](spec, experts, lm_dim)


__all__ = [
    "FUSIONS", "ChannelConcat", "DeformableAttention", "Fusion", "LlavaHR", "MiniGemini", "SequenceAppend",
    "build_fusion", "expert_tokens",
]
