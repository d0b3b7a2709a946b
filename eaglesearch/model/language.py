"""The causal language model: a tiny random-init Llama built from the spec, or a hub/local checkpoint."""

from __future__ import annotations

from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, PreTrainedModel, PreTrainedTokenizerBase

from eaglesearch.spec import LanguageModelSpec


def build_language_model(spec: LanguageModelSpec, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    """The LM for ``spec`` with an embedding row for every token of ``tokenizer`` (including ``<image>``).

    ``tiny_llama``: ``LlamaConfig`` from the spec's sizes, random init (deterministic under ``torch.manual_seed``),
    tied input/output embeddings, pad/eos ids from the tokenizer, no BOS. ``hf``: ``from_pretrained`` on
    ``name_or_path``; embeddings are resized when the tokenizer has tokens the checkpoint lacks.
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
    try:
        lm = AutoModelForCausalLM.from_pretrained(spec.name_or_path)
    except OSError as err:
        raise RuntimeError(f"could not load language model '{spec.name_or_path}' ({str(err).splitlines()[0]}); if "
                           "this machine is offline, download it elsewhere and set lm.name_or_path to the local "
                           "folder (or point HF_HOME at a cache that holds it)") from None
    if len(tokenizer) > lm.get_input_embeddings().num_embeddings:
        lm.resize_token_embeddings(len(tokenizer))
    if tokenizer.pad_token_id is not None:
        lm.config.pad_token_id = tokenizer.pad_token_id
    return lm
