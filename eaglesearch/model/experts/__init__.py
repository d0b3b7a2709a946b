"""Vision experts: the base interface, the registry, and one module per family (imported here to register)."""

from eaglesearch.model.experts import clip, convnext, faulty, sam  # noqa: F401  (each registers its family)
from eaglesearch.model.experts.base import ExpertPreset, TimmExpert, VisionExpert
from eaglesearch.model.experts.registry import (
    ExpertFamily,
    build_expert,
    expert_names,
    get_family,
    get_preset,
    register_expert,
    resolve_expert,
)

__all__ = [
    "ExpertFamily", "ExpertPreset", "TimmExpert", "VisionExpert", "build_expert", "expert_names", "get_family",
    "get_preset", "register_expert", "resolve_expert",
]
