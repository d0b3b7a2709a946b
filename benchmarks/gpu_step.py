"""One Eagle SFT step at a realistic size on a GPU: tokens/s, MFU and peak memory against the memory plan.

The model: a ~1.1B-parameter Llama-style LM (hidden 2048, 16 layers, 16 heads / 8 KV heads, SwiGLU 5632, vocab
32000) with two paper-size experts (CLIP ViT-L/14 at 448 px and SAM ViT-L at 1024 px, random init: the weights do
not change the arithmetic), channel concatenation onto a 32x32 grid (1024 visual tokens) and a 128-token text tail.
Everything trains (AdamW, fused), bf16 autocast with fp32 master weights, activation checkpointing on the LM's
decoder layers and the experts' blocks (as ``train/distributed.prepare_model`` sets it on CUDA).

It prints, after warm-up steps, the median step time, tokens/s, the model FLOPs per step (3x the forward FLOPs
counted by ``eaglesearch.model.cost``: the usual MFU convention, recomputation not counted), MFU against the card's
peak bf16 dense throughput (``--peak-tflops``, default from the device name), and ``torch.cuda.max_memory_allocated``
against ``eaglesearch.model.memory``'s estimate for the same setup (ddp x1, the micro-batch, checkpointing).

    python benchmarks/gpu_step.py [--micro-batch 8] [--steps 10] [--warmup 3] [--peak-tflops 989]

Needs CUDA (exits 2 without it). Goal: MFU >= 40%.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch

from eaglesearch.model import build_eagle
from eaglesearch.model.cost import count_flops
from eaglesearch.model.memory import (
    BF16_MIXED,
    GB,
    LMShape,
    estimate_memory,
    param_split,
    vision_activations,
)
from eaglesearch.spec import ExpertSpec, LanguageModelSpec, ModelSpec, TokenizerSpec
from eaglesearch.train.distributed import prepare_model

PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}
TEXT_TOKENS = 128


class Vocabulary:
    """Just enough of a tokenizer for ``build_eagle``: a size and the ``<image>`` id."""

    pad_token_id, eos_token_id, unk_token_id = 0, 1, None

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def convert_tokens_to_ids(self, token: str) -> int:
        return self.size - 1


def model_spec() -> ModelSpec:
    return ModelSpec(
        experts=(ExpertSpec(name="clip", preset="paper", pretrained=False),
                 ExpertSpec(name="sam", preset="paper", pretrained=False)),
        grid=32, fusion="channel_concat",
        lm=LanguageModelSpec(kind="tiny_llama", hidden_size=2048, num_layers=16, num_heads=16, num_kv_heads=8,
                             intermediate_size=5632, max_positions=2048, tie_embeddings=False),
        tokenizer=TokenizerSpec(kind="offline_bpe", vocab_size=32000))


def batch(model, micro_batch: int, device: torch.device) -> dict[str, torch.Tensor]:
    visual = model.num_visual_tokens
    size = max(e.resolution for e in model.experts.values())
    ids = torch.randint(2, 31000, (micro_batch, visual + TEXT_TOKENS), device=device)
    ids[:, 1:1 + visual] = model.image_token_id
    labels = ids.clone()
    labels[:, :1 + visual] = -100
    return {"images": torch.randint(0, 256, (micro_batch, 3, size, size), dtype=torch.uint8, device=device),
            "input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--micro-batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--peak-tflops", type=float, default=None, help="the card's peak bf16 dense TFLOP/s")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_step.py needs a CUDA GPU; none is visible here", file=sys.stderr)
        return 2
    device = torch.device("cuda")
    name = torch.cuda.get_device_name(device)
    peak = args.peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
    spec = model_spec()
    torch.manual_seed(0)
    model = build_eagle(spec, Vocabulary(32000), seed=0).to(device)
    model = prepare_model(model)  # gradient checkpointing on CUDA
    data = batch(model, args.micro_batch, device)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        forward = count_flops(model, data["images"][:1], data["input_ids"][:1], data["attention_mask"][:1])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, fused=True)
    model.train()
    torch.cuda.reset_peak_memory_stats(device)
    times = []
    for step in range(args.warmup + args.steps):
        torch.cuda.synchronize(device)
        start = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(data["images"], data["input_ids"], data["attention_mask"], labels=data["labels"]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize(device)
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    step_s = statistics.median(times)
    tokens = args.micro_batch * data["input_ids"].shape[1]
    flops = 3 * forward * args.micro_batch
    peak_bytes = torch.cuda.max_memory_allocated(device)

    with torch.device("meta"):
        meta = build_eagle(spec, Vocabulary(32000))
    vision = vision_activations(meta, max(e.resolution for e in meta.experts.values()))
    estimate = estimate_memory(param_split(meta), LMShape.from_config(meta.lm.config), vision.plain,
                               micro_batch=args.micro_batch, seq_len=data["input_ids"].shape[1],
                               precision=BF16_MIXED, checkpointing=True, parallelism="ddp", gpus=1,
                               vision_bytes_checkpointed=vision.checkpointed)
    params = sum(p.numel() for p in model.parameters())
    print(f"device {name}; {params / 1e9:.2f}B parameters; micro-batch {args.micro_batch} x "
          f"{data['input_ids'].shape[1]} tokens ({model.num_visual_tokens} visual)")
    print(f"step {step_s * 1000:.0f} ms (median of {args.steps}); {tokens / step_s:,.0f} tokens/s; "
          f"{flops / step_s / 1e12:.1f} TFLOP/s model FLOPs (3x forward {forward / 1e12:.2f} TFLOP/sample)")
    if peak:
        print(f"MFU {flops / step_s / (peak * 1e12):.1%} of {peak:.0f} TFLOP/s peak bf16 (goal >= 40%)")
    else:
        print("MFU: unknown card; pass --peak-tflops")
    error = (estimate.total - peak_bytes) / peak_bytes
    print(f"peak memory {peak_bytes / GB:.1f} GB measured vs {estimate.total_gb:.1f} GB planned ({error:+.1%}); "
          f"plan: {estimate.breakdown()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
