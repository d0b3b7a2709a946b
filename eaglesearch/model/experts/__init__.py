"""Vision experts: the base interface, the registry, and one module per family (imported here to register)."""

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
from eaglesearch.model.experts.base import ExpertPreset, VisionExpert
from eaglesearch.model.experts.registry import (
    ExpertFamily,
    build_expert,
    expert_names,
    get_family,
    get_preset,
    register_expert,
    resolve_expert,
)
from eaglesearch.model.experts.timm_expert import TimmExpert, TimmViTExpert

__all__ = [
    "ExpertFamily", "ExpertPreset", "TimmExpert", "TimmViTExpert", "VisionExpert", "build_expert", "expert_names",
    "get_family", "get_preset", "register_expert", "resolve_expert",
]
