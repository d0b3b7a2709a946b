"""Which model specs can be built: cheap checks (no model is built) for combinations the fusions cannot take.

:func:`validate_model` is the search's ``trial_validator``: ``eaglesearch validate`` runs it on every candidate, so
a wrong combination is reported with its file and line before anything trains. It checks:

* the experts resolve (known family, preset, resolution a multiple of the stride);
* the injection fusions (``query_first`` in ``fusions/catalog.py``: ``llava_hr``, ``mini_gemini``, ``deformable``)
  have a low-resolution query expert first and at least one expert of strictly higher input resolution after it,
  and no tiled expert;
* a ``vit_query`` fusion's (``llava_hr``) first expert is a plain ViT (its family declares ``vit`` and its preset is
  ``tileable``: it is run block by block);
* a tiled expert is used with a ``tiles_alone`` fusion (``channel_concat``) only when it is the only expert (its
  (1 + tiles²)·grid² tokens cannot be concatenated on channels with another expert's grid² tokens);
  ``sequence_append`` takes any mix.

Everything here reads declarations (expert presets, fusion kinds) and imports no torch. What needs built experts
(e.g. ``fusion_heads`` dividing the query expert's width: ``FusionKind.needs_built_experts``) is checked when the
model is built on ``meta`` (``trial/preflight.py``, which ``eaglesearch validate`` runs), with the same kind of
message.
"""

from __future__ import annotations

from pathlib import Path

from eaglesearch.model.experts.custom import declare_expert, resolve_declared_expert
from eaglesearch.model.experts.discovery import PluginError, discover_experts
from eaglesearch.model.experts.registry import expert_names, get_family, get_preset, resolve_expert
from eaglesearch.model.fusions.catalog import FusionKind, fusion_kind
from eaglesearch.spec import ExpertSpec, LoadedSearch, ModelSpec, SpecError, TrialSpec, load_search_space


def is_plain_vit(expert: ExpertSpec) -> bool:
    """Whether ``expert`` is a plain ViT with block access: its family declares ``vit`` and its preset is not an
    exception (EVA-02's ViTDet ``paper`` preset is windowed, so not ``tileable``)."""
    return get_family(expert.name).vit and get_preset(expert).tileable


def plain_vit_families() -> list[str]:
    return [n for n in expert_names() if get_family(n).vit]


def validate_model(spec: ModelSpec) -> None:
    """``ValueError`` with the reason and a fix when ``spec`` cannot be built; ``None`` when it can."""
    experts = [resolve_expert(e) for e in spec.experts]
    got = "+".join(e.label for e in experts)
    tiled = [e.label for e in experts if e.resize == "tile"]
    kind = fusion_kind(spec.fusion)
    if kind.tiles_alone and tiled and len(experts) > 1:
        raise ValueError(f"fusion '{kind.name}' cannot mix tiled and other experts ({', '.join(tiled)} in {got}): "
                         "a tiled expert gives (1 + tiles²)·grid² tokens, the others grid²; use fusion "
                         "sequence_append, or resize: interpolate")
    if kind.query_first:
        _check_injection(kind, experts, got, tiled)


def _check_injection(kind: FusionKind, experts: list[ExpertSpec], got: str, tiled: list[str]) -> None:
    fusion = kind.name
    query = "a low-resolution ViT query expert" if kind.vit_query else "a low-resolution query expert"
    if len(experts) < 2:
        raise ValueError(f"fusion '{fusion}' needs {query} first and at least one high-resolution expert; got {got} "
                         "— add a higher-resolution expert after it (e.g. convnext@256), or use channel_concat")
    if tiled:
        raise ValueError(f"fusion '{fusion}' cannot take tiled experts ({', '.join(tiled)} in {got}); use "
                         "resize: interpolate, or fusion sequence_append")
    first = experts[0]
    if kind.vit_query and not is_plain_vit(first):
        which = f"'{first.name}'" if not get_family(first.name).vit else \
            f"'{first.name}' with preset '{first.preset}' (not a plain ViT)"
        raise ValueError(f"fusion '{fusion}' injects into the blocks of its first expert, which must be a ViT "
                         f"({', '.join(plain_vit_families())}); got {which} first in {got} — put a ViT first")
    assert first.resolution is not None
    low = [e.label for e in experts[1:] if e.resolution is not None and e.resolution <= first.resolution]
    if low:
        raise ValueError(f"fusion '{fusion}' needs every expert after the first to see a higher resolution than "
                         f"{first.label}; not so for {', '.join(low)} in {got} — raise their resolution or lower "
                         f"{first.name}'s")


def validate_trial(trial: TrialSpec) -> None:
    """``validate_model`` for a whole trial: the search-space loader's ``trial_validator`` (module-level, so the
    TrialFactory that holds it stays picklable for Ray Tune)."""
    validate_model(trial.model)


def load_checked_search(path: str | Path) -> LoadedSearch:
    """Load a search space checked against this model registry: expert names, preset defaults, and every
    combination the model layer can't build (``validate_model``). Encoders of ``eaglesearch.experts`` entry points
    and of the ``experts:`` sections are registered (each run once on a zero image) before the names are checked.
    Raises ``SpecError``."""
    try:
        discover_experts(check=True)
    except PluginError as err:
        raise SpecError.single(err.field, str(err)) from None
    return load_search_space(path, known_experts=expert_names(), expert_resolver=resolve_declared_expert,
                             trial_validator=validate_trial, declare_expert=declare_expert)
