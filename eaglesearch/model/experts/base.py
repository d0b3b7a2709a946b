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
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from eaglesearch.spec import ExpertSpec

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt", ".npz")


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

    @classmethod
    def from_spec(cls, spec: ExpertSpec, preset: ExpertPreset) -> TimmExpert:
        """Build from a resolved spec: random init, the preset's hub weights, or ``checkpoint`` (file or hub id)."""
        assert spec.resolution is not None, "resolve the spec with registry.resolve_expert first"
        return cls(spec.name, spec.resolution, preset, create_timm_backbone(spec, preset))


def looks_like_path(checkpoint: str) -> bool:
    """A checkpoint naming a file (absolute/relative path or a weights suffix) rather than a hub repo id."""
    return checkpoint.startswith(("/", "./", "../", "~")) or checkpoint.endswith(WEIGHT_SUFFIXES)


def create_timm_backbone(spec: ExpertSpec, preset: ExpertPreset) -> nn.Module:
    """The timm model for ``spec``; weights from a local file, the hub, or none (random init)."""
    kwargs: dict[str, Any] = dict(preset.kwargs)
    if preset.sized:
        kwargs["img_size"] = spec.resolution
    where = f"expert '{spec.name}' (preset '{spec.preset}', timm '{preset.architecture}')"
    if not spec.pretrained:
        return timm.create_model(preset.architecture, pretrained=False, **kwargs)
    if spec.checkpoint and (looks_like_path(spec.checkpoint) or Path(spec.checkpoint).expanduser().exists()):
        path = Path(spec.checkpoint).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{where}: checkpoint file {path} does not exist; fix the expert's "
                                    "`checkpoint:` path or drop it to use the preset's hub weights")
        try:
            return timm.create_model(preset.architecture, pretrained=True,
                                     pretrained_cfg_overlay={"file": str(path)}, **kwargs)
        except (RuntimeError, KeyError, ValueError) as err:
            raise RuntimeError(f"{where}: checkpoint {path} does not fit this architecture ({err}); point "
                               "`checkpoint:` at weights of the same model, or change the expert's preset") from None
    if spec.checkpoint:
        hub_id, model_name, overlay = spec.checkpoint, preset.architecture, {"hf_hub_id": spec.checkpoint,
                                                                              "source": "hf-hub"}
    elif preset.weights:
        hub_id, model_name, overlay = timm.models.get_pretrained_cfg(preset.weights).hf_hub_id, preset.weights, None
    else:
        raise ValueError(f"{where}: preset '{spec.preset}' is random-init and has no published weights; use "
                         "preset: paper, or set `checkpoint:` to a local weights file for this architecture")
    _ensure_hub_reachable(hub_id, where)
    try:
        return timm.create_model(model_name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
    except OSError as err:
        raise RuntimeError(_offline_message(where, hub_id, err)) from None


def _ensure_hub_reachable(hub_id: str, where: str) -> None:
    """Fail before allocating a large model (ConvNeXt-XXL is 850 M parameters) when the hub repo is unreachable.

    Offline, huggingface_hub retries for about 20 s first unless ``HF_HUB_OFFLINE=1`` is set.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        hf_hub_download(hub_id, "config.json")
    except LocalEntryNotFoundError as err:  # not reachable and not cached
        raise RuntimeError(_offline_message(where, hub_id, err)) from None
    except EntryNotFoundError:
        return  # the repo is reachable; it just has no config.json
    except OSError as err:
        raise RuntimeError(_offline_message(where, hub_id, err)) from None


def _offline_message(where: str, hub_id: str, err: Exception) -> str:
    return (f"{where}: could not fetch pretrained weights from the Hugging Face hub repo '{hub_id}' "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'no detail'}). Without network "
            f"access: download them on a connected machine (`huggingface-cli download {hub_id}`), copy the "
            "weights file here and set this expert's `checkpoint:` to its local path (e.g. "
            "`checkpoint: /data/weights/model.safetensors`), or point HF_HOME at a cache that already holds them.")
