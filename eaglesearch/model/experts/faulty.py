"""A test-only expert that always fails in ``forward``.

It exists so the failure handling of the trainer, the trial worker and the search can be tested on a real trial:
it builds like any expert (a single strided convolution, stride 16, 8 channels; both presets are identical and
have no weights), but every forward pass raises :data:`FAULTY_MESSAGE`. Never use it in a real search.
"""

from __future__ import annotations

from torch import Tensor, nn

from eaglesearch.model.experts.base import CLIP_MEAN, CLIP_STD, ExpertPreset, VisionExpert
from eaglesearch.model.experts.registry import ExpertFamily, register_expert
from eaglesearch.spec import ExpertSpec

FAULTY_MESSAGE = "faulty expert: injected failure (this expert exists to test failure handling)"
STRIDE = 16
CHANNELS = 8


class FaultyExpert(VisionExpert):
    """A strided conv with the shape of a real expert whose forward raises ``RuntimeError``."""

    def __init__(self, name: str, resolution: int, preset: ExpertPreset) -> None:
        super().__init__(name, resolution, CHANNELS, resolution // STRIDE, preset.mean, preset.std)
        self.conv = nn.Conv2d(3, CHANNELS, kernel_size=STRIDE, stride=STRIDE)

    def forward(self, pixels: Tensor) -> Tensor:
        raise RuntimeError(FAULTY_MESSAGE)


def build_faulty(spec: ExpertSpec, preset: ExpertPreset) -> FaultyExpert:
    assert spec.resolution is not None, "resolve the spec with registry.resolve_expert first"
    return FaultyExpert(spec.name, spec.resolution, preset)


_PRESET = ExpertPreset(
    architecture="strided_conv",
    resolution=128,
    stride=STRIDE,
    mean=CLIP_MEAN,
    std=CLIP_STD,
    feature_layer="conv output (never produced: forward raises)",
)

FAULTY = register_expert(ExpertFamily(
    name="faulty",
    description="test-only: builds, then raises in forward",
    presets={"tiny": _PRESET, "paper": _PRESET},
    build=build_faulty,
))
