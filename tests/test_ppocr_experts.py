"""The PP-OCRv4 experts are the package's networks: converted to torch (``onnx2torch``), they compute what the
package's own inference engine (onnxruntime on the same ONNX file) computes, on the same input.

Tolerance: float32 throughout, different kernels, so the two agree to rounding relative to each tensor's scale:
the largest difference seen is 5e-6 of the tensor's largest magnitude (4.5e-4 on detector features reaching 91;
3e-6 on the recogniser's softmax). The tests allow ``1e-5`` of the largest magnitude (:func:`assert_same`) — a
thousandth of a percent, far below anything a converted layer done wrong would give.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from eaglesearch.model.experts import build_expert, get_preset
from eaglesearch.model.experts.onnx_import import onnx_feature_module, package_file
from eaglesearch.model.experts.ppocr_det import ONNX_FILE as DET_FILE
from eaglesearch.model.experts.ppocr_rec import ONNX_FILE as REC_FILE
from eaglesearch.spec import ExpertSpec

torch.set_num_threads(1)
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("rapidocr_onnxruntime") is None or importlib.util.find_spec("onnx2torch") is None,
    reason='needs the real extra: pip install "eaglesearch[real]"; pip install --no-deps rapidocr-onnxruntime')
RELATIVE = 1e-5


def assert_same(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.shape == theirs.shape
    scale = float(np.abs(theirs).max())
    worst = float(np.abs(ours - theirs).max())
    assert worst <= RELATIVE * max(scale, 1.0), f"max |torch - onnxruntime| = {worst:.3g} at scale {scale:.3g}"


def ort_outputs(location: str, tensor: str, pixels: np.ndarray) -> np.ndarray:
    """The package's ONNX file run by onnxruntime, with ``tensor`` exposed as an extra graph output."""
    ort = pytest.importorskip("onnxruntime")
    import onnx
    from onnx import helper

    model = onnx.load(str(package_file(location, "test")))
    if tensor not in {o.name for o in model.graph.output}:
        model.graph.output.append(helper.make_tensor_value_info(tensor, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run([tensor], {session.get_inputs()[0].name: pixels})[0]


def normalised(batch: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """Pixels as the package feeds them: (x/255 - 0.5) / 0.5, so in [-1, 1]."""
    return np.random.default_rng(seed).uniform(-1, 1, (batch, 3, height, width)).astype(np.float32)


@pytest.mark.parametrize(("name", "tensor", "height", "width"), [
    ("ppocr_rec", "p2o.Add.231", 48, 160),   # the package's line height
    ("ppocr_rec", "p2o.Add.231", 64, 64),    # the expert's square default
    ("ppocr_det", "p2o.Concat.1", 64, 96),
])
def test_expert_network_matches_onnxruntime_at_its_feature_tensor(name: str, tensor: str, height: int,
                                                                  width: int) -> None:
    expert = build_expert(ExpertSpec(name=name)).eval()
    pixels = normalised(1, height, width)
    with torch.no_grad():
        ours = expert.network(torch.from_numpy(pixels)).numpy()
    theirs = ort_outputs(get_preset(ExpertSpec(name=name)).architecture, tensor, pixels)
    assert_same(ours, theirs)
    assert np.abs(theirs).max() > 0.5  # a real activation, not a vanishing one


def test_whole_recogniser_matches_onnxruntime_and_reads_a_printed_number() -> None:
    """The full recogniser (to its CTC softmax) converted the same way reads a line printed with PIL's font
    exactly as onnxruntime does: the weights, channel order (BGR) and normalisation are the package's."""
    from PIL import Image, ImageDraw, ImageFont

    line = Image.new("RGB", (320, 48), "white")
    ImageDraw.Draw(line).text((8, 4), "20261207", fill="black", font=ImageFont.load_default(size=36))
    rgb = torch.from_numpy(np.asarray(line).copy()).permute(2, 0, 1)[None].float() / 255
    pixels = ((rgb.flip(1) - 0.5) / 0.5).numpy()
    network = onnx_feature_module(REC_FILE, "softmax_11.tmp_0", "test")
    with torch.no_grad():
        ours = network(torch.from_numpy(pixels)).numpy()
    theirs = ort_outputs(REC_FILE, "softmax_11.tmp_0", pixels)
    assert_same(ours, theirs)

    import onnx

    meta = {p.key: p.value for p in onnx.load(str(package_file(REC_FILE, "test"))).metadata_props}
    characters = ["<blank>", *meta["character"].splitlines(), " "]  # rapidocr's CTCLabelDecode layout
    best, text, previous = ours[0].argmax(-1), [], 0
    for index in best:
        if index and index != previous:
            text.append(characters[index])
        previous = index
    assert "".join("".join(text).split()) == "20261207"  # (a trailing ideographic space decoded too)


def test_presets_use_the_packages_normalisation_and_input_conventions() -> None:
    config = yaml.safe_load((Path(package_file(REC_FILE, "test")).parents[1] / "config.yaml").read_text())
    rec, det = get_preset(ExpertSpec(name="ppocr_rec")), get_preset(ExpertSpec(name="ppocr_det"))
    assert config["Rec"]["rec_img_shape"][1] == 48 and 48 % rec.stride == 0  # its line height is a valid side
    assert tuple(config["Det"]["mean"]) == det.mean and tuple(config["Det"]["std"]) == det.std
    assert rec.mean == rec.std == (0.5, 0.5, 0.5)  # TextRecognizer.resize_norm_img: x/255 - 0.5, / 0.5
    assert rec.kwargs["bgr"] and det.kwargs["bgr"]  # rapidocr reads images with OpenCV (BGR)
    assert config["Rec"]["model_path"].endswith(Path(REC_FILE).name)
    assert config["Det"]["model_path"].endswith(Path(DET_FILE).name)


def test_experts_pipeline_shapes_training_and_random_init() -> None:
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    rec = build_expert(ExpertSpec(name="ppocr_rec"))
    det = build_expert(ExpertSpec(name="ppocr_det", resolution=64))
    assert (rec.channels, rec.native_grid, det.channels, det.native_grid) == (480, 4, 96, 16)
    assert rec.grid_tokens(images, 4).shape == (2, 16, 480)
    assert det.grid_tokens(images, 4).shape == (2, 16, 96 * 16)  # 16x16 map pixel-unshuffled onto 4x4
    rec.train()
    rec.feature_map(images).square().mean().backward()
    grads = [p.grad for p in rec.parameters() if p.grad is not None]
    assert len(grads) > 50 and all(torch.isfinite(g).all() for g in grads)  # every conv/BN trains in torch

    random = build_expert(ExpertSpec(name="ppocr_rec", pretrained=False))
    first = next(n for n, _ in rec.named_parameters() if n.endswith("weight"))
    assert not torch.equal(dict(rec.named_parameters())[first], dict(random.named_parameters())[first])
    with pytest.raises(ValueError, match="multiple of its stride 32"):
        build_expert(ExpertSpec(name="ppocr_det", resolution=100))
