"""PP-OCRv4 text recogniser (mobile, PaddleOCR), from the ONNX file in PyPI ``rapidocr-onnxruntime`` (Apache-2.0).

The network is PPLCNetV3 (rec variant) → SVTR neck → CTC head over 6,625 characters; the package feeds it text
lines of height 48 (``Rec.rec_img_shape: [3, 48, 320]`` in its ``config.yaml``), BGR, as ``(x/255 - 0.5) / 0.5``.
Its backbone strides the height by 16 and the width by 4 (a 48×320 line gives 480 × 3×80, which the network's own
``AveragePool`` (3, 2) turns into a 40-step sequence). The expert's features are that backbone output
(``p2o.Add.231``, 480 channels) with the width average-pooled by 4, so a square image gives a square map at stride
16: 64 px → 4×4. Any resolution that is a multiple of 16 works; 48, the package's line height, gives 3×3.
Converted with ``onnx2torch``; its outputs match onnxruntime's on the same input (``tests/test_ppocr_experts.py``).
"""

from __future__ import annotations

from eaglesearch.model.experts.rapidocr import model_file, register_ppocr

ONNX_NAME = "ch_PP-OCRv4_rec_infer.onnx"
ONNX_FILE = model_file(ONNX_NAME)
PPOCR_REC = register_ppocr(
    "ppocr_rec", "PP-OCRv4 text recogniser backbone (real weights from PyPI rapidocr-onnxruntime)",
    ONNX_NAME, resolution=64, stride=16, tensor="p2o.Add.231", channels=480, pool_width=4,
    feature_layer="PPLCNetV3 backbone output before the head's pooling (480 ch, stride 16x4), width pooled by 4",
    source="PaddleOCR PP-OCRv4 mobile rec",
)
