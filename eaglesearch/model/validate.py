"""Which model specs can be built: cheap checks (no model is built) for combinations the fusions cannot take.

:func:`validate_model` is the search's ``trial_validator``: ``eaglesearch validate`` runs it on every candidate, so
a wrong combination is reported with its file and line before anything trains. It checks:

* the experts resolve (known family, preset, resolution a multiple of the stride);
* the fusion's own rules (``model/fusions/rules.py``): the injection fusions (``llava_hr``, ``mini_gemini``,
  ``deformable``) have a low-resolution query expert first and at least one expert of strictly higher input
  resolution after it, and no tiled expert; ``llava_hr``'s first expert is a ViT with block access (its family and
  preset say so: ``is_plain_vit``); a tiled expert is used with ``channel_concat`` only when it is the only expert;
  ``sequence_append`` takes any mix.

What needs built experts (e.g. ``fusion_heads`` dividing the query expert's width) is checked when the model is
built, with the same kind of message.
"""

from __future__ import annotations

from pathlib import Path

from eaglesearch.model.experts.custom import declare_expert, resolve_declared_expert
from eaglesearch.model.experts.discovery import PluginError, discover_experts
from eaglesearch.model.experts.registry import expert_names, get_family, is_plain_vit, resolve_expert
from eaglesearch.model.fusions.rules import FUSION_RULES
from eaglesearch.spec import LoadedSearch, ModelSpec, SpecError, TrialSpec, load_search_space


def validate_model(spec: ModelSpec) -> None:
    """``ValueError`` with the reason and a fix when ``spec`` cannot be built; ``None`` when it can."""
    experts = [resolve_expert(e) for e in spec.experts]
    vits = [n for n in expert_names() if get_family(n).tileable]
    FUSION_RULES[spec.fusion].check(experts, is_plain_vit, vits)


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
