"""What each fusion asks of the experts it fuses, declared per fusion and checked before any model is built.

Torch-free on purpose (this module imports only the spec): ``eaglesearch validate`` checks every candidate trial
against these descriptors without building, or even importing, a model. Each fusion class references its own
descriptor (``Fusion.rules``, e.g. ``LlavaHR.rules is LLAVA_HR``) and :data:`FUSION_RULES` finds it by the
name a ``ModelSpec.fusion`` takes. What a fusion asks of an expert's *family* (being a plain ViT with block access)
is the family's own declaration, passed in as ``is_vit``: a user's own ViT family can lead ``llava_hr`` like clip.

What needs built experts (``fusion_heads`` dividing the query expert's width) is checked when the model is built,
with the same kind of message.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from eaglesearch.spec import ExpertSpec

TiledExperts = Literal["any", "alone", "never"]


@dataclass(frozen=True)
class FusionRules:
    """The constraints of one fusion on its (resolved) experts.

    ``tiled``: where a tiled expert (``resize: tile``, (1 + tiles²)·grid² tokens) may appear: anywhere, only as the
    only expert (its tokens cannot be concatenated on channels with another's grid²), or never. ``query_first``:
    an injection fusion, whose first expert is a low-resolution query and every other expert sees a strictly higher
    resolution (so at least two experts). ``vit_query``: the first expert is run block by block, so it must be a
    plain ViT with block access."""

    name: str
    tiled: TiledExperts = "any"
    query_first: bool = False
    vit_query: bool = False

    def check(self, experts: Sequence[ExpertSpec], is_vit: Callable[[ExpertSpec], bool], vits: Sequence[str]) -> None:
        """``ValueError`` naming the first broken constraint and its fix. ``experts`` are resolved (preset and
        resolution filled in), ``is_vit`` says whether one is a plain ViT with block access, ``vits`` names the
        registered ViT families for the message."""
        got = "+".join(e.label for e in experts)
        tiled = [e.label for e in experts if e.resize == "tile"]
        if self.tiled == "alone" and tiled and len(experts) > 1:
            raise ValueError(f"fusion '{self.name}' cannot mix tiled and other experts ({', '.join(tiled)} in {got}): "
                             "a tiled expert gives (1 + tiles²)·grid² tokens, the others grid²; use fusion "
                             "sequence_append, or resize: interpolate")
        if not self.query_first:
            return
        query = "a low-resolution ViT query expert" if self.vit_query else "a low-resolution query expert"
        if len(experts) < 2:
            raise ValueError(f"fusion '{self.name}' needs {query} first and at least one high-resolution expert; got "
                             f"{got} — add a higher-resolution expert after it (e.g. convnext@256), or use "
                             "channel_concat")
        if self.tiled == "never" and tiled:
            raise ValueError(f"fusion '{self.name}' cannot take tiled experts ({', '.join(tiled)} in {got}); use "
                             "resize: interpolate, or fusion sequence_append")
        first = experts[0]
        if self.vit_query and not is_vit(first):
            preset = f" (its preset '{first.preset}' is not one)" if first.name in vits else ""
            raise ValueError(f"fusion '{self.name}' injects into the blocks of its first expert, which must be a ViT "
                             f"with block access ({', '.join(vits)}); got '{first.name}' first in {got}{preset} — put "
                             "a ViT first")
        assert first.resolution is not None
        low = [e.label for e in experts[1:] if e.resolution is not None and e.resolution <= first.resolution]
        if low:
            raise ValueError(f"fusion '{self.name}' needs every expert after the first to see a higher resolution "
                             f"than {first.label}; not so for {', '.join(low)} in {got} — raise their resolution or "
                             f"lower {first.name}'s")


CHANNEL_CONCAT = FusionRules("channel_concat", tiled="alone")
SEQUENCE_APPEND = FusionRules("sequence_append")
LLAVA_HR = FusionRules("llava_hr", tiled="never", query_first=True, vit_query=True)
MINI_GEMINI = FusionRules("mini_gemini", tiled="never", query_first=True)
DEFORMABLE = FusionRules("deformable", tiled="never", query_first=True)

FUSION_RULES: dict[str, FusionRules] = {
    r.name: r for r in (CHANNEL_CONCAT, SEQUENCE_APPEND, LLAVA_HR, MINI_GEMINI, DEFORMABLE)}
"""Every fusion's rules by its ``ModelSpec.fusion`` name (the torch classes in ``FUSIONS`` reference these)."""
