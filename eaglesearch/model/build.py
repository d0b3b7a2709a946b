"""Build an :class:`EagleModel` from a :class:`ModelSpec` (the only place model parts are wired together).

Deterministic: with ``seed``, every part is initialised from its own generator state, derived from the seed and the
part's name (``expert/<name>``, ``lm``, ``fusion``, ``projector``). An expert therefore starts from the same weights
whichever experts sit beside it, and the LM is the same in a one-expert pre-alignment model and in the full model
(the stage pipeline relies on it). Without ``seed`` the parts draw from the global torch RNG in a fixed order
(experts in spec order, then the LM, the fusion, the projector).

Memory: pretrained weights are loaded in ``dtype`` (``eaglesearch.model.language.load_dtype`` of the device the
model will run on: bf16 for CUDA), so a 7B LM occupies ~14 GB of host RAM per rank rather than ~28 GB; parts built
from random init are cast to it too. ``weights=False`` builds the architecture only (no checkpoint read, the LM from
its config): what ``plan`` sizes on the ``meta`` device.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from eaglesearch.model.eagle import EagleModel
from eaglesearch.model.experts import VisionExpert, build_expert, resolve_expert
from eaglesearch.model.fusions import build_fusion
from eaglesearch.model.language import build_language_model
from eaglesearch.model.projector import build_projector
from eaglesearch.model.tokenizer import IMAGE_TOKEN
from eaglesearch.model.validate import validate_model
from eaglesearch.spec import ModelSpec


def part_seed(seed: int, part: str) -> int:
    """The torch seed of one model part: a stable hash of the trial seed and the part's name."""
    digest = hashlib.sha256(f"eaglesearch/{seed}/{part}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


@contextlib.contextmanager
def _seeded(seed: int | None, part: str) -> Iterator[None]:
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(part_seed(seed, part))
        yield


def cast_parameters(module: nn.Module, dtype: torch.dtype | None) -> nn.Module:
    """``module`` with its floating-point parameters in ``dtype`` (in place; buffers untouched). ``None``: as is."""
    if dtype is not None:
        for param in module.parameters():
            if param.is_floating_point() and param.dtype != dtype:
                param.data = param.data.to(dtype)
    return module


def build_eagle(spec: ModelSpec, tokenizer: PreTrainedTokenizerBase, seed: int | None = None, *,
                dtype: torch.dtype | None = None, weights: bool = True) -> EagleModel:
    """The Eagle model for ``spec``, with every freeze flag applied (experts, LM, projector), its parameters in
    ``dtype`` (default fp32; buffers such as normalisation constants stay fp32). ``weights=False``: nothing is read
    from disk or the hub (experts random-init, the LM built from its config).

    ``freeze_projector`` freezes everything between the experts and the LM: the projector and the fusion's own
    parameters (sequence_append's per-expert projectors, the injection fusions' adapters and attention).
    ``ValueError`` for a combination the fusion cannot take (:func:`~eaglesearch.model.validate.validate_model`).
    """
    validate_model(spec)
    image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    if image_token_id is None or image_token_id == tokenizer.unk_token_id:
        raise ValueError(f"the tokenizer has no '{IMAGE_TOKEN}' token; load it with "
                         "eaglesearch.model.load_tokenizer, which adds it")

    experts: dict[str, VisionExpert] = {}
    for expert_spec in spec.experts:
        if not weights:
            expert_spec = expert_spec.model_copy(update={"pretrained": False, "checkpoint": None})
        resolved = resolve_expert(expert_spec)
        with _seeded(seed, f"expert/{resolved.name}"):
            expert = cast_parameters(build_expert(resolved), dtype)
        if resolved.freeze:
            expert.freeze(resolved.trainable_blocks)
        experts[resolved.name] = expert

    with _seeded(seed, "lm"):
        lm = build_language_model(spec.lm, tokenizer, dtype=dtype, weights=weights)
    if spec.lm.freeze:
        lm.requires_grad_(False)

    lm_dim = lm.config.hidden_size
    with _seeded(seed, "fusion"):
        fusion = cast_parameters(build_fusion(spec, list(experts.values()), lm_dim), dtype)
    with _seeded(seed, "projector"):
        projector = nn.Identity() if fusion.owns_projection else build_projector(spec.projector, fusion.out_dim,
                                                                                  lm_dim)
        projector = cast_parameters(projector, dtype)
    if spec.freeze_projector:
        fusion.requires_grad_(False)
        projector.requires_grad_(False)

    return EagleModel(experts, fusion, projector, lm, image_token_id=image_token_id, grid=spec.grid)
