"""What a vision expert is: a module that turns uint8 images into one spatial feature map.

A :class:`VisionExpert` declares everything the rest of the model needs to know without running it: its input
``resolution``, its output ``channels`` and the side of its output map (``native_grid``), and its own pixel
normalisation. :class:`TimmExpert` is the common implementation for experts backed by a timm model; each family
module (``clip.py``, ``convnext.py``, ``sam.py``) only declares presets and how to read the feature map out.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ExpertPreset:
    """One named configuration of an expert family (``tiny`` or ``paper``).

    ``architecture`` is a timm model name and ``kwargs`` its constructor arguments (``img_size`` is filled from the
    resolution when ``sized``). ``weights`` is the timm pretrained tag (``arch.tag``) whose hub checkpoint
    ``pretrained: true`` loads; ``None`` means the preset has no published weights (random init only).
    """

    architecture: str
    resolution: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    feature_layer: str
    stride: int
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    weights: str | None = None
    sized: bool = True


class VisionExpert(nn.Module, ABC):
    """A vision encoder producing a (B, channels, native_grid, native_grid) feature map at ``resolution``."""

    def __init__(
        self,
        name: str,
        resolution: int,
        channels: int,
        native_grid: int,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
    ) -> None:
        super().__init__()
        self.frozen = False
        self.name = name
        self.resolution = resolution
        self.channels = channels
        self.native_grid = native_grid
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def preprocess(self, images: Tensor) -> Tensor:
        """uint8 (B,3,S,S) → float (B,3,resolution,resolution), resized (bilinear, antialiased) and normalised."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expert '{self.name}' expects images shaped (B,3,H,W); got {tuple(images.shape)}")
        x = images.to(self.mean.dtype) / 255.0
        if x.shape[-2:] != (self.resolution, self.resolution):
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear", antialias=True,
                              align_corners=False)
        return (x - self.mean) / self.std

    @abstractmethod
    def forward(self, pixels: Tensor) -> Tensor:
        """Preprocessed pixels (B,3,R,R) → feature map (B, channels, native_grid, native_grid)."""

    def freeze(self) -> None:
        """Stop training this expert: no gradients, and eval mode that ``model.train()`` does not undo."""
        self.requires_grad_(False)
        self.frozen = True
        self.eval()

    def train(self, mode: bool = True) -> VisionExpert:
        return super().train(mode and not self.frozen)

    def extra_repr(self) -> str:
        return (f"name={self.name}, resolution={self.resolution}, channels={self.channels}, "
                f"native_grid={self.native_grid}, frozen={self.frozen}")


class TimmExpert(VisionExpert):
    """An expert wrapping a timm backbone; by default it reads the last block's output without the final norm."""

    def __init__(self, name: str, resolution: int, preset: ExpertPreset, backbone: nn.Module) -> None:
        info = backbone.feature_info[-1]
        channels, stride = self.output_channels(backbone), int(info["reduction"])
        if resolution % stride:
            raise ValueError(f"expert '{name}': resolution {resolution} is not a multiple of its stride {stride}")
        super().__init__(name, resolution, channels, resolution // stride, preset.mean, preset.std)
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
