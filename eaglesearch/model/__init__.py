"""The Eagle model: vision experts (a registry), to-grid resampling, fusions, projector, language model, tokenizer.

Start from :func:`build_eagle` (a ``ModelSpec`` and a tokenizer from :func:`load_tokenizer`). The names below are
imported on first access, so checking a spec (``model.validate``, the expert and fusion declarations) never loads
torch or transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from eaglesearch.model.build import build_eagle
    from eaglesearch.model.eagle import EagleModel
    from eaglesearch.model.experts import VisionExpert, build_expert, expert_names, resolve_expert
    from eaglesearch.model.fusions import FUSIONS, Fusion, build_fusion
    from eaglesearch.model.tokenizer import IMAGE_TOKEN, build_offline_tokenizer, load_tokenizer, render_chatml
    from eaglesearch.model.validate import validate_model

_WHERE = {
    "build_eagle": "build", "EagleModel": "eagle", "VisionExpert": "experts", "build_expert": "experts",
    "expert_names": "experts", "resolve_expert": "experts", "FUSIONS": "fusions", "Fusion": "fusions",
    "build_fusion": "fusions", "IMAGE_TOKEN": "tokenizer", "build_offline_tokenizer": "tokenizer",
    "load_tokenizer": "tokenizer", "render_chatml": "tokenizer", "validate_model": "validate",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"eaglesearch.model.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FUSIONS", "IMAGE_TOKEN", "EagleModel", "Fusion", "VisionExpert", "build_eagle", "build_expert", "build_fusion",
    "build_offline_tokenizer", "expert_names", "load_tokenizer", "render_chatml", "resolve_expert", "validate_model",
]
