"""Register a user's vision encoder as an expert family from its declaration (``CustomExpertSpec``).

The factory (``module:function``) is imported only here, when the family is registered, so the spec layer stays
free of model code. Once registered the family is like any built-in one: every strategy, fusion and stage sees it
by name. Both presets (``tiny`` and ``paper``) are the declared encoder.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from torch import Tensor, nn

from eaglesearch.model.experts.base import ExpertPreset, VisionExpert
from eaglesearch.model.experts.registry import ExpertFamily, expert_names, get_family, register_expert
from eaglesearch.spec import ExpertSpec
from eaglesearch.spec.custom_expert import CustomExpertSpec

_DECLARED: dict[str, CustomExpertSpec] = {}


def load_factory(path: str) -> Callable[..., nn.Module]:
    """The callable ``module:function`` names; ``ValueError`` naming what failed and how to fix it."""
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"custom expert factory '{path}': cannot import module '{module_name}' ({err}); install "
                         "it or put its folder on PYTHONPATH") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ValueError(f"custom expert factory '{path}': module '{module_name}' has no callable '{attr}'")  # noqa: TRY004
    return factory


class FactoryExpert(VisionExpert):
    """A user's encoder: the module the factory returned, checked against the declared channels and grid."""

    def __init__(self, spec: ExpertSpec, preset: ExpertPreset, declared: CustomExpertSpec, encoder: nn.Module) -> None:
        assert spec.resolution is not None
        super().__init__(spec.name, spec.resolution, declared.channels, spec.resolution // declared.stride,
                         declared.mean, declared.std, preset.resample)
        self.encoder = encoder
        self.feature_layer = declared.feature_layer

    def forward(self, pixels: Tensor) -> Tensor:
        features = self.encoder(pixels)
        expected = (self.channels, self.native_grid, self.native_grid)
        if features.dim() != 4 or tuple(features.shape[1:]) != expected:
            raise ValueError(f"custom expert '{self.name}' returned features {tuple(features.shape)} but declares "
                             f"(B, {expected[0]}, {expected[1]}, {expected[2]}) (channels, resolution/stride); fix "
                             "the declaration's channels/stride or the factory")
        return features


def register_custom_expert(declared: CustomExpertSpec) -> ExpertFamily:
    """Register ``declared`` as an expert family (again-registering the same declaration is a no-op)."""
    if declared.name in expert_names():
        if _DECLARED.get(declared.name) == declared:
            return get_family(declared.name)
        raise ValueError(f"custom expert '{declared.name}' clashes with a registered expert of that name; rename it")
    factory = load_factory(declared.factory)
    preset = ExpertPreset(architecture=declared.factory, resolution=declared.resolution, mean=declared.mean,
                          std=declared.std, feature_layer=declared.feature_layer, stride=declared.stride,
                          weights=declared.factory if declared.pretrained else None, sized=False)

    def build(spec: ExpertSpec, preset: ExpertPreset) -> VisionExpert:
        return FactoryExpert(spec, preset, declared, factory(pretrained=bool(spec.pretrained)))

    family = register_expert(ExpertFamily(name=declared.name, presets={"tiny": preset, "paper": preset}, build=build,
                                          description=declared.description or f"custom: {declared.factory}"))
    _DECLARED[declared.name] = declared
    return family

