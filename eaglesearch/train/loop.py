"""The supervised fine-tuning loop: one stage, a fixed number of optimizer steps, deterministic per seed.

Kept deliberately lean (``benchmarks/overhead.py`` holds it to within 10% of a hand-written PyTorch loop): the only
extra work per step is reading the loss as a float and calling ``on_log`` every ``log_every`` steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from eaglesearch.spec import TrainSpec
from eaglesearch.train.optim import build_optimizer
from eaglesearch.train.schedule import warmup_cosine

StepLogger = Callable[[int, float], None]


@dataclass
class TrainStats:
    steps: int
    losses: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    samples: int = 0

    @property
    def loss_first(self) -> float:
        return self.losses[0]

    @property
    def loss_final(self) -> float:
        """Mean of the last 10% of step losses (at least one): less noisy than the very last batch."""
        tail = max(1, len(self.losses) // 10)
        return sum(self.losses[-tail:]) / tail

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.wall_s if self.wall_s > 0 else 0.0


def batches(dataset: Dataset, batch_size: int, collate: Callable, seed: int) -> Iterator[dict[str, torch.Tensor]]:
    """Endless shuffled batches; epoch ``e`` uses the permutation of ``torch.Generator`` seeded ``seed + e``."""
    epoch = 0
    while True:
        generator = torch.Generator().manual_seed(seed + epoch)
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=generator,
                            collate_fn=collate, drop_last=len(dataset) >= batch_size)
        yield from loader
        epoch += 1


def train(
    model: nn.Module,
    data: Iterator[dict[str, torch.Tensor]],
    spec: TrainSpec,
    on_log: StepLogger | None = None,
) -> TrainStats:
    """Run ``spec.steps`` AdamW steps with warmup+cosine and gradient clipping. Returns per-step losses."""
    optimizer = build_optimizer(model, spec)
    warmup = int(round(spec.warmup_ratio * spec.steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, spec.steps, warmup))
    params = [p for p in model.parameters() if p.requires_grad]
    stats = TrainStats(steps=spec.steps)
    model.train()
    start = time.perf_counter()
    for step in range(spec.steps):
        batch = next(data)
        out = model(batch["images"], batch["input_ids"], batch["attention_mask"], labels=batch["labels"])
        loss = out.loss
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()} at step {step}; lower train.lr or check the data")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, spec.grad_clip)
        optimizer.step()
        scheduler.step()
        value = loss.item()
        stats.losses.append(value)
        stats.samples += batch["input_ids"].shape[0]
        if on_log is not None and (step % spec.log_every == 0 or step == spec.steps - 1):
            on_log(step, value)
    stats.wall_s = time.perf_counter() - start
    return stats
