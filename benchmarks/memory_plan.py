"""Check the memory estimator (eaglesearch.model.memory) against measured peaks of real training steps on CPU.

Each configuration (tiny experts, micro-batch, LM activation checkpointing on/off) runs in a fresh process:

* build the model on the CPU (every part trainable, AdamW), run one step so the optimizer state exists;
* measure a second step: weights and optimizer state are counted exactly (tensor bytes), the step's own memory
  (activations, gradients, logits, transients) as the rise of the process's peak RSS over its RSS before the step
  (``/proc/self/clear_refs`` resets the peak; ``MALLOC_MMAP_THRESHOLD_`` makes freed tensors leave the RSS);
  saved-tensor hooks give the bytes autograd keeps, for the breakdown;
* estimate the same step from a ``meta`` build (parameters, traced vision activations, closed-form LM).

It then prints the paper-scale numbers: Eagle-X5-7B (CLIP, ConvNeXt, SAM, Pix2Struct, EVA-02 + Vicuna-7B, the
paper_eagle_7b recipe) per GPU under ddp and fsdp on 8 × 80 GB, and the host RAM each rank needs to build it.

    nice -n 15 env OMP_WAIT_POLICY=PASSIVE python benchmarks/memory_plan.py
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
LM = {"kind": "tiny_llama", "hidden_size": 256, "num_layers": 4, "num_heads": 4, "num_kv_heads": 2,
      "intermediate_size": 688}
VOCAB, IMAGE, SEQ = 2000, 128, 256
CONFIGS = [
    {"experts": ["clip"], "micro_batch": 8, "checkpointing": False},
    {"experts": ["clip", "convnext"], "micro_batch": 16, "checkpointing": False},
    {"experts": ["clip", "convnext"], "micro_batch": 16, "checkpointing": True},
    {"experts": ["sam", "clip"], "micro_batch": 4, "checkpointing": False},
    {"experts": ["dinov2", "convnext"], "micro_batch": 8, "checkpointing": True},
]


def _status(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+)", text).group(1)) * 1024  # type: ignore[union-attr]


def _spec(config: dict):
    from eaglesearch.spec import ModelSpec

    return ModelSpec.model_validate({"experts": [{"name": n} for n in config["experts"]], "grid": 8, "lm": LM,
                                     "tokenizer": {"kind": "offline_bpe", "vocab_size": VOCAB}})


def _batch(model, micro_batch: int, image_token: int):
    import torch

    g = torch.Generator().manual_seed(0)
    visual = model.num_visual_tokens
    ids = torch.randint(2, VOCAB - 1, (micro_batch, SEQ), generator=g)
    ids[:, 1:1 + visual] = image_token
    labels = ids.clone()
    labels[:, :1 + visual] = -100
    images = torch.randint(0, 256, (micro_batch, 3, IMAGE, IMAGE), dtype=torch.uint8, generator=g)
    return {"images": images, "input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def measure(config: dict) -> dict:
    """One configuration, in this (fresh) process: measured and estimated bytes."""
    import torch

    from eaglesearch.model import build_eagle
    from eaglesearch.model.memory import (
        FP32,
        LMShape,
        SavedTensorMeter,
        estimate_memory,
        param_split,
        vision_activation_bytes,
    )
    from eaglesearch.spec.train import StageSpec
    from eaglesearch.train import apply_trainable, build_optimizer
    from eaglesearch.train.distributed import accumulate_gradients
    from eaglesearch.trial.plan import Vocabulary

    torch.set_num_threads(1)
    spec = _spec(config)
    stage = StageSpec(name="sft", trainable={"experts": "all", "projector": True, "lm": "all"}, steps=2,
                      batch_size=config["micro_batch"])
    vocab = Vocabulary(VOCAB)
    with torch.device("meta"):
        meta = build_eagle(spec, vocab)
    apply_trainable(meta, stage.trainable, spec)
    estimate = estimate_memory(param_split(meta), LMShape.from_config(meta.lm.config),
                               vision_activation_bytes(meta, IMAGE), micro_batch=config["micro_batch"],
                               seq_len=SEQ, precision=FP32, checkpointing=config["checkpointing"])
    del meta

    model = build_eagle(spec, vocab, seed=0)
    apply_trainable(model, stage.trainable, spec)
    model.train()
    if config["checkpointing"]:
        model.lm.gradient_checkpointing_enable()
        model.lm.config.use_cache = False
    optimizer = build_optimizer(model, stage)
    batch = _batch(model, config["micro_batch"], vocab.convert_tokens_to_ids("<image>"))

    def step(meter: SavedTensorMeter | None = None) -> None:
        optimizer.zero_grad(set_to_none=True)
        if meter is None:
            accumulate_gradients(model, batch)
        else:
            with meter.hooks():
                accumulate_gradients(model, batch)
        optimizer.step()

    step()
    meter = SavedTensorMeter(list(model.parameters()))
    step(meter)  # saved-tensor bytes (for the breakdown); the peak is measured on the next step
    optimizer.zero_grad(set_to_none=True)
    states = sum(t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values()
                 if isinstance(t, torch.Tensor))
    weights = sum(p.numel() * p.element_size() for p in {id(p): p for p in model.parameters()}.values())
    del meter
    before = _status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    step()
    step_bytes = _status("VmHWM") - before
    return {"config": config, "estimate": estimate.total, "estimate_breakdown": estimate.breakdown(),
            "estimate_activations": estimate.activations, "measured": weights + states + step_bytes,
            "weights": weights, "states": states, "step": step_bytes}


def paper_x5() -> None:
    from eaglesearch.model.validate import load_checked_search
    from eaglesearch.spec import ExpertSpec, ResourcesSpec
    from eaglesearch.trial.memory import trial_memory

    loaded = load_checked_search(ROOT / "search_spaces" / "paper_greedy_experts.yaml")
    x5 = loaded.factory.make([ExpertSpec(name=n) for n in ("clip", "convnext", "sam", "pix2struct", "eva02")])
    resources = ResourcesSpec(gpus_per_trial=8, gpu_memory_gb=80)
    memory = trial_memory(x5, resources, 80.0)
    stage = memory.stages[0]
    print(f"\nEagle-X5-7B ({x5.label} + Vicuna-7B, {stage.inputs.params.total / 1e9:.2f}B parameters, "
          f"{stage.inputs.params.trainable / 1e9:.2f}B trainable), 8 x 80 GB:")
    for micro in (stage.micro_batch, 4, 1):
        for parallelism in ("ddp", "fsdp"):
            e = stage.estimate(parallelism, micro_batch=micro)
            fit = "fits" if e.total_gb <= 80 else "does not fit"
            print(f"  {parallelism:4s} micro-batch {micro:2d}: {e.total_gb:7.1f} GB/GPU  {fit:12s}  {e.breakdown()}")
    e = stage.estimate("ddp", micro_batch=1)
    states = e.weights + e.grads + e.optimizer
    print(f"  weights+grads+optimizer alone (ddp): {states / 1e9:.1f} GB "
          f"= {states / stage.inputs.params.total:.1f} bytes/parameter")
    host = memory.host
    assert host is not None
    from eaglesearch.trial.plan import architecture_only

    if architecture_only(x5.model).assumed:
        print("  (the LM's config is not readable here: Vicuna-7B sized from the recipe's lm dimensions)")
    print(f"  host RAM per rank while the model is built (bf16): {host.total_gb:.1f} GB ({host.breakdown()}); "
          f"{8 * host.total_gb:.0f} GB for the 8 ranks of a node")


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        print(json.dumps(measure(json.loads(sys.argv[2]))))
        return
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", PYTHONPATH=str(ROOT), OMP_WAIT_POLICY="PASSIVE")
    print(f"tiny LM {LM['num_layers']}x{LM['hidden_size']}, vocab {VOCAB}, {SEQ} tokens, images {IMAGE}px, fp32 "
          "CPU, AdamW, every part trainable")
    print(f"{'experts':18s} {'mb':>3s} {'ckpt':>5s} {'estimate MB':>12s} {'measured MB':>12s} {'error':>7s}")
    errors = []
    for config in CONFIGS:
        done = subprocess.run([sys.executable, __file__, "--one", json.dumps(config)], env=env, check=True,
                              capture_output=True, text=True)
        r = json.loads(done.stdout.strip().splitlines()[-1])
        err = (r["estimate"] - r["measured"]) / r["measured"]
        errors.append(err)
        print(f"{'+'.join(config['experts']):18s} {config['micro_batch']:3d} {config['checkpointing']!s:>5s} "
              f"{r['estimate'] / 1e6:12.1f} {r['measured'] / 1e6:12.1f} {err:+7.1%}   "
              f"(measured: weights {r['weights'] / 1e6:.1f} + optimizer {r['states'] / 1e6:.1f} + step peak "
              f"{r['step'] / 1e6:.1f} MB)")
    print(f"largest error: {max(errors, key=abs):+.1%} (target within ±20%)")
    paper_x5()


if __name__ == "__main__":
    main()
