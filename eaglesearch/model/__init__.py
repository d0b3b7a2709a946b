"""The Eagle model: vision experts (a registry), to-grid resampling, fusions, projector, language model, tokenizer.

Start from :func:`build_eagle` (a ``ModelSpec`` and a tokenizer from :func:`load_tokenizer`).
"""

from eaglesearch.model.build import build_eagle
from eaglesearch.model.eagle import EagleModel
from eaglesearch.model.experts import VisionExpert, build_expert, expert_names, resolve_expert
from eaglesearch.model.fusions import FUSIONS, Fusion, build_fusion
from eaglesearch.model.tokenizer import IMAGE_TOKEN, build_offline_tokenizer, load_tokenizer, render_chatml
from eaglesearch.model.validate import validate_model

__all__ = [
    "FUSIONS", "IMAGE_TOKEN", "EagleModel", "Fusion", "VisionExpert", "build_eagle", "build_expert", "build_fusion",
    "build_offline_tokenizer", "expert_names", "load_tokenizer", "render_chatml", "resolve_expert", "validate_model",
]
