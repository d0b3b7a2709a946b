"""The expert registry: every vision-expert family registers itself here by name.

A family (one module per family: ``clip.py``, ``convnext.py``, ``sam.py``, ``dinov2.py``, ``eva02.py``,
``siglip.py``, ``pix2struct.py``) declares its presets (``tiny`` and ``paper``), a builder, and
whether it can be tiled. The rest of the code base only uses three functions: :func:`expert_names`,
:func:`resolve_expert` (fill ``preset``/``resolution`` defaults and validate, without building anything — the spec
layer calls it while checking a search space) and :func:`build_expert` (which wraps the expert in a
:class:`~eaglesearch.model.tiling.TiledExpert` when the spec asks for ``resize: tile``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from eaglesearch.model.experts.base import ExpertPreset, VisionExpert
from eaglesearch.model.tiling import TiledExpert
from eaglesearch.spec import ExpertSpec

DEFAULT_PRESET = "tiny"
ExpertBuilder = Callable[[ExpertSpec, ExpertPreset], VisionExpert]


@dataclass(frozen=True)
class ExpertFamily:
    """A named expert family: its presets (``tiny`` and ``paper``) and how to build one from a resolved spec.

    ``tileable``: the family is a plain ViT with block access (``is_vit``: ``vit_embed``, ``vit_blocks``,
    ``vit_to_map``), so it accepts ``resize: tile`` (each crop goes through the same encoder) and may lead the
    ``llava_hr`` fusion (run block by block); a preset may opt out (``ExpertPreset.tileable``). This is the
    family's own declaration: :func:`is_plain_vit` reads it, no list of names elsewhere does.
    """

    name: str
    description: str
    presets: Mapping[str, ExpertPreset]
    build: ExpertBuilder
    tileable: bool = False


_FAMILIES: dict[str, ExpertFamily] = {}


def register_expert(family: ExpertFamily) -> ExpertFamily:
    """Add ``family`` to the registry (each family module calls this at import). Names must be unique."""
    if family.name in _FAMILIES:
        raise ValueError(f"expert family '{family.name}' is registered twice; give one of them another name")
    missing = {"tiny", "paper"} - set(family.presets)
    if missing:
        raise ValueError(f"expert family '{family.name}' must declare presets tiny and paper; "
                         f"missing {sorted(missing)}")
    if "tiny_random" not in family.presets:  # the same architecture, random init, for fast unit tests
        family = dataclasses.replace(family, presets={
            **family.presets, "tiny_random": dataclasses.replace(family.presets["tiny"], pretext=None)})
    _FAMILIES[family.name] = family
    return family


def unregister_expert(name: str) -> None:
    """Forget family ``name`` (no-op when absent): a user's encoder re-declared differently replaces its family."""
    _FAMILIES.pop(name, None)


def families_snapshot() -> dict[str, ExpertFamily]:
    """The registry as it is now, for :func:`restore_families` (a trial's registrations are undone after it)."""
    return dict(_FAMILIES)


def restore_families(snapshot: Mapping[str, ExpertFamily]) -> None:
    _FAMILIES.clear()
    _FAMILIES.update(snapshot)


def expert_names() -> list[str]:
    """Sorted names of all registered expert families."""
    return sorted(_FAMILIES)


def get_family(name: str) -> ExpertFamily:
    """The registered family ``name``; ``ValueError`` listing the known names otherwise."""
    try:
        return _FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown expert '{name}'; registered experts: {', '.join(expert_names())}") from None


def get_preset(spec: ExpertSpec) -> ExpertPreset:
    """The preset a spec refers to (``tiny`` when the spec leaves it unset)."""
    family = get_family(spec.name)
    preset = spec.preset or DEFAULT_PRESET
    if preset not in family.presets:
        raise ValueError(f"expert '{spec.name}' has no preset '{preset}'; choose one of {sorted(family.presets)}")
    return family.presets[preset]


def resolve_expert(spec: ExpertSpec) -> ExpertSpec:
    """A copy of ``spec`` with ``preset``, ``resolution`` and ``pretrained`` filled in, validated against the
    family's preset (paper presets load their published weights unless ``pretrained: false``)."""
    preset = get_preset(spec)
    pretrained = spec.pretrained
    if pretrained is None:
        pretrained = bool(spec.checkpoint) or preset.weights is not None or preset.pretext is not None
    resolved = spec.model_copy(update={
        "preset": spec.preset or DEFAULT_PRESET,
        "resolution": spec.resolution if spec.resolution is not None else preset.resolution,
        "pretrained": pretrained,
    })
    assert resolved.resolution is not None
    if resolved.resolution % preset.stride:
        lower = max(preset.stride, resolved.resolution // preset.stride * preset.stride)
        raise ValueError(f"expert '{spec.name}': resolution {resolved.resolution} is not a multiple of its stride "
                         f"{preset.stride}; use e.g. {lower} or {lower + preset.stride}")
    if resolved.checkpoint and not resolved.pretrained:
        raise ValueError(f"expert '{spec.name}': checkpoint '{resolved.checkpoint}' is set but pretrained is false; "
                         "set `pretrained: true` to load it, or drop `checkpoint:`")
    if resolved.pretrained and not resolved.checkpoint and preset.weights is None and preset.pretext is None:
        raise ValueError(f"expert '{spec.name}': preset '{resolved.preset}' is random-init and has no published "
                         "weights; use `preset: paper` or `preset: tiny`, or set `checkpoint:` to a weights file for "
                         "this architecture")
    if resolved.resize == "tile" and get_family(spec.name).tileable and not preset.tileable:
        raise ValueError(f"expert '{spec.name}': preset '{resolved.preset}' cannot be tiled (it is not a plain ViT); "
                         "use `resize: interpolate`, or a preset of this expert that can be tiled")
    if resolved.resize == "tile" and not get_family(spec.name).tileable:
        tileable = ", ".join(n for n in expert_names() if _FAMILIES[n].tileable)
        raise ValueError(f"expert '{spec.name}' cannot be tiled (resize: tile is for plain ViT experts: {tileable}); "
                         "use `resize: interpolate` and raise its `resolution` instead")
    if resolved.trainable_blocks is not None and resolved.trainable_blocks > preset.blocks:
        fix = f"use 1 to {preset.blocks}, or" if preset.blocks else "it has none;"
        raise ValueError(f"expert '{spec.name}' (preset '{resolved.preset}') has {preset.blocks} blocks (ConvNeXt: "
                         f"stages) that can stay trainable and trainable_blocks={resolved.trainable_blocks} exceeds "
                         f"that; {fix} drop trainable_blocks to freeze the whole expert")
    return resolved


def is_plain_vit(spec: ExpertSpec) -> bool:
    """Whether the expert ``spec`` builds is a plain ViT with block access, as its family and preset declare
    (``tileable``); what tiling and ``llava_hr`` ask of an expert."""
    return get_family(spec.name).tileable and get_preset(spec).tileable


def build_expert(spec: ExpertSpec) -> VisionExpert:
    """Resolve ``spec`` and build its expert (random init unless ``pretrained``), tiled when ``resize: tile``.

    Freezing is the caller's choice: ``expert.freeze(resolved.trainable_blocks)`` when ``resolved.freeze``.
    """
    resolved = resolve_expert(spec)
    expert = get_family(resolved.name).build(resolved, get_preset(resolved))
    if resolved.resize == "tile":
        return TiledExpert(expert, resolved.tiles)
    return expert
