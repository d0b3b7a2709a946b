"""A kept winner as a self-contained folder (safetensors, trial spec, tokenizer, model card), :func:`load` → a model
with ``generate(images, prompts)``, its MLflow pyfunc loader and the lmms-eval adapter (``export/lmms_eval.py``, the
only module that imports lmms_eval, imported on demand)."""

from eaglesearch.export.folder import ModelCard, write_export
from eaglesearch.export.winner import Winner, load, prepare_image

__all__ = ["ModelCard", "Winner", "load", "prepare_image", "write_export"]
