"""The causal language model: a tiny random-init Llama built from the spec, or a pretrained checkpoint (hub id,
local folder, ``pkg://`` package folder; a GGUF file in it with ``gguf_file``).

A trial builds its LM several times (once per pre-aligned expert, once for the full model), and a GGUF file takes
seconds to dequantise (SmolLM2-135M: ~16 s on 2 cores), so the last pretrained LM loaded in this process is kept
(after its embeddings were resized for the tokenizer) and later builds get a deep copy of it: identical weights,
no second load, no random draw. The price is one extra copy of the LM in memory.
"""

from __future__ import annotations

import copy

from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, PreTrainedModel, PreTrainedTokenizerBase

from eaglesearch.model.pretrained import gguf_arguments, resolve_pretrained
from eaglesearch.spec import LanguageModelSpec

_LOADED: dict[tuple, PreTrainedModel] = {}


def build_language_model(spec: LanguageModelSpec, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    """The LM for ``spec`` with an embedding row for every token of ``tokenizer`` (including ``<image>``).

    ``tiny_llama``: ``LlamaConfig`` from the spec's sizes, random init (deterministic under ``torch.manual_seed``),
    tied input/output embeddings, pad/eos ids from the tokenizer, no BOS. ``hf``: ``from_pretrained`` on
    ``name_or_path`` (``gguf_file`` in it when given, dequantised to float32); embeddings are resized when the
    tokenizer has tokens the checkpoint lacks.
    """
    if spec.kind == "tiny_llama":
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=spec.hidden_size,
            intermediate_size=spec.intermediate_size,
            num_hidden_layers=spec.num_layers,
            num_attention_heads=spec.num_heads,
            num_key_value_heads=spec.num_kv_heads,
            max_position_embeddings=spec.max_positions,
            tie_word_embeddings=spec.tie_embeddings,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            bos_token_id=None,
        )
        return LlamaForCausalLM(config)
    assert spec.name_or_path is not None
    key = (spec.name_or_path, spec.gguf_file, len(tokenizer), tokenizer.pad_token_id)
    if key not in _LOADED:
        _LOADED.clear()  # keep one pretrained LM, not one per spec ever built
        _LOADED[key] = _load_pretrained(spec, tokenizer)
    return copy.deepcopy(_LOADED[key])


def _load_pretrained(spec: LanguageModelSpec, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    assert spec.name_or_path is not None
    folder = resolve_pretrained(spec.name_or_path, "lm.name_or_path")
    extra = gguf_arguments(folder, spec.gguf_file, "lm.gguf_file")
    try:
        lm = AutoModelForCausalLM.from_pretrained(folder, **extra)
    except OSError as err:
        raise RuntimeError(f"could not load language model '{spec.name_or_path}' ({str(err).splitlines()[0]}); if "
                           "this machine is offline, download it elsewhere and set lm.name_or_path to the local "
                           "folder (or point HF_HOME at a cache that holds it)") from None
    except ImportError as err:  # GGUF support needs the gguf package (and accelerate)
        raise RuntimeError(f"could not load lm.gguf_file '{spec.gguf_file}': {str(err).splitlines()[0]}; install "
                           "the missing package (pip install gguf accelerate)") from None
    if len(tokenizer) > lm.get_input_embeddings().num_embeddings:
        lm.resize_token_embeddings(len(tokenizer))
    if tokenizer.pad_token_id is not None:
        lm.config.pad_token_id = tokenizer.pad_token_id
    return lm
