"""The conventions every PP-OCRv4 network in PyPI ``rapidocr-onnxruntime`` shares, declared once.

The package ships each network as an ONNX file under ``rapidocr_onnxruntime/models/`` and feeds it BGR images as
``(x/255 - 0.5) / 0.5``. An expert family made from one (``ppocr_det.py``, ``ppocr_rec.py``) is the same network in
every preset (it has one size), with the package's weights, built by ``onnx_expert.OnnxExpert`` (converted with
``onnx2torch`` on first build; nothing here imports torch). What differs per network is passed in: which file,
which tensor is the feature map and its channels, the native resolution and stride, and its own options.
"""

from __future__ import annotations

from typing import Any

from eaglesearch.model.experts.preset import ExpertPreset
from eaglesearch.model.experts.registry import ExpertFamily, register_expert

PACKAGE_VERSION = "1.4.4"
MEAN = STD = (0.5, 0.5, 0.5)


def model_file(name: str) -> str:
    """The ``pkg://`` address of one of the package's ONNX files."""
    return f"pkg://rapidocr_onnxruntime/models/{name}"


def register_ppocr(name: str, description: str, onnx_name: str, *, resolution: int, stride: int, tensor: str,
                   channels: int, feature_layer: str, source: str, **options: Any) -> ExpertFamily:
    """Register the expert family ``name`` for the package's network ``onnx_name``; ``options`` go to the expert
    (``map_stride``, ``pool_width``...)."""
    path = model_file(onnx_name)
    preset = ExpertPreset(
        architecture=path, weights=path, resolution=resolution, stride=stride, mean=MEAN, std=STD,
        feature_layer=feature_layer, kwargs={"tensor": tensor, "channels": channels, "bgr": True, **options},
        sized=False, source=f"rapidocr-onnxruntime {PACKAGE_VERSION}: models/{onnx_name} ({source})",
    )
    return register_expert(ExpertFamily(name=name, description=description, presets={"tiny": preset, "paper": preset},
                                        build="eaglesearch.model.experts.onnx_expert:OnnxExpert.from_spec"))
