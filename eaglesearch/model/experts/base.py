"""What a vision expert is: a module that turns uint8 images into one spatial feature map.

A :class:`VisionExpert` declares everything the rest of the model needs to know without running it: its input
``resolution``, its output ``channels`` and the side of its output map (``native_grid``), how that map reaches the
common token grid (``resample``), and its own pixel normalisation. It offers

* the pipeline ``preprocess`` → ``forward`` → common grid as one call, :meth:`VisionExpert.grid_tokens`, with its
  token count :meth:`VisionExpert.token_count` and width :meth:`VisionExpert.grid_channels`;
* partial freezing, :meth:`VisionExpert.freeze` (``trainable_blocks``: frozen except the last N blocks/stages), and
  :meth:`VisionExpert.unfreeze`;
* for plain ViTs (``is_vit``), stage access for fusions that work between blocks (LLaVA-HR): ``vit_embed``,
  ``vit_blocks``, ``vit_to_map``, with ``forward(p) == vit_to_map(*run(vit_blocks, vit_embed(p)))``.

The timm-backed implementation is in ``timm_expert.py``; each family module only declares presets.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from eaglesearch.model.experts.feature_cache import FeatureCache
from eaglesearch.model.resample import ResampleMode, grid_channels, to_grid

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PAD_FILL: tuple[int, int, int] = (int(255 * CLIP_MEAN[0]), int(255 * CLIP_MEAN[1]), int(255 * CLIP_MEAN[2]))
"""LLaVA's ``expand2square`` background, ``tuple(int(x * 255) for x in image_processor.image_mean)`` = (122, 116, 104):
the colour ``data.image.resize: pad`` fills with unless the recipe names one."""
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class ExpertPreset:
    """One named configuration of an expert family (``tiny`` or ``paper``).

    ``architecture`` is a timm model name (or a transformers model class name) and ``kwargs`` its constructor
    arguments (``img_size`` is filled from the resolution when ``sized``). ``weights`` is what ``pretrained: true``
    loads (a timm pretrained tag ``arch.tag``, or a hub repo id); ``None`` means random init only. ``resample`` is
    how the feature map reaches the common grid (see ``eaglesearch.model.resample``) and ``blocks`` how many
    transformer blocks (ConvNeXt: stages) ``trainable_blocks`` may leave trainable. ``pretext`` (tiny presets) names
    the pretext task the tiny world pretrains the expert on (``eaglesearch/train/pretext_tasks.py``) and
    ``pretext_settings`` overrides its recipe (steps, batch size, lr); the weights are then a content-addressed
    artifact that the stage pipeline loads. Paper presets state where their weights come from (``source``) and the
    map they give at their resolution (``output``: native grid side, channels), which a test checks against the
    built expert and against ``reference/eagle.md``.
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
    resample: ResampleMode = "auto"
    blocks: int = 0
    pretext: str | None = None
    pretext_settings: Mapping[str, Any] = field(default_factory=dict)
    source: str | None = None
    output: tuple[int, int] | None = None
    tileable: bool = True  # False: this preset is not a plain ViT even though its family's other presets are


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
        resample: ResampleMode = "auto",
    ) -> None:
        super().__init__()
        self.frozen = False
        self.trainable_blocks = 0
        self.name = name
        self.resolution = resolution
        self.channels = channels
        self.native_grid = native_grid
        self.resample: ResampleMode = resample
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.feature_cache: FeatureCache | None = None

    # ------------------------------------------------------------------------------------- the pipeline

    def preprocess(self, images: Tensor) -> Tensor:
        """uint8 (B,3,S,S) → float (B,3,resolution,resolution), resized (bilinear, antialiased) and normalised."""
        return (self.resize(images) - self.mean) / self.std

    def resize(self, images: Tensor) -> Tensor:
        """uint8 (B,3,H,W) → float in [0,1] at (resolution, resolution), bilinear with antialiasing."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expert '{self.name}' expects images shaped (B,3,H,W); got {tuple(images.shape)}")
        x = images.to(self.mean.dtype) / 255.0
        if x.shape[-2:] != (self.resolution, self.resolution):
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear", antialias=True,
                              align_corners=False)
        return x

    @abstractmethod
    def forward(self, pixels: Tensor) -> Tensor:
        """Preprocessed pixels (B,3,R,R) → feature map (B, channels, native_grid, native_grid)."""

    def feature_map(self, images: Tensor) -> Tensor:
        """uint8 images (B,3,S,S) → feature map (B, channels, native_grid, native_grid): ``forward(preprocess())``,
        answered from the attached :class:`FeatureCache` while the expert is fully frozen."""
        if self.feature_cache is None or not self.fully_frozen:
            return self(self.preprocess(images))
        return self.feature_cache.maps(self, images, lambda batch: self(self.preprocess(batch)))

    def grid_tokens(self, images: Tensor, grid: int) -> Tensor:
        """uint8 images (B,3,S,S) → (B, token_count(grid), grid_channels(grid)) tokens on the common grid."""
        return to_grid(self.feature_map(images), grid, self.resample)

    def token_count(self, grid: int) -> int:
        """How many tokens :meth:`grid_tokens` gives per image: ``grid²``."""
        return grid * grid

    def grid_channels(self, grid: int) -> int:
        """Width of one token from :meth:`grid_tokens` (``channels``, ×k² when pixel-unshuffled onto the grid)."""
        return grid_channels(self.channels, self.native_grid, grid, self.resample)

    # -------------------------------------------------------------------------------------- freezing

    @property
    def fully_frozen(self) -> bool:
        """Frozen with no trainable blocks: a fixed function of the image (eval mode, no gradients)."""
        return self.frozen and not self.trainable_blocks and not self.training

    def attach_feature_cache(self, max_bytes: int) -> FeatureCache:
        """Keep the feature maps of up to ``max_bytes`` of images while fully frozen (see ``feature_cache.py``)."""
        self.feature_cache = FeatureCache(max_bytes)
        return self.feature_cache

    def freezable_blocks(self) -> list[nn.Module]:
        """The blocks ``freeze(trainable_blocks=N)`` counts from the end, in order (none for this expert)."""
        return []

    def post_block_modules(self) -> list[nn.Module]:
        """Modules after the last block on the feature path (e.g. SAM's neck): trainable with any N ≥ 1."""
        return []

    def freeze(self, trainable_blocks: int | None = None) -> None:
        """Stop training this expert, except its last ``trainable_blocks`` blocks (and what follows them).

        Frozen parameters get no gradients, and frozen modules stay in eval mode (``model.train()`` does not undo
        it); the trainable blocks follow ``train()``/``eval()`` as usual.
        """
        blocks = self.freezable_blocks()
        n = trainable_blocks or 0
        if n < 0 or n > len(blocks):
            allowed = f"use a value from 1 to {len(blocks)}, or" if blocks else "none can stay trainable;"
            raise ValueError(f"expert '{self.name}': trainable_blocks={n} but it has {len(blocks)} blocks; {allowed} "
                             "drop trainable_blocks to freeze the whole expert")
        self.requires_grad_(False)
        self.frozen = True
        self.trainable_blocks = n
        for module in self._trainable_modules():
            module.requires_grad_(True)
        self.train(self.training)

    def unfreeze(self) -> None:
        """Train the whole expert again (undoes :meth:`freeze`).

        The expert keeps its current mode until the next ``train()``/``eval()`` call, as after :meth:`freeze`
        (a frozen expert reports eval mode, so call ``train()`` on it or its model to resume training mode).
        """
        self.frozen = False
        self.trainable_blocks = 0
        self.requires_grad_(True)
        self.train(self.training)

    def _trainable_modules(self) -> list[nn.Module]:
        """The last ``trainable_blocks`` blocks and the modules after them (none when fully frozen)."""
        if not self.trainable_blocks:
            return []
        blocks = self.freezable_blocks()
        return [*blocks[len(blocks) - self.trainable_blocks:], *self.post_block_modules()]

    def train(self, mode: bool = True) -> VisionExpert:
        super().train(mode and not self.frozen)
        if self.frozen:
            for module in self._trainable_modules():
                module.train(mode)
        return self

    # ------------------------------------------------------------------------------- ViT stage access

    @property
    def is_vit(self) -> bool:
        """Whether this expert is a plain ViT offering ``vit_embed`` / ``vit_blocks`` / ``vit_to_map``."""
        return False

    def vit_embed(self, pixels: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """Preprocessed pixels → (input of block 0: (B, prefix + h·w, C) tokens, patch grid (h, w))."""
        raise TypeError(self._not_vit("vit_embed"))

    def vit_blocks(self) -> list[nn.Module]:
        """The transformer blocks in order; each maps (B, N, C) tokens to (B, N, C)."""
        raise TypeError(self._not_vit("vit_blocks"))

    def vit_to_map(self, x: Tensor, hw: tuple[int, int]) -> Tensor:
        """Last block's tokens → (B, C, h, w) feature map (prefix tokens dropped), exactly as ``forward``."""
        raise TypeError(self._not_vit("vit_to_map"))

    def _not_vit(self, what: str) -> str:
        return (f"expert '{self.name}' ({type(self).__name__}) is not a plain ViT, so it has no {what}; stage "
                "access exists for clip, siglip, dinov2 and eva02 (check `expert.is_vit` first)")

    def extra_repr(self) -> str:
        frozen = str(self.frozen)
        if self.trainable_blocks:
            frozen += f" (last {self.trainable_blocks} blocks trainable)"
        return (f"name={self.name}, resolution={self.resolution}, channels={self.channels}, "
                f"native_grid={self.native_grid}, resample={self.resample}, frozen={frozen}")
