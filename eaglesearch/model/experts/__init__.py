"""Vision experts: the base interface, the registry, and one module per family (imported here to register).

The family declarations and the registry import no torch (``eaglesearch validate`` checks a search space without
it); the torch classes exported here are imported on first access.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from eaglesearch.model.experts import (  # noqa: F401  (each registers its family)
    clip,
    convnext,
    dinov2,
    eva02,
    pix2struct,
    ppocr_det,
    ppocr_rec,
    sam,
    siglip,
)
from eaglesearch.model.experts.preset import ExpertPreset
from eaglesearch.model.experts.registry import (
    ExpertFamily,
    build_expert,
    expert_names,
    get_family,
    get_preset,
    register_expert,
    resolve_expert,
)

if TYPE_CHECKING:
    from eaglesearch.model.experts.base import VisionExpert
    from eaglesearch.model.experts.timm_expert import TimmExpert, TimmViTExpert

_LAZY = {"VisionExpert": "eaglesearch.model.experts.base", "TimmExpert": "eaglesearch.model.experts.timm_expert",
         "TimmViTExpert": "eaglesearch.model.experts.timm_expert"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ExpertFamily", "ExpertPreset", "TimmExpert", "TimmViTExpert", "VisionExpert", "build_expert", "expert_names",
    "get_family", "get_preset", "register_expert", "resolve_expert",
]
