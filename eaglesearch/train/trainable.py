"""Which parameters a stage trains: ``requires_grad`` of every model part, set from the stage's ``trainable``.

:func:`apply_trainable` sets every part from scratch, so a stage may unfreeze what the previous stage froze. The
settings (:data:`~eaglesearch.spec.train.PartSetting`) are

* ``spec``: as the model spec says (an expert's ``freeze`` / ``trainable_blocks``, ``lm.freeze``,
  ``freeze_projector``), i.e. what :func:`~eaglesearch.model.build_eagle` applied;
* ``all`` / ``none`` (the projector: ``true`` / ``false``);
* N >= 1: only the last N blocks. For an expert, its last N ViT blocks / ConvNeXt stages and what follows them
  (:meth:`~eaglesearch.model.experts.base.VisionExpert.freeze`); for the LM, its last N decoder layers plus the
  final norm, while the embeddings and the output head (often tied to them) stay frozen.

The projector setting covers the fusion's own parameters too (per-expert projectors, adapters, attention), as
``freeze_projector`` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import nn

from eaglesearch.model.eagle import EagleModel
from eaglesearch.model.experts.base import VisionExpert
from eaglesearch.spec import ExpertSpec, ModelSpec
from eaglesearch.spec.train import PartSetting, StageSpec, TrainableSpec

_LAYER_PATHS = ("model.layers", "transformer.h", "model.decoder.layers", "gpt_neox.layers")
_NORM_PATHS = ("model.norm", "transformer.ln_f", "model.decoder.final_layer_norm", "gpt_neox.final_layer_norm",
               "model.final_layernorm")


def widen_trainable(model: EagleModel, stages: Sequence[StageSpec], spec: ModelSpec,
                    dtype: torch.dtype = torch.float32) -> EagleModel:
    """Cast to ``dtype`` (fp32: the master weights the optimizer updates) every parameter one of ``stages`` trains;
    the others keep the dtype they were loaded in (bf16 on GPU). Returns ``model``.

    Call it after moving the model to its device, so the wide copy never exists in host RAM. ``requires_grad`` is
    left as ``spec`` says (each stage applies its own trainable set when it starts)."""
    narrow = [p for p in model.parameters() if p.is_floating_point() and p.dtype != dtype]
    if not narrow:
        return model
    widen: dict[int, nn.Parameter] = {}
    for stage in stages:
        apply_trainable(model, stage.trainable, spec)
        widen.update({id(p): p for p in model.parameters() if p.requires_grad and p.dtype != dtype})
    apply_trainable(model, TrainableSpec(), spec)
    for param in widen.values():
        param.data = param.data.to(dtype)
    return model


def apply_trainable(model: EagleModel, trainable: TrainableSpec, spec: ModelSpec) -> dict[str, int]:
    """Set ``requires_grad`` of the experts, projector + fusion and LM of ``model`` (built from ``spec``) for one
    stage. Returns the trainable parameter counts: ``experts/<name>`` per expert, ``projector`` (with the
    fusion), ``lm`` and ``total`` (tied weights counted once).

    Experts named in ``trainable.experts`` but absent from the model are ignored: one recipe's trials differ in
    their experts (and a per-expert stage's model holds one)."""
    expert_specs = {e.name: e for e in spec.experts}
    for name, module in model.experts.items():
        if name not in expert_specs:
            raise ValueError(f"the model has expert '{name}' but the model spec does not; pass the spec it was "
                             "built from")
        expert = cast(VisionExpert, module)
        _set_expert(expert, name, trainable.expert_setting(name), expert_specs[name])
        expert.train(model.training)  # (un)freezing leaves a frozen expert's mode stale; follow the model's

    projector = not spec.freeze_projector if trainable.projector == "spec" else bool(trainable.projector)
    model.projector.requires_grad_(projector)
    model.fusion.requires_grad_(projector)

    _set_lm(model.lm, trainable.lm, spec.lm.freeze)

    counts = {f"experts/{name}": _trainable(expert) for name, expert in model.experts.items()}
    counts["projector"] = _trainable(model.projector) + _trainable(model.fusion)
    counts["lm"] = _trainable(model.lm)
    counts["total"] = _trainable(model)
    return counts


def _set_expert(expert: VisionExpert, name: str, setting: PartSetting, expert_spec: ExpertSpec) -> None:
    if setting == "spec":
        if expert_spec.freeze:
            expert.freeze(expert_spec.trainable_blocks)
        else:
            expert.unfreeze()
    elif setting == "all":
        expert.unfreeze()
    elif setting == "none":
        expert.freeze()
    else:
        try:
            expert.freeze(int(setting))
        except ValueError as err:
            raise ValueError(f"trainable.experts: {name}={setting}: {err}") from err


def _set_lm(lm: nn.Module, setting: PartSetting, frozen_in_spec: bool) -> None:
    if setting == "spec":
        lm.requires_grad_(not frozen_in_spec)
    elif setting in ("all", "none"):
        lm.requires_grad_(setting == "all")
    else:
        layers = decoder_layers(lm)
        n = int(setting)
        if n > len(layers):
            raise ValueError(f"trainable.lm={n} but the language model has {len(layers)} decoder layers; use 1 to "
                             f"{len(layers)}, or 'all'")
        lm.requires_grad_(False)
        for layer in list(layers)[len(layers) - n:]:
            layer.requires_grad_(True)
        norm = final_norm(lm)
        if norm is not None:
            norm.requires_grad_(True)


def decoder_layers(lm: nn.Module) -> nn.ModuleList:
    """The decoder layers of a causal LM, in order: ``model.layers`` (Llama-like), ``transformer.h`` (GPT-2-like),
    ..., else the one ``ModuleList`` as long as ``config.num_hidden_layers``."""
    for path in _LAYER_PATHS:
        found = _get(lm, path)
        if isinstance(found, nn.ModuleList):
            return found
    count = getattr(getattr(lm, "config", None), "num_hidden_layers", None)
    candidates = [m for _, m in lm.named_modules() if isinstance(m, nn.ModuleList) and len(m) == count]
    if count and len(candidates) == 1:
        return candidates[0]
    raise ValueError(f"cannot find the decoder layers of {type(lm).__name__} (looked for "
                     f"{', '.join(_LAYER_PATHS)} and a ModuleList of config.num_hidden_layers={count}); train the "
                     "LM with trainable.lm 'all', 'none' or 'spec' instead of last-N layers")


def final_norm(lm: nn.Module) -> nn.Module | None:
    """The norm after the last decoder layer (``model.norm`` for Llama-like LMs), or None when not found."""
    for path in _NORM_PATHS:
        found = _get(lm, path)
        if isinstance(found, nn.Module):
            return found
    return None


def _get(module: nn.Module, path: str) -> object:
    for part in path.split("."):
        module = getattr(module, part, None)  # type: ignore[assignment]
        if module is None:
            return None
    return module


def _trainable(module: nn.Module) -> int:
    return sum(p.numel() for _, p in module.named_parameters(remove_duplicate=True) if p.requires_grad)
