"""A 2-rank gloo training step: today's DistributedDataParallel strategy against the hand-rolled all-reduce it
replaced, in one run, on the same model, data and machine.

Each rank (one CPU thread each) trains a tiny Eagle model (a CLIP-like expert + a 4-layer LM) for ``--steps``
steps with each implementation, twice in alternation (the machine's load drifts), and times the steady-state step
(after ``--warmup`` steps) from the optimizer step's timestamps:

* ``hand-rolled``: the step before issue 20, kept here verbatim: backward of the rank's share, then two extra
  all-reduces (the count of parameters with a gradient, max and min), one flat copy of every gradient, one
  all-reduce of it, the copy back, and a host read of the loss (``.item()``) every step;
* ``ddp``: ``eaglesearch.train.loop.train`` (DDP buckets all-reduced while backward runs, summing hook, losses read
  once per ``log_every``).

It prints the median step of each, the ratio, and the largest weight difference between the two after the same
steps (the sums are the same numbers; clipping's norm may round differently).

    nice -n 15 env OMP_WAIT_POLICY=PASSIVE python benchmarks/ddp_step.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

LM = {"hidden_size": 256, "num_layers": 4, "num_heads": 4, "num_kv_heads": 2, "intermediate_size": 688}


# ------------------------------------------------------------------------- the step before issue 20 (verbatim)

def all_reduce_gradients(params: list[nn.Parameter], world) -> None:
    """Sum gradients over ranks in one flat bucket per dtype/device (eaglesearch.train.distributed before issue 20)."""
    if world.world_size == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    count = torch.tensor([len(grads)], dtype=torch.int64, device=grads[0].device if grads else "cpu")
    low = count.clone()
    dist.all_reduce(count, op=dist.ReduceOp.MAX)
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    if int(count) != int(low):
        raise RuntimeError(f"ranks disagree on which parameters got gradients ({int(low)} vs {int(count)})")
    groups: dict[tuple, list[torch.Tensor]] = {}
    for g in grads:
        groups.setdefault((g.dtype, g.device), []).append(g)
    for bucket in groups.values():
        flat = torch.cat([g.reshape(-1) for g in bucket])
        dist.all_reduce(flat)
        offset = 0
        for g in bucket:
            n = g.numel()
            g.copy_(flat[offset:offset + n].view_as(g))
            offset += n


def hand_rolled(model, stream, spec, world, on_step) -> None:
    """The non-plain branch of the training loop before issue 20 (no checkpoints)."""
    from eaglesearch.train.distributed import accumulate_gradients
    from eaglesearch.train.optim import build_optimizer
    from eaglesearch.train.schedule import lr_multiplier

    optimizer = build_optimizer(model, spec)
    warmup = round(spec.warmup_ratio * spec.steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_multiplier(s, spec.steps, warmup, spec.schedule))
    params = [p for p in model.parameters() if p.requires_grad]
    model.train()
    for step in range(spec.steps):
        batch = next(stream)
        optimizer.zero_grad(set_to_none=True)
        shown = accumulate_gradients(model, batch, world, spec.micro_batch_size, reduce=True)
        if not torch.isfinite(shown):
            raise FloatingPointError(f"loss became {shown.item()} at step {step}")
        all_reduce_gradients(params, world)
        torch.nn.utils.clip_grad_norm_(params, spec.grad_clip)
        optimizer.step()
        scheduler.step()
        shown.item()
        on_step(step + 1)


# ------------------------------------------------------------------------------------------------ the run

def _setup(root: Path):
    from eaglesearch.data import TrainDataset, collate_train, read_llava_json, training_corpus, write_synthetic
    from eaglesearch.model import build_eagle, load_tokenizer
    from eaglesearch.spec import ExpertSpec, LanguageModelSpec, ModelSpec, SyntheticDataSpec, TokenizerSpec

    data = write_synthetic(SyntheticDataSpec(tasks=("count", "color"), train_per_task=40, eval_per_task=2,
                                             image_size=64), root / "ds")
    samples = read_llava_json(data.train_json, data.image_folder)
    tokenizer = load_tokenizer(TokenizerSpec(vocab_size=1000), lambda: training_corpus(samples),
                               cache_dir=root / "tok")
    spec = ModelSpec(experts=(ExpertSpec(name="clip", preset="tiny_random", resolution=64),), grid=4,
                     lm=LanguageModelSpec(**LM))

    def fresh():
        torch.manual_seed(0)
        model = build_eagle(spec, tokenizer)
        dataset = TrainDataset(samples, tokenizer, 64, model.num_visual_tokens, max_length=96)
        return model, dataset, lambda b: collate_train(b, tokenizer.pad_token_id)

    return fresh


def _worker(rank: int, world_size: int, port: int, root: str, steps: int, warmup: int, out: str) -> None:
    from eaglesearch.spec import TrainSpec
    from eaglesearch.train import batches, train
    from eaglesearch.train.distributed import destroy_process_group, init_process_group

    torch.set_num_threads(1)
    world = init_process_group(rank, world_size, port=port, backend="gloo")
    try:
        fresh = _setup(Path(root))
        spec = TrainSpec(steps=steps, batch_size=8, lr=1e-3, warmup_ratio=0.0, log_every=10).stages[0]
        results: dict[str, list[float]] = {"hand-rolled": [], "ddp": []}
        weights: dict[str, dict[str, torch.Tensor]] = {}
        for _ in range(2):
            for impl in ("hand-rolled", "ddp"):
                model, dataset, collate = fresh()
                stream = batches(dataset, spec.batch_size, collate, seed=1)
                stamps: list[float] = []
                stamp = lambda _done, stamps=stamps: stamps.append(time.perf_counter())
                dist.barrier()
                if impl == "ddp":
                    train(model, stream, spec, world=world, on_step=stamp)
                else:
                    hand_rolled(model, stream, spec, world, stamp)
                results[impl].append((stamps[-1] - stamps[warmup - 1]) / (steps - warmup))
                weights[impl] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if rank == 0:
            diff = max(float((weights["ddp"][k] - weights["hand-rolled"][k]).abs().max()) for k in weights["ddp"])
            torch.save({"results": results, "diff": diff}, out)
    finally:
        destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    from eaglesearch.train.distributed import free_port

    with tempfile.TemporaryDirectory() as tmp:
        _setup(Path(tmp))  # the data and tokenizer once, before the ranks read them
        out = str(Path(tmp) / "result.pt")
        mp.spawn(_worker, args=(2, free_port(), tmp, args.steps, args.warmup, out), nprocs=2, join=True)
        found = torch.load(out)
    results, diff = found["results"], found["diff"]
    old, new = statistics.median(results["hand-rolled"]), statistics.median(results["ddp"])
    print(f"2 ranks (gloo, 1 thread each), tiny Eagle (clip@64 + LM {LM['num_layers']}x{LM['hidden_size']}), global "
          f"batch 8, {args.steps} steps, steady state after {args.warmup}; each run twice, alternating")
    for name, runs in results.items():
        print(f"  {name:12s} step {statistics.median(runs) * 1e3:8.1f} ms  (runs: "
              f"{', '.join(f'{r * 1e3:.1f}' for r in runs)} ms)")
    print(f"  ddp / hand-rolled step time: {new / old:.3f}   largest weight difference after the run: {diff:.2e}")


if __name__ == "__main__":
    main()
