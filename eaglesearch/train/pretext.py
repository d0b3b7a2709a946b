"""Pretraining one tiny expert on its pretext task (:mod:`eaglesearch.train.pretext_tasks`): the recipe, the
training run and the held-out accuracy that shows the expert learned its task."""

from __future__ import annotations

import copy
import dataclasses
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from eaglesearch.data.scene import render
from eaglesearch.data.world import WORLD_CANVAS
from eaglesearch.model.experts import VisionExpert
from eaglesearch.train.pretext_tasks import DENSE, PAIRS, PRETEXTS, PROTOTYPES, Pretext, features


@dataclass(frozen=True)
class PretextRecipe:
    """How one expert is pretrained: the pretext, batches, steps and optimizer. Part of the artifact key."""

    pretext: str
    steps: int = 600
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup: int = 30
    seed: int = 0
    canvas: int = WORLD_CANVAS


@dataclass
class PretrainResult:
    weights: dict[str, Tensor]
    losses: list[tuple[int, float]] = field(default_factory=list)
    wall_s: float = 0.0
    head: nn.Module | None = None


def _batch(pretext: Pretext, rng: random.Random, recipe: PretextRecipe, grid: int
           ) -> tuple[Tensor, dict[str, Tensor]]:
    images, labels = [], []
    for _ in range(recipe.batch_size):
        scene, label = pretext.sample(rng, recipe.canvas, grid)
        images.append(torch.from_numpy(np.array(render(scene, recipe.canvas))).permute(2, 0, 1))
        labels.append(label)
    stacked = {k: torch.from_numpy(np.stack([lab[k] for lab in labels])) for k in labels[0]}
    return torch.stack(images), stacked


def pretrain_expert(expert: VisionExpert, recipe: PretextRecipe, *, log_every: int = 25,
                    on_log: Callable[[int, float], None] | None = None) -> PretrainResult:
    """Train ``expert`` (in place) and a fresh head on ``recipe``'s pretext; the expert's weights and losses.

    AdamW, linear warmup then cosine decay; batches rendered on the fly from ``recipe.seed``."""
    pretext = PRETEXTS[recipe.pretext]
    started = time.perf_counter()
    torch.manual_seed(recipe.seed)
    grid = expert.native_grid
    head = pretext.head(expert.channels, grid)
    expert.unfreeze()
    expert.train()
    params = [*expert.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)

    def lr_at(step: int) -> float:
        if step < recipe.warmup:
            return (step + 1) / recipe.warmup
        progress = (step - recipe.warmup) / max(1, recipe.steps - recipe.warmup)
        return 0.5 * (1 + math.cos(math.pi * progress))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    extra: dict[str, object] = {}
    if pretext.needs_teacher:
        teacher = (copy.deepcopy(expert).eval(), copy.deepcopy(head).eval())
        for p in (*teacher[0].parameters(), *teacher[1].parameters()):
            p.requires_grad_(False)
        extra = {"teacher": teacher, "center": torch.zeros(PROTOTYPES)}
    rng = random.Random(f"eaglesearch.pretext/{recipe.pretext}/{recipe.seed}")
    losses: list[tuple[int, float]] = []
    running = 0.0
    for step in range(recipe.steps):
        images, labels = _batch(pretext, rng, recipe, grid)
        loss = pretext.loss(expert, head, images, labels, step, **extra)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        if pretext.needs_teacher:
            t_expert, t_head = extra["teacher"]  # type: ignore[misc]
            momentum = 0.99
            with torch.no_grad():
                for t, s in zip([*t_expert.parameters(), *t_head.parameters()], params, strict=True):
                    t.mul_(momentum).add_(s.detach(), alpha=1 - momentum)
        running += loss.item()
        if (step + 1) % log_every == 0 or step + 1 == recipe.steps:
            n = (step % log_every) + 1
            losses.append((step + 1, running / n))
            if on_log is not None:
                on_log(step + 1, running / n)
            running = 0.0
    expert.eval()
    weights = {k: v.detach().clone() for k, v in expert.state_dict().items()}
    return PretrainResult(weights=weights, losses=losses, wall_s=time.perf_counter() - started, head=head.eval())


@torch.no_grad()
def pretext_accuracy(expert: VisionExpert, head: nn.Module, recipe: PretextRecipe, n: int = 192,
                     seed: int = 1) -> dict[str, float]:
    """How well ``expert`` + ``head`` solve the pretext on ``n`` held-out scenes (another seed than training):
    per-label accuracies (``pairs`` bits, ``count``, ``label``, ``letters`` sets, dense classes' cell F1)."""
    pretext = PRETEXTS[recipe.pretext]
    rng = random.Random(f"eaglesearch.pretext-eval/{recipe.pretext}/{seed}")
    grid = expert.native_grid
    held = dataclasses.replace(recipe, batch_size=n)
    images, labels = _batch(pretext, rng, held, grid)
    expert.eval()
    out = torch.cat([head(features(expert, images[i:i + 32])) for i in range(0, n, 32)])
    if recipe.pretext == "caption":
        pairs, truth = out[:, :len(PAIRS)] > 0, labels["pairs"] > 0.5
        tp, wrong = (pairs & truth).sum().item(), (pairs ^ truth).sum().item()
        return {"pairs_exact": (pairs == truth).all(1).float().mean().item(), "pairs_f1": 2 * tp / max(1, 2 * tp + wrong),
                "count": (out[:, len(PAIRS):].argmax(1) == labels["count"]).float().mean().item()}
    if recipe.pretext == "classify":
        return {"label": (out.argmax(1) == labels["label"]).float().mean().item()}
    if recipe.pretext == "read":
        return {"word": (out.argmax(1) == labels["word"]).float().mean().item()}
    if recipe.pretext == "segment":
        cells = labels["cells"] > 0.5
        plus, cross = DENSE.index("plus"), DENSE.index("cross")
        marked = cells[:, plus] | cells[:, cross]
        has = marked.flatten(1).any(1)
        strongest = out[:, [plus, cross]].amax(1).flatten(1).argmax(1)  # the cell the head likes best for a mark
        found = marked.flatten(1).gather(1, strongest[:, None])[:, 0]
        kind_ok = ((out[:, plus] > out[:, cross]) == cells[:, plus])[marked]
        shapes = out[:, :3] > 0
        return {"mark_found": found[has].float().mean().item(), "mark_kind": kind_ok.float().mean().item(),
                "shape_cells": (shapes == cells[:, :3]).float().mean().item()}
    return {}
