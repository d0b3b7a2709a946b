"""PP-OCRv4 text detector (mobile, PaddleOCR's DB), from the ONNX file in PyPI ``rapidocr-onnxruntime``
(Apache-2.0).

The network is PPLCNetV3 (det variant) → RSE-FPN neck → DB head (a text-probability map at full resolution); the
package feeds it BGR images as ``(x/255 - 0.5) / 0.5`` (``Det.mean/std`` in its ``config.yaml``), resized so the
short side is at least ``limit_side_len: 736`` and both sides are multiples of 32. The expert's features are the
neck's output before the head (``p2o.Concat.1``: four 24-channel FPN levels upsampled and concatenated, 96
channels at stride 4): 128 px → 32×32, which reaches a smaller common grid by pixel-unshuffle (``auto``). Any
resolution that is a multiple of 32 works (736 is the package's own). Converted with ``onnx2torch``; its outputs
match onnxruntime's on the same input (``tests/test_ppocr_experts.py``).
"""

from __future__ import annotations

from eaglesearch.model.experts.preset import ExpertPreset
from eaglesearch.model.experts.registry import ExpertFamily, register_expert

ONNX_FILE = "pkg://rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"
MEAN = STD = (0.5, 0.5, 0.5)
PRESET = ExpertPreset(
    architecture=ONNX_FILE,
    weights=ONNX_FILE,
    resolution=128,
    stride=32,  # the input must be a multiple of 32 (five 2x downsamplings); the map itself is at stride 4
    mean=MEAN,
    std=STD,
    feature_layer="RSE-FPN neck output before the DB head (96 ch, stride 4)",
    kwargs={"tensor": "p2o.Concat.1", "channels": 96, "bgr": True, "map_stride": 4},
    sized=False,
    source="rapidocr-onnxruntime 1.4.4: models/ch_PP-OCRv4_det_infer.onnx (PaddleOCR PP-OCRv4 mobile det)",
)

PPOCR_DET = register_expert(ExpertFamily(
    name="ppocr_det",
    description="PP-OCRv4 text detector backbone + FPN neck (real weights from PyPI rapidocr-onnxruntime)",
    presets={"tiny": PRESET, "paper": PRESET},
    build="eaglesearch.model.experts.onnx_expert:OnnxExpert.from_spec",
))
