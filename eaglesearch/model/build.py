"""Build an :class:`EagleModel` from a :class:`ModelSpec` (the only place model parts are wired together).

Deterministic: call ``torch.manual_seed`` first and the same spec + tokenizer give identical parameters (timm and
transformers both initialise from the global torch RNG; parts are built in a fixed order: experts in spec order,
then the language model, then the fusion, then the projector).
"""

from __future__ import annotations

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


def build_eagle(spec: ModelSpec, tokenizer: PreTrainedTokenizerBase) -> EagleModel:
    """The Eagle model for ``spec``, with every freeze flag applied (experts, LM, projector).

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
        resolved = resolve_expert(expert_spec)
        expert = build_expert(resolved)
        if resolved.freeze:
            expert.freeze(resolved.trainable_blocks)
        experts[resolved.name] = expert

    lm = build_language_model(spec.lm, tokenizer)
    if spec.lm.freeze:
        lm.requires_grad_(False)

    lm_dim = lm.config.hidden_size
    fusion = build_fusion(spec, list(experts.values()), lm_dim)
    projector = nn.Identity() if fusion.owns_projection else build_projector(spec.projector, fusion.out_dim, lm_dim)
    if spec.freeze_projector:
        fusion.requires_grad_(False)
        projector.requires_grad_(False)

    return EagleModel(experts, fusion, projector, lm, image_token_id=image_token_id, grid=spec.grid)
