"""A user's encoder (a registered declaration's ``factory``) as a vision expert: see ``custom.py``."""

from __future__ import annotations

from torch import Tensor, nn

from eaglesearch.model.experts.base import ExpertPreset, VisionExpert
from eaglesearch.spec import ExpertSpec
from eaglesearch.spec.custom_expert import CustomExpertSpec


class FactoryExpert(VisionExpert):
    """A user's encoder: the module the factory returned, checked against the declared channels and grid."""

    def __init__(self, spec: ExpertSpec, preset: ExpertPreset, declared: CustomExpertSpec, encoder: nn.Module) -> None:
        assert spec.resolution is not None
        super().__init__(spec.name, spec.resolution, declared.channels, spec.resolution // declared.stride,
                         declared.mean, declared.std, preset.resample)
        self.encoder = encoder
        self.feature_layer = declared.feature_layer

    def forward(self, pixels: Tensor) -> Tensor:
        features = self.encoder(pixels)
        expected = (self.channels, self.native_grid, self.native_grid)
        if features.dim() != 4 or tuple(features.shape[1:]) != expected:
            raise ValueError(f"custom expert '{self.name}' returned features {tuple(features.shape)} but declares "
                             f"(B, {expected[0]}, {expected[1]}, {expected[2]}) (channels, resolution/stride); fix "
                             "the declaration's channels/stride or the factory")
        return features
