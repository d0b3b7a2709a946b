"""Experts backed by a timm model: the common implementation, and the plain-ViT one with stage access.

:class:`TimmExpert` reads the last block's output without the final norm (layers after it are pruned so every
parameter is used). :class:`TimmViTExpert` adds, for timm ``VisionTransformer`` models (CLIP, SigLIP, DINOv2), the
stage access fusions need: ``vit_embed`` (patch embedding + position embedding + prefix tokens + pre-norm, i.e. the
input of block 0), ``vit_blocks`` and ``vit_to_map``. :class:`ConvNeXtExpert` and :class:`SamExpert` are the
ConvNeXt and SAM families' own readings (stages as blocks; the neck output). :func:`create_timm_backbone` builds the timm model with random
init, a preset's hub weights, or a local ``checkpoint:`` file.
"""

from __future__ import annotations

from typing import Any

import timm
from torch import Tensor, nn

from eaglesearch.model.experts.base import ExpertPreset, VisionExpert
from eaglesearch.model.experts.weights import ensure_hub_reachable, local_checkpoint, offline_message
from eaglesearch.spec import ExpertSpec


class TimmExpert(VisionExpert):
    """An expert wrapping a timm backbone; by default it reads the last block's output without the final norm."""

    def __init__(self, name: str, resolution: int, preset: ExpertPreset, backbone: nn.Module) -> None:
        info = backbone.feature_info[-1]
        channels, stride = self.output_channels(backbone), int(info["reduction"])
        if resolution % stride:
            raise ValueError(f"expert '{name}': resolution {resolution} is not a multiple of its stride {stride}")
        super().__init__(name, resolution, channels, resolution // stride, preset.mean, preset.std, preset.resample)
        self.feature_layer = preset.feature_layer
        self.prepare(backbone)
        self.backbone = backbone

    @staticmethod
    def output_channels(backbone: nn.Module) -> int:
        return int(backbone.feature_info[-1]["num_chs"])

    @staticmethod
    def prepare(backbone: nn.Module) -> None:
        """Drop the layers after the feature layer (final norm, head) so every parameter is used."""
        backbone.prune_intermediate_layers(indices=1, prune_norm=True, prune_head=True)

    def forward(self, pixels: Tensor) -> Tensor:
        (features,) = self.backbone.forward_intermediates(pixels, indices=1, norm=False, intermediates_only=True)
        return features

    @classmethod
    def from_spec(cls, spec: ExpertSpec, preset: ExpertPreset) -> TimmExpert:
        """Build from a resolved spec: random init, the preset's hub weights, or ``checkpoint`` (file or hub id)."""
        assert spec.resolution is not None, "resolve the spec with registry.resolve_expert first"
        return cls(spec.name, spec.resolution, preset, create_timm_backbone(spec, preset))


class TimmViTExpert(TimmExpert):
    """A timm ``VisionTransformer`` (CLIP, SigLIP, DINOv2): last block's patch tokens, prefix dropped, no final norm.

    ``dynamic_img_size=True`` in the preset lets any multiple of the patch size in (position embeddings are
    interpolated). Its blocks are what ``trainable_blocks`` counts.
    """

    @property
    def is_vit(self) -> bool:
        return True

    @property
    def num_prefix_tokens(self) -> int:
        """Tokens before the patch tokens (CLS, registers); 0 for SigLIP."""
        return int(self.backbone.num_prefix_tokens)

    def patch_grid(self, pixels: Tensor) -> tuple[int, int]:
        """(h, w) of the patch grid for an input of this size."""
        h, w = self.backbone.patch_embed.dynamic_feat_size(tuple(pixels.shape[-2:]))
        return int(h), int(w)

    def vit_embed(self, pixels: Tensor) -> tuple[Tensor, tuple[int, int]]:
        b = self.backbone
        x = b.norm_pre(b.patch_drop(b._pos_embed(b.patch_embed(pixels))))
        return x, self.patch_grid(pixels)

    def vit_blocks(self) -> list[nn.Module]:
        """The expert's own blocks (hold them in a plain list: registering them again would duplicate their
        parameters in a state dict)."""
        return list(self.backbone.blocks)

    def vit_to_map(self, x: Tensor, hw: tuple[int, int]) -> Tensor:
        h, w = hw
        patches = x[:, self.num_prefix_tokens:]
        if patches.shape[1] != h * w:
            raise ValueError(f"expert '{self.name}': {patches.shape[1]} patch tokens (after {self.num_prefix_tokens} "
                             f"prefix tokens) do not make a {h}×{w} map; pass the hw that vit_embed returned")
        return patches.reshape(x.shape[0], h, w, -1).permute(0, 3, 1, 2).contiguous()

    def freezable_blocks(self) -> list[nn.Module]:
        return list(self.backbone.blocks)


class ConvNeXtExpert(TimmExpert):
    """ConvNeXt: its four stages are the blocks ``freeze(trainable_blocks=N)`` leaves trainable."""

    def freezable_blocks(self) -> list[nn.Module]:
        return list(self.backbone.stages)


class SamExpert(TimmExpert):
    """SAM's features are the neck output, not a block output: keep the neck, read ``forward_features``."""

    @staticmethod
    def output_channels(backbone: nn.Module) -> int:
        return int(backbone.num_features)

    @staticmethod
    def prepare(backbone: nn.Module) -> None:
        backbone.reset_classifier(0)

    def forward(self, pixels: Tensor) -> Tensor:
        return self.backbone.forward_features(pixels)

    def freezable_blocks(self) -> list[nn.Module]:
        return list(self.backbone.blocks)

    def post_block_modules(self) -> list[nn.Module]:
        return [self.backbone.neck]


def create_timm_backbone(spec: ExpertSpec, preset: ExpertPreset) -> nn.Module:
    """The timm model for ``spec``; weights from a local file, the hub, or none (random init)."""
    kwargs: dict[str, Any] = dict(preset.kwargs)
    if preset.sized:
        kwargs["img_size"] = spec.resolution
    where = f"expert '{spec.name}' (preset '{spec.preset}', timm '{preset.architecture}')"
    if not spec.pretrained or (spec.checkpoint is None and preset.weights is None):  # tiny: pretext weights
        return timm.create_model(preset.architecture, pretrained=False, **kwargs)
    try:
        path = local_checkpoint(spec.checkpoint)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{where}: {err}") from None
    if path is not None:
        try:
            return timm.create_model(preset.architecture, pretrained=True,
                                     pretrained_cfg_overlay={"file": str(path)}, **kwargs)
        except (RuntimeError, KeyError, ValueError) as err:
            raise RuntimeError(f"{where}: checkpoint {path} does not fit this architecture ({err}); point "
                               "`checkpoint:` at weights of the same model, or change the expert's preset") from None
    if spec.checkpoint:
        hub_id, model_name = spec.checkpoint, preset.architecture
        overlay: dict[str, Any] | None = {"hf_hub_id": spec.checkpoint, "source": "hf-hub"}
    elif preset.weights:
        hub_id, model_name, overlay = timm.models.get_pretrained_cfg(preset.weights).hf_hub_id, preset.weights, None
    else:
        raise ValueError(f"{where}: preset '{spec.preset}' is random-init and has no published weights; use "
                         "preset: paper, or set `checkpoint:` to a local weights file for this architecture")
    ensure_hub_reachable(hub_id, where)
    try:
        return timm.create_model(model_name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
    except OSError as err:
        raise RuntimeError(offline_message(where, hub_id, err)) from None
