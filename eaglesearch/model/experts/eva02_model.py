"""EVA-02 experts in torch (declared in ``eva02.py``): the timm EVA-02 with RoPE-aware stage access, and Eagle's
ViTDet detection tower (``eva02_vitdet.py``) with its checkpoint loading."""

from __future__ import annotations

import math
from pathlib import Path

from torch import Tensor, nn

from eaglesearch.model.experts.base import ExpertPreset, VisionExpert
from eaglesearch.model.experts.eva02 import DET_HUB_FILE, VITDET
from eaglesearch.model.experts.eva02_vitdet import EvaViTDet, load_detectron2_checkpoint
from eaglesearch.model.experts.timm_expert import TimmViTExpert
from eaglesearch.model.experts.weights import ensure_hub_reachable, local_checkpoint, offline_message
from eaglesearch.spec import ExpertSpec


class RopeBlock(nn.Module):
    """An EVA block called like a plain ViT block: ``block(x)`` adds the rotary embedding of x's patch grid.

    The grid is ``hw`` when given, else the square whose area is the number of patch tokens (the experts here
    always see square inputs).
    """

    def __init__(self, block: nn.Module, rope: nn.Module, num_prefix_tokens: int) -> None:
        super().__init__()
        self.block = block
        self.rope = rope
        self.num_prefix_tokens = num_prefix_tokens

    def forward(self, x: Tensor, hw: tuple[int, int] | None = None) -> Tensor:
        if hw is None:
            patches = x.shape[1] - self.num_prefix_tokens
            side = math.isqrt(patches)
            if side * side != patches:
                raise ValueError(f"{patches} patch tokens do not make a square grid; call the block with "
                                 "hw=(h, w) from vit_embed for a non-square input")
            hw = (side, side)
        return self.block(x, rope=self.rope.get_embed(shape=hw))


class Eva02Expert(TimmViTExpert):
    """timm ``Eva``: like a timm ViT, but ``_pos_embed`` also returns the RoPE table the blocks take."""

    def vit_embed(self, pixels: Tensor) -> tuple[Tensor, tuple[int, int]]:
        b = self.backbone
        x, _ = b._pos_embed(b.patch_embed(pixels))
        return b.norm_pre(x), self.patch_grid(pixels)

    def vit_blocks(self) -> list[nn.Module]:
        """RoPE-adding wrappers around the expert's own blocks (hold them in a plain list)."""
        b = self.backbone
        if b.rope is None or getattr(b, "rope_mixed", False):
            raise TypeError(f"expert '{self.name}': this EVA configuration has no single shared RoPE table; stage "
                            "access supports EVA-02 with axial RoPE only")
        return [RopeBlock(block, b.rope, self.num_prefix_tokens) for block in b.blocks]


class Eva02DetExpert(VisionExpert):
    """EVA-02 ViTDet backbone (:class:`EvaViTDet`): a (B, dim, R/16, R/16) map; its blocks are what
    ``trainable_blocks`` counts."""

    def __init__(self, name: str, resolution: int, preset: ExpertPreset, backbone: EvaViTDet) -> None:
        super().__init__(name, resolution, backbone.patch_embed.proj.out_channels, backbone.grid, preset.mean,
                         preset.std, preset.resample)
        self.feature_layer = preset.feature_layer
        self.backbone = backbone

    def forward(self, pixels: Tensor) -> Tensor:
        return self.backbone(pixels)

    def freezable_blocks(self) -> list[nn.Module]:
        return list(self.backbone.blocks)


def build_eva02_vitdet(spec: ExpertSpec, preset: ExpertPreset) -> Eva02DetExpert:
    """Random init, a local checkpoint file (detectron2 layout or already converted), or the hub's detection
    checkpoint (``preset.weights``: ``<repo>/<file>``)."""
    assert spec.resolution is not None, "resolve the spec with registry.resolve_expert first"
    where = f"expert '{spec.name}' (preset '{spec.preset}', EVA-02 ViTDet)"
    backbone = EvaViTDet(image_size=spec.resolution, **preset.kwargs)
    if spec.pretrained:
        try:
            path = local_checkpoint(spec.checkpoint)
        except FileNotFoundError as err:
            raise FileNotFoundError(f"{where}: {err}") from None
        if path is None:
            repo, _, file = (spec.checkpoint or preset.weights or "").partition("/eva02/")
            file = f"eva02/{file}" if file else DET_HUB_FILE
            ensure_hub_reachable(repo, where)
            from huggingface_hub import hf_hub_download

            try:
                path = Path(hf_hub_download(repo, file))
            except OSError as err:
                raise RuntimeError(offline_message(where, repo, err)) from None
        load_detectron2_checkpoint(backbone, path, where)
    return Eva02DetExpert(spec.name, spec.resolution, preset, backbone)


def build_eva02(spec: ExpertSpec, preset: ExpertPreset) -> VisionExpert:
    """The ViTDet backbone for presets of that architecture, else the timm EVA-02."""
    if preset.architecture == VITDET:
        return build_eva02_vitdet(spec, preset)
    return Eva02Expert.from_spec(spec, preset)
