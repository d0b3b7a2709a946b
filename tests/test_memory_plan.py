"""The memory plan: closed-form estimates, the saved-tensor meter, and the fit check of validate/plan/run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM
from typer.testing import CliRunner

from eaglesearch.app.plan import memory_refusals, plan_memory
from eaglesearch.cli import app
from eaglesearch.model.memory import (
    BF16_MIXED,
    FP32,
    LMShape,
    ParamSplit,
    SavedTensorMeter,
    estimate_memory,
    lm_activation_bytes,
    param_split,
    vision_activation_bytes,
    vision_activations,
)
from eaglesearch.model.validate import load_checked_search

X5 = ["clip", "convnext", "sam", "pix2struct", "eva02"]
NO_LM = LMShape(layers=1, hidden=4, heads=1, kv_heads=1, intermediate=4, vocab=1)


def test_a_linear_models_states_are_16_bytes_per_trainable_parameter() -> None:
    layer = nn.Linear(100, 50)  # 5,050 parameters
    split = param_split(layer)
    assert split == ParamSplit(trainable=5050, frozen=0, largest_unit=5050)
    fp32 = estimate_memory(split, NO_LM, 0, micro_batch=1, seq_len=1, precision=FP32)
    assert (fp32.weights, fp32.grads, fp32.optimizer) == (5050 * 4, 5050 * 4, 5050 * 8)
    mixed = estimate_memory(split, NO_LM, 0, micro_batch=1, seq_len=1, precision=BF16_MIXED)
    assert (mixed.weights, mixed.grads, mixed.optimizer) == (5050 * 2, 5050 * 2, 5050 * 12)
    sgd = estimate_memory(split, NO_LM, 0, micro_batch=1, seq_len=1, precision=FP32, optimizer="sgd")
    assert sgd.optimizer == 5050 * 4

    layer.weight.requires_grad_(False)  # frozen: a weight, no gradient, no optimizer state
    frozen = estimate_memory(param_split(layer), NO_LM, 0, micro_batch=1, seq_len=1, precision=FP32)
    assert (frozen.weights, frozen.grads, frozen.optimizer) == (5050 * 4, 50 * 4, 50 * 8)


def test_fsdp_shards_the_states_and_adds_one_gathered_unit() -> None:
    split = ParamSplit(trainable=8_000, frozen=0, largest_unit=1_000)
    ddp = estimate_memory(split, NO_LM, 0, micro_batch=1, seq_len=1, precision=BF16_MIXED, gpus=8)
    fsdp = estimate_memory(split, NO_LM, 0, micro_batch=1, seq_len=1, precision=BF16_MIXED, gpus=8,
                           parallelism="fsdp")
    assert ddp.weights + ddp.grads + ddp.optimizer == 8_000 * 16 and ddp.gathered == 0
    assert fsdp.weights + fsdp.grads + fsdp.optimizer == 1_000 * 16
    assert fsdp.gathered == 1_000 * (2 + 2)
    assert fsdp.activations == ddp.activations  # each GPU still runs its own micro-batch


def test_the_meter_counts_what_autograd_keeps_not_the_parameters() -> None:
    layer = nn.Linear(64, 32, bias=False)
    x = torch.randn(10, 64, requires_grad=True)
    meter = SavedTensorMeter(list(layer.parameters()))
    with meter.hooks():
        layer(x).sum()
    assert meter.bytes == x.numel() * 4  # the input, for the weight's gradient; the weight itself is not counted


def _saved_bytes(layers: int, batch: int, seq: int) -> int:
    config = LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=160, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).train()
    meter = SavedTensorMeter(list(model.parameters()))
    with meter.hooks():
        model(input_ids=torch.randint(0, 300, (batch, seq)))
    return meter.bytes


def test_lm_layer_activations_match_what_a_llama_layer_saves() -> None:
    """The closed form per decoder layer equals the bytes autograd keeps for one more layer of a real Llama."""
    batch, seq = 2, 24
    measured = _saved_bytes(2, batch, seq) - _saved_bytes(1, batch, seq)
    shape = LMShape(layers=1, hidden=64, heads=4, kv_heads=2, intermediate=160, vocab=300)
    one, _ = lm_activation_bytes(shape, batch, seq, FP32, checkpointing=False)
    two, _ = lm_activation_bytes(shape.__class__(**{**shape.__dict__, "layers": 2}), batch, seq, FP32, False)
    assert two - one == measured


def test_checkpointing_and_smaller_micro_batches_shrink_activations() -> None:
    vicuna = LMShape(layers=32, hidden=4096, heads=32, kv_heads=32, intermediate=11008, vocab=32000)
    full, logits = lm_activation_bytes(vicuna, 4, 2048, BF16_MIXED, checkpointing=False)
    ckpt, same_logits = lm_activation_bytes(vicuna, 4, 2048, BF16_MIXED, checkpointing=True)
    half, _ = lm_activation_bytes(vicuna, 2, 2048, BF16_MIXED, checkpointing=False)
    assert ckpt < full / 5 and same_logits == logits and half * 2 == full
    assert logits == 4 * 2048 * 32000 * (2 + 4 + 4)  # bf16 logits, fp32 log-softmax and its gradient


def test_vision_activations_traced_on_meta_match_a_real_cpu_trace() -> None:
    from eaglesearch.model import build_eagle
    from eaglesearch.spec import ModelSpec
    from eaglesearch.trial.plan import Vocabulary

    spec = ModelSpec.model_validate({"experts": [{"name": "clip"}, {"name": "convnext"}], "grid": 8})
    with torch.device("meta"):
        meta = build_eagle(spec, Vocabulary(400))
    real = build_eagle(spec, Vocabulary(400), seed=0)
    traced, measured = vision_activation_bytes(meta, 128), vision_activation_bytes(real, 128)
    assert measured > 0 and abs(traced - measured) / measured < 0.1


class _BlockStack(nn.Module):
    """A stand-in vision side: an expert of ``depth`` identical blocks (what checkpointing wraps) under ``experts``."""

    def __init__(self, depth: int) -> None:
        super().__init__()
        expert = nn.Module()
        expert.blocks = nn.ModuleList(nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 16))
                                      for _ in range(depth))
        expert.freezable_blocks = lambda: list(expert.blocks)
        self.experts = nn.ModuleDict({"stack": expert})

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float().reshape(8, -1)[:, :16]
        for block in self.experts["stack"].blocks:
            x = block(x)
        return x


def test_checkpointed_expert_blocks_keep_only_their_inputs_plus_one_block() -> None:
    """Each more block adds its saved activations without checkpointing, only its input with it; the one block
    rebuilt during backward is counted once. A frozen stack keeps nothing either way."""
    torch.manual_seed(0)
    shallow, deep = vision_activations(_BlockStack(2), 16), vision_activations(_BlockStack(5), 16)
    block_input, block_saves = 8 * 16 * 4, 8 * (16 + 64) * 4  # Linear inputs: x (16 wide) and ReLU's output (64)
    assert deep.plain - shallow.plain == 3 * block_saves
    assert deep.checkpointed - shallow.checkpointed == 3 * block_input
    assert deep.checkpointed < deep.plain and deep.plain == vision_activation_bytes(_BlockStack(5), 16)
    frozen = _BlockStack(5).requires_grad_(False)
    assert vision_activations(frozen, 16) == vision_activations(frozen, 16).__class__(plain=0, checkpointed=0)
    params = ParamSplit(trainable=0, frozen=0, largest_unit=0)
    with_ckpt = estimate_memory(params, NO_LM, deep.plain, micro_batch=4, seq_len=1, precision=FP32,
                                checkpointing=True, vision_bytes_checkpointed=deep.checkpointed)
    assert with_ckpt.vision_activations == 4 * deep.checkpointed


def _space(tmp_path: Path, repo: Path, resources: dict, micro_batch: int = 1) -> Path:
    path = tmp_path / "x5.yaml"
    path.write_text(yaml.safe_dump({
        "name": "x5-memory", "recipe": str(repo / "experiments" / "paper_eagle_7b.yaml"),
        "overrides": {"train": {"micro_batch_size": micro_batch}},
        "strategy": {"kind": "grid", "factors": {"experts": [X5]}},
        "resources": {"cpus_per_trial": 8, "gpus_per_trial": 8, **resources},
    }))
    return path


def test_ddp_forced_on_a_7b_full_sft_is_refused_naming_fsdp(repo: Path, tmp_path: Path) -> None:
    loaded = load_checked_search(_space(tmp_path, repo, {"parallelism": "ddp", "gpu_memory_gb": 80}))
    (message,) = memory_refusals(loaded)
    assert "clip@448+convnext@1024+sam@1024+pix2struct@720+eva02@1024" in message
    assert "ddp x8" in message and "80 GB" in message
    assert "resources.parallelism: fsdp" in message and "gpus_per_trial" in message

    result = CliRunner().invoke(app, ["validate", str(tmp_path / "x5.yaml"), "--no-check-paths"])
    assert result.exit_code == 2
    output = " ".join(result.output.split())  # rich wraps the message at the terminal width
    assert "cannot fit" in output and "resources.parallelism: fsdp" in output


def test_auto_picks_fsdp_when_ddp_does_not_fit_and_cpu_trials_are_not_checked(repo: Path, tmp_path: Path) -> None:
    loaded = load_checked_search(_space(tmp_path, repo, {"parallelism": "auto", "gpu_memory_gb": 80}))
    (memory,) = plan_memory(loaded)
    assert memory.parallelism == "fsdp" and memory.fits is True
    assert memory.peak("ddp")[1].total_gb > 80 >= memory.estimate.total_gb
    assert memory_refusals(loaded) == []
    # 16 bytes per parameter for weights, gradients and AdamW state: ~145 GB for X5-7B, replicated under ddp
    ddp = memory.peak("ddp")[1]
    assert 140 < (ddp.weights + ddp.grads + ddp.optimizer) / 1e9 < 150

    cpu = load_checked_search(repo / "search_spaces" / "tiny_single_experts.yaml")
    assert memory_refusals(cpu) == []


def test_auto_parallelism_reaches_the_trial_as_the_plan_decides(repo: Path, tmp_path: Path) -> None:
    """The dispatcher asks each trial's plan under `parallelism: auto`: fsdp for X5-7B on 8x80 GB, ddp when ddp
    fits (the same trial on imaginary 400 GB cards)."""
    from eaglesearch.execution.worker_group import parallelism_for
    from eaglesearch.search import planned_trials

    for memory_gb, expected in ((80, "fsdp"), (400, "ddp")):
        loaded = load_checked_search(_space(tmp_path, repo, {"parallelism": "auto", "gpu_memory_gb": memory_gb}))
        (trial,) = planned_trials(loaded)
        assert parallelism_for(loaded.space.resources, trial) == expected
    assert parallelism_for(loaded.space.resources) == "ddp"  # no trial to plan: the safe default


def test_a_large_micro_batch_is_refused_naming_a_micro_batch_that_fits(repo: Path, tmp_path: Path) -> None:
    loaded = load_checked_search(_space(tmp_path, repo, {"parallelism": "fsdp", "gpu_memory_gb": 80}, 16))
    (message,) = memory_refusals(loaded)
    assert "micro-batch 16" in message
    micro = int(re.search(r"micro_batch_size: (\d+) in stage 'sft'", message).group(1))  # type: ignore[union-attr]
    (memory,) = plan_memory(loaded)
    stage = memory.stages[0]
    assert stage.estimate("fsdp", micro_batch=micro).total_gb <= 80 < stage.estimate("fsdp", micro_batch=micro + 1).total_gb
    # As the paper trained X5-7B: 4 samples per 80 GB GPU, with the experts' blocks checkpointed as well as the LM's
    assert micro >= 4 and stage.checkpointing
    four = stage.estimate("fsdp", micro_batch=4)
    unchecked_vision = stage.inputs.vision_bytes_per_image * 4 * BF16_MIXED.activation // 4
    assert four.total_gb <= 80 and four.vision_activations < unchecked_vision / 2


@pytest.mark.slow
def test_plan_shows_memory_per_gpu_for_every_trial(repo: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["plan", "--no-check-paths", str(_space(tmp_path, repo, {"parallelism": "auto"})),
                                      "--gpu-memory-gb", "80", "--workdir", str(tmp_path / "work")])
    assert result.exit_code == 0, result.output
    assert "memory per GPU" in result.output and "fsdp x8" in result.output and "optimizer" in result.output
