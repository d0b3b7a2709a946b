"""An expert whose encoder is a converted ONNX graph (``onnx_import.py``): the families in ``ppocr_rec.py`` and
``ppocr_det.py`` declare their file, feature tensor and input conventions in a preset's ``kwargs``:

* ``tensor``: the ONNX tensor the features are read at (the graph is cut there);
* ``channels``: its channel count;
* ``bgr``: the network was trained on BGR images (OpenCV's order): pixels are flipped from RGB before it;
* ``map_stride``: the feature map's stride when it differs from the preset's ``stride`` (which is then only what
  the input side must be a multiple of);
* ``pool_width``: average-pool the map's width by this factor (a network whose width stride is finer than its height
  stride, like a text-line recogniser, gets a square map at ``stride``).

The preset's ``architecture`` (and ``weights``) is the ONNX file as ``pkg://PACKAGE/PATH``. With ``pretrained:
false`` every converted layer is re-initialised (``reset_parameters``): the same architecture, random weights.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from eaglesearch.model.experts.base import ExpertPreset, VisionExpert
from eaglesearch.model.experts.onnx_import import onnx_feature_module
from eaglesearch.spec import ExpertSpec


class OnnxExpert(VisionExpert):
    """A converted ONNX encoder, cut at its feature tensor; see the module docstring for the preset's kwargs."""

    def __init__(self, spec: ExpertSpec, preset: ExpertPreset, network: nn.Module) -> None:
        assert spec.resolution is not None
        map_stride = int(preset.kwargs.get("map_stride", preset.stride))
        super().__init__(spec.name, spec.resolution, int(preset.kwargs["channels"]), spec.resolution // map_stride,
                         preset.mean, preset.std, preset.resample)
        self.network = network
        self.bgr = bool(preset.kwargs.get("bgr", False))
        self.pool_width = int(preset.kwargs.get("pool_width", 1))
        self.feature_layer = preset.feature_layer

    @classmethod
    def from_spec(cls, spec: ExpertSpec, preset: ExpertPreset) -> OnnxExpert:
        network = onnx_feature_module(preset.architecture, str(preset.kwargs["tensor"]),
                                      f"expert '{spec.name}' weights")
        if not spec.pretrained:
            for module in network.modules():
                if module is not network and hasattr(module, "reset_parameters"):
                    module.reset_parameters()
        return cls(spec, preset, network)

    def forward(self, pixels: Tensor) -> Tensor:
        features = self.network(pixels.flip(1) if self.bgr else pixels)
        if self.pool_width > 1:
            features = F.avg_pool2d(features, kernel_size=(1, self.pool_width))
        expected = (self.channels, self.native_grid, self.native_grid)
        if tuple(features.shape[1:]) != expected:
            raise ValueError(f"expert '{self.name}' gave features {tuple(features.shape)} at {self.resolution} px, "
                             f"expected (B, {expected[0]}, {expected[1]}, {expected[2]}); use a resolution that is a "
                             f"multiple of its stride")
        return features
