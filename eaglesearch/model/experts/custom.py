"""Register a user's vision encoder as an expert family from its declaration (``CustomExpertSpec``).

The factory (``module:function``) is imported only here, when the family is registered, so the spec layer stays
free of model code. Once registered the family is like any built-in one: every strategy, fusion and stage sees it
by name. Every preset (``tiny``, ``tiny_random``, ``paper``) is the declared encoder, with its own weights unless an
expert entry says ``pretrained: false``.

A factory module that is not installed may sit beside the declaring YAML (or one folder up, or in the working
directory, where recipes are looked up too): that folder is then added to ``sys.path`` and to ``PYTHONPATH``, so
the Ray worker processes started from this one can import it as well. The expert module a factory's encoder is
wrapped in (``factory_expert.py``) and torch are imported when the encoder is first checked or built.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from eaglesearch.model.experts.preset import ExpertPreset
from eaglesearch.model.experts.registry import (
    ExpertFamily,
    expert_names,
    get_family,
    register_expert,
    resolve_expert,
    unregister_expert,
)
from eaglesearch.spec import ExpertSpec
from eaglesearch.spec.custom_expert import CustomExpertSpec, DeclarationError

if TYPE_CHECKING:
    from torch import nn

    from eaglesearch.model.experts.base import VisionExpert

_DECLARED: dict[str, CustomExpertSpec] = {}


def _add_import_root(root: Path) -> None:
    """Make modules under ``root`` importable here and in child processes (Ray workers inherit the environment)."""
    text = str(root)
    if text not in sys.path:
        sys.path.append(text)
        importlib.invalidate_caches()
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if text not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([*paths, text])


def _import(module_name: str, roots: Sequence[Path]) -> object:
    top = module_name.split(".")[0]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if (err.name or "").split(".")[0] != top:  # the module exists but needs something that is not installed
            raise
        for root in roots:
            if (root / top).is_dir() or (root / f"{top}.py").is_file():
                _add_import_root(root)
                return importlib.import_module(module_name)
        raise


def load_factory(path: str, roots: Sequence[Path] = ()) -> Callable[..., nn.Module]:
    """The callable ``module:function`` names, looked up on ``sys.path`` and then in ``roots``;
    ``DeclarationError`` (field ``factory``) naming what failed and how to fix it."""
    module_name, _, attr = path.partition(":")
    try:
        module = _import(module_name, roots)
    except ImportError as err:
        where = f"; also looked in {', '.join(str(r) for r in roots)}" if roots else ""
        raise DeclarationError("factory", f"custom expert factory '{path}': cannot import module '{module_name}' "
                               f"({err}{where}); install it or put its folder on PYTHONPATH") from None
    except Exception as err:  # noqa: BLE001 - any error while importing user code is reported, not raised
        raise DeclarationError("factory", f"custom expert factory '{path}': importing '{module_name}' raised "
                               f"{type(err).__name__}: {err}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise DeclarationError("factory", f"custom expert factory '{path}': module '{module_name}' has no callable "
                               f"'{attr}'")
    return factory


def check_declaration(declared: CustomExpertSpec, factory: Callable[..., nn.Module]) -> None:
    """Build the encoder (random init) and run one zero image at the declared resolution through it: the feature
    map must have the declared channels and a resolution/stride grid. ``DeclarationError`` names the field to fix."""
    import torch
    from torch import Tensor, nn

    side, stride = declared.resolution, declared.stride
    if side % stride:
        raise DeclarationError("stride", f"resolution {side} is not a multiple of stride {stride}; declare a "
                               "resolution the encoder's stride divides")
    try:
        encoder = factory(pretrained=False)
    except Exception as err:  # noqa: BLE001 - user code: report, don't crash
        raise DeclarationError("factory", f"'{declared.factory}(pretrained=False)' raised {type(err).__name__}: "
                               f"{err}") from None
    if not isinstance(encoder, nn.Module):
        raise DeclarationError("factory", f"'{declared.factory}' returned {type(encoder).__name__}, not a "
                               "torch.nn.Module")
    try:
        with torch.no_grad():
            features = encoder.eval()(torch.zeros(1, 3, side, side))
    except Exception as err:  # noqa: BLE001
        raise DeclarationError("factory", f"the encoder from '{declared.factory}' failed on a (1, 3, {side}, {side}) "
                               f"image: {type(err).__name__}: {err}") from None
    if not isinstance(features, Tensor) or features.dim() != 4:
        got = tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__
        raise DeclarationError("factory", f"the encoder from '{declared.factory}' returned {got}; it must return a "
                               "(B, channels, H, W) feature map")
    channels, height, width = features.shape[1:]
    if channels != declared.channels:
        raise DeclarationError("channels", f"declares channels: {declared.channels} but the encoder's features have "
                               f"{channels} channels at {side} px; set channels: {channels}")
    grid = side // stride
    if (height, width) != (grid, grid):
        hint = f"; set stride: {side // height}" if height and side % height == 0 and height == width else ""
        raise DeclarationError("stride", f"declares stride {stride} (a {grid}x{grid} grid at {side} px) but the "
                               f"encoder's features are {height}x{width}{hint}")


def register_custom_expert(declared: CustomExpertSpec, roots: Sequence[Path] = (), check: bool = False) -> ExpertFamily:
    """Register ``declared`` as an expert family; ``check`` runs :func:`check_declaration` first.

    Registering the same declaration again is a no-op; a different declaration under a custom family's name
    replaces it (the latest wins: trials carry their own declaration, and the worker re-registers it before
    building). A built-in family's name cannot be declared."""
    if declared.name in expert_names():
        if _DECLARED.get(declared.name) == declared:
            return get_family(declared.name)
        if declared.name not in _DECLARED:
            raise DeclarationError("name", f"custom expert '{declared.name}' has the name of a built-in expert "
                                   "family; rename it")
    factory = load_factory(declared.factory, roots)
    if check:
        check_declaration(declared, factory)
    preset = ExpertPreset(architecture=declared.factory, resolution=declared.resolution, mean=declared.mean,
                          std=declared.std, feature_layer=declared.feature_layer, stride=declared.stride,
                          weights=declared.factory if declared.pretrained else None, sized=False)

    def build(spec: ExpertSpec, preset: ExpertPreset) -> VisionExpert:
        from eaglesearch.model.experts.factory_expert import FactoryExpert

        return FactoryExpert(spec, preset, declared, factory(pretrained=bool(spec.pretrained)))

    family = ExpertFamily(name=declared.name, presets={"tiny": preset, "tiny_random": preset, "paper": preset},
                          build=build, description=declared.description or f"custom: {declared.factory}")
    unregister_expert(declared.name)
    _DECLARED[declared.name] = declared
    return register_expert(family)


def declare_expert(declared: CustomExpertSpec, roots: Sequence[Path]) -> None:
    """The search-space loader's ``declare_expert``: register with :func:`check_declaration`."""
    register_custom_expert(declared, roots, check=True)


def declarations_snapshot() -> dict[str, CustomExpertSpec]:
    """The declarations registered now, for :func:`restore_declarations`."""
    return dict(_DECLARED)


def restore_declarations(snapshot: dict[str, CustomExpertSpec]) -> None:
    _DECLARED.clear()
    _DECLARED.update(snapshot)


def declaration_of(name: str) -> CustomExpertSpec | None:
    """The declaration family ``name`` was registered from (``None`` for built-in families)."""
    return _DECLARED.get(name)


def resolve_declared_expert(spec: ExpertSpec) -> ExpertSpec:
    """``resolve_expert`` that also attaches the family's declaration (e.g. one found through an entry point), so
    the trial carries it (module-level: the TrialFactory that holds it must pickle for Ray Tune)."""
    resolved = resolve_expert(spec)
    declared = _DECLARED.get(resolved.name)
    if resolved.custom is None and declared is not None:
        resolved = resolved.model_copy(update={"custom": declared})
    return resolved
