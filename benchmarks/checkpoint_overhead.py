"""What checkpointing costs a training stage, at the defaults, against the checkpoints before issue 20, in one run.

A ~100M-parameter model (token embedding tied to the output head, residual MLP blocks; AdamW, so a checkpoint holds
~1.2 GB: weights and two moments) on the CPU (one thread). First one checkpoint of the same trained state, today's
and the new one alternated three times (the per-checkpoint stall under the same machine load); then ``--steps``
steps of training, five ways:

* ``none``: ``train()`` without a checkpoint folder;
* ``today's (every 50 steps)``: the same loop plus the checkpoint before issue 20, kept here verbatim
  (``old_save``), every 50 steps (its default) and at the end, on the training thread: the whole state hashed with
  SHA-256, then one ``torch.save`` + fsync;
* ``defaults``: ``train()`` as a trial's stage calls it (``StagePipeline``: a checkpoint folder, the stage
  defaults, ``final_checkpoint=False`` because the stage's result is saved as ``done.pt`` right after, by both
  versions): one checkpoint every ``checkpoint_every_s`` = 600 s, a sharded DCP folder with its CRC manifest,
  synchronous on the CPU as the default is;
* ``one checkpoint (sync)`` / ``one checkpoint (async)``: the defaults plus the checkpoint at the end (what a rung's
  stop writes), synchronous (CPU default) and in a background thread (CUDA default).

Each run's overhead is the time its training thread spent in checkpoint calls over its own training time (on a
shared machine the load drifts between runs, so wall times of different runs do not compare). Last, the
steady-state overhead of a long stage at each default interval: the per-checkpoint stall over the interval.

    nice -n 15 env OMP_WAIT_POLICY=PASSIVE python benchmarks/checkpoint_overhead.py
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch
import torch.nn.functional as F
from torch import nn

OLD_EVERY = 50  # the default checkpoint_every before issue 20


class Model(nn.Module):
    """~100M parameters: a 16k x 1024 embedding (tied head) and residual 1024-4096-1024 MLP blocks."""

    def __init__(self, vocab: int = 16384, width: int = 1024, blocks: int = 10) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.blocks = nn.ModuleList(nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 4 * width), nn.GELU(),
                                                  nn.Linear(4 * width, width)) for _ in range(blocks))

    def forward(self, images, input_ids, attention_mask, labels=None):  # the loop calls it so
        x = self.embed(input_ids)
        for block in self.blocks:
            x = x + block(x)
        logits = x @ self.embed.weight.T
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1))
        return SimpleNamespace(loss=loss, logits=logits)


def data(vocab: int, rows: int, length: int):
    generator = torch.Generator().manual_seed(0)
    while True:
        ids = torch.randint(0, vocab, (rows, length), generator=generator)
        yield {"images": torch.zeros(rows, 1), "input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}


# -------------------------------------------------------------------- the checkpoint before issue 20 (verbatim)

def content_digest(payload: Mapping[str, Any]) -> str:
    digest = hashlib.sha256()

    def feed(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            flat = value.detach().cpu().contiguous().reshape(-1)
            digest.update(f"T{flat.dtype}{tuple(value.shape)}".encode())
            digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
        elif isinstance(value, Mapping):
            digest.update(f"D{len(value)}".encode())
            for key in sorted(value, key=repr):
                digest.update(repr(key).encode())
                feed(value[key])
        elif isinstance(value, list | tuple):
            digest.update(f"L{len(value)}".encode())
            for item in value:
                feed(item)
        else:
            digest.update(f"V{value!r}".encode())

    for name in ("step", "model", "optimizer", "scheduler", "rng", "data_state", "losses", "meta"):
        digest.update(name.encode())
        feed(payload[name])
    return digest.hexdigest()


def old_save(path: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer, losses: list) -> None:
    from eaglesearch.train.checkpoint import rng_state, save_atomic, trained_state

    payload: dict[str, Any] = {"step": step, "model": trained_state(model), "optimizer": optimizer.state_dict(),
                               "scheduler": {}, "rng": rng_state(), "data_state": None, "losses": list(losses),
                               "meta": {"sharded": False}}
    payload["digest"] = content_digest(payload)
    payload["format_version"] = 2
    save_atomic(path, payload, keep_previous=path.with_name("prev.pt"))


# ------------------------------------------------------------------------------------------------ the runs

def run(kind: str, steps: int, folder: Path) -> dict[str, float]:
    """One training run; ``kind``: none, today, defaults, sync or async (the last two: with the end checkpoint)."""
    from eaglesearch.spec import TrainSpec
    from eaglesearch.train import loop, strategy
    from eaglesearch.train.checkpoint_writer import CheckpointWriter

    torch.manual_seed(0)
    model = Model()
    spec = TrainSpec(steps=steps, batch_size=2, lr=1e-4, log_every=10).stages[0]  # checkpoint defaults
    stall = {"save": 0.0, "close": 0.0, "saves": 0}
    built: list[torch.optim.Optimizer] = []
    build_optimizer = loop.build_optimizer
    loop.build_optimizer = lambda m, s: built.append(build_optimizer(m, s)) or built[-1]  # type: ignore[assignment]
    save, close = CheckpointWriter.save, CheckpointWriter.close

    def timed(method):
        def call(self, *args, **kwargs):
            start = time.perf_counter()
            try:
                return method(self, *args, **kwargs)
            finally:
                stall["save" if method is save else "close"] += time.perf_counter() - start
                stall["saves"] += method is save
        return call

    CheckpointWriter.save, CheckpointWriter.close = timed(save), timed(close)  # type: ignore[method-assign]
    strategy.async_by_default = lambda device: kind == "async"
    losses: list[float] = []

    def today(done: int) -> None:
        if done % OLD_EVERY == 0 or done == steps:
            start = time.perf_counter()
            old_save(folder / "last.pt", done, model, built[-1], losses)
            stall["save"] += time.perf_counter() - start
            stall["saves"] += 1

    try:
        start = time.perf_counter()
        loop.train(model, data(16384, 2, 8), spec, on_step=today if kind == "today" else None,
                   checkpoint_dir=folder if kind in ("defaults", "sync", "async") else None,
                   final_checkpoint=kind in ("sync", "async"))
        wall = time.perf_counter() - start
    finally:
        loop.build_optimizer = build_optimizer  # type: ignore[assignment]
        CheckpointWriter.save, CheckpointWriter.close = save, close  # type: ignore[method-assign]
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return {"wall": wall, "stall": stall["save"] + stall["close"], "save": stall["save"], "saves": stall["saves"],
            "bytes": size}


def stall_pairs(folder: Path, repeats: int = 3) -> dict[str, list[float]]:
    """One checkpoint of the same trained state, today's and the new (sync; async staging), alternated
    ``repeats`` times: the per-checkpoint stall of each under the same machine load."""
    from eaglesearch.spec import TrainSpec
    from eaglesearch.train.checkpoint_writer import CheckpointWriter
    from eaglesearch.train.optim import build_optimizer

    torch.manual_seed(0)
    model = Model()
    optimizer = build_optimizer(model, TrainSpec(steps=1, batch_size=2).stages[0])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    model(**{k: v for k, v in next(data(16384, 2, 8)).items()}).loss.backward()
    optimizer.step()
    times: dict[str, list[float]] = {"today": [], "new": [], "new async (staging)": []}
    for step in range(1, repeats + 1):
        start = time.perf_counter()
        old_save(folder / "last.pt", step, model, optimizer, [1.0] * step)
        times["today"].append(time.perf_counter() - start)
        for kind, asynchronous in (("new", False), ("new async (staging)", True)):
            writer = CheckpointWriter(folder / f"{kind.split()[-1]}-last", asynchronous=asynchronous)
            start = time.perf_counter()
            writer.save(step=step, model=model, optimizer=optimizer, scheduler=scheduler, data_state=None,
                        losses=[1.0] * step)
            times[kind].append(time.perf_counter() - start)
            writer.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="default: two of today's checkpoint intervals")
    parser.add_argument("--stall-only", action="store_true", help="only the alternated per-checkpoint stalls")
    args = parser.parse_args()
    torch.set_num_threads(1)
    params = sum(p.numel() for p in Model().parameters())
    print(f"model: {params / 1e6:.1f}M parameters, AdamW, CPU (1 thread)")
    with tempfile.TemporaryDirectory(dir=os.environ.get("CHECKPOINT_BENCH_DIR")) as tmp:
        stalls = stall_pairs(Path(tmp))
    print("one checkpoint of the same state, alternated (training thread blocked, s): " + "; ".join(
        f"{k} {', '.join(f'{t:.2f}' for t in v)}" for k, v in stalls.items()))
    if args.stall_only:
        return
    results: dict[str, dict[str, float]] = {}
    for label, kind in (("none", "none"), ("today's (every 50 steps)", "today"), ("defaults", "defaults"),
                        ("one checkpoint (sync)", "sync"), ("one checkpoint (async)", "async")):
        with tempfile.TemporaryDirectory(dir=os.environ.get("CHECKPOINT_BENCH_DIR")) as tmp:
            results[label] = run(kind, args.steps, Path(tmp))
        r = results[label]
        train_s = r["wall"] - r["stall"]
        print(f"  {label:26s} {args.steps} steps, wall {r['wall']:7.1f} s, checkpoints {int(r['saves'])}, training "
              f"thread in checkpoint calls {r['stall']:6.2f} s = {r['stall'] / train_s:6.1%} of its training time "
              f"({train_s / args.steps:.2f} s/step)", flush=True)
    old, new, staged = (min(stalls[k]) for k in ("today", "new", "new async (staging)"))
    step_s = min((r["wall"] - r["stall"]) / args.steps for r in results.values())
    print(f"\nsteady state of a long stage at each default interval (fastest step seen: {step_s:.2f} s; per-"
          f"checkpoint stall: the alternated minimum):\n"
          f"  today's   {old:.2f} s every {OLD_EVERY} steps ({OLD_EVERY * step_s:.0f} s): "
          f"{old / (OLD_EVERY * step_s):.1%}\n"
          f"  defaults  {new:.2f} s every 600 s: {new / 600:.2%}  (async, staging only: {staged:.2f} s, "
          f"{staged / 600:.2%})")


if __name__ == "__main__":
    main()
