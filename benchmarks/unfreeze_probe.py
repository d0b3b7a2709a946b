"""Do the frozen pretrained expert's features hold a skill's cue, and does adapting the expert put it there?

The mechanism behind finding 1 (``benchmarks/findings.py``), measured without the LM: the shipped tiny CLIP
(pretrained at 64 px on its caption pretext) is run at each resolution on a synthetic task's images, and a probe
(the projector's shape: a per-token two-layer MLP, then mean- and max-pooling over tokens and a linear
classifier) is trained to answer it from

* **frozen** features: the pretrained encoder as shipped; the probe alone trains, for ``--steps`` (the adapted
  run's budget) and for ``--frozen-steps`` (several times it, to tell a cue the features lack from one they hold
  but expose weakly);
* **adapted** features: encoder and probe train together for ``--steps``, the encoder at ``--expert-lr`` (Eagle's
  ``vision_tower_lr``), the probe at ``--lr``.

Accuracy is on held-out images (another generator seed), with its binomial standard error. A cue the frozen
features lack leaves the frozen probe near chance at any budget; one they hold weakly is read by the frozen probe
only with more steps, while the adapted features expose it within the budget; a cue that is not in the pixels at
that resolution leaves every probe near chance.

    python benchmarks/unfreeze_probe.py [--task arrow] [--resolutions 128 64] [--steps 300]

Binary-answer tasks only (the first answer in sorted order is class 0). One thread; at 128 px 1-4 minutes per
frozen and about 10 minutes per adapted run on the shared 2-core box.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import math
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from eaglesearch.artifacts import ArtifactStore, artifact_key
from eaglesearch.data.scene import render
from eaglesearch.data.tasks import TASKS
from eaglesearch.model.experts import VisionExpert, build_expert
from eaglesearch.spec import ExpertSpec
from eaglesearch.train.pretrained import SHIPPED_ROOT, TINY_EXPERT, WEIGHTS, expert_payload, load_expert_state

CANVAS = 256


def shipped_clip(resolution: int) -> VisionExpert:
    """The shipped pretext-pretrained tiny CLIP, run at ``resolution`` (position embeddings resampled as a trial
    resamples them)."""
    payload = expert_payload(ExpertSpec(name="clip", preset="tiny"))
    folder = ArtifactStore(SHIPPED_ROOT).get(TINY_EXPERT, artifact_key(payload))
    if folder is None:
        raise SystemExit("the tiny CLIP is not shipped here; run `eaglesearch pretrain --only clip`")
    expert = build_expert(ExpertSpec(name="clip", preset="tiny", resolution=resolution))
    load_expert_state(expert, torch.load(folder / WEIGHTS, weights_only=True))
    return expert


def images(task: str, n: int, seed: str) -> tuple[Tensor, Tensor, list[str]]:
    """``n`` rendered images of ``task`` (uint8, (n,3,S,S)) and their answers as class indices."""
    rng = random.Random(f"unfreeze-probe/{task}/{seed}")
    drawn = [TASKS[task](rng, CANVAS) for _ in range(n)]
    classes = sorted({answer for _, _, answer in drawn})
    if len(classes) != 2:
        raise SystemExit(f"--task {task}: the probe needs a two-answer task; drew answers {classes}")
    pixels = np.stack([np.asarray(render(scene, CANVAS)) for scene, _, _ in drawn])
    labels = torch.tensor([classes.index(answer) for _, _, answer in drawn])
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous(), labels, classes


class Probe(nn.Module):
    """Per-token MLP (the projector's shape) → mean- and max-pooled → two logits."""

    def __init__(self, channels: int, hidden: int = 128) -> None:
        super().__init__()
        self.token = nn.Sequential(nn.Linear(channels, hidden), nn.GELU(), nn.Linear(hidden, hidden // 2))
        self.out = nn.Linear(hidden, 2)

    def forward(self, fmap: Tensor) -> Tensor:
        tokens = self.token(fmap.flatten(2).transpose(1, 2))
        return self.out(torch.cat([tokens.mean(1), tokens.amax(1)], dim=-1))


def features(expert: VisionExpert, pixels: Tensor, batch: int = 64) -> Tensor:
    return torch.cat([expert(expert.preprocess(pixels[i:i + batch])) for i in range(0, len(pixels), batch)])


def run(expert: VisionExpert, train: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor], steps: int,
        expert_lr: float | None, lr: float, batch: int, seed: int) -> float:
    """Train the probe (and the expert when ``expert_lr`` is set); held-out accuracy."""
    torch.manual_seed(seed)
    probe = Probe(expert.channels)
    adapt = expert_lr is not None
    expert.requires_grad_(adapt)
    groups: list[dict[str, object]] = [{"params": list(probe.parameters()), "lr": lr}]
    if adapt:
        groups.append({"params": list(expert.parameters()), "lr": expert_lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=0.01)  # type: ignore[arg-type]
    x, y = train
    cached = None
    if not adapt:
        with torch.no_grad():
            cached = features(expert, x)
    order = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(len(x), (batch,), generator=order)
        fmap = cached[idx] if cached is not None else expert(expert.preprocess(x[idx]))
        loss = F.cross_entropy(probe(fmap), y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return (probe(features(expert, test[0])).argmax(-1) == test[1]).float().mean().item()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="arrow", help="a two-answer synthetic task (default: arrow)")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[128, 64])
    parser.add_argument("--train", type=int, default=600, help="training images (default 600)")
    parser.add_argument("--test", type=int, default=300, help="held-out images (default 300)")
    parser.add_argument("--steps", type=int, default=300, help="adapted run's steps (default 300)")
    parser.add_argument("--frozen-steps", type=int, default=1200, help="frozen probe's steps (default 1200)")
    parser.add_argument("--expert-lr", type=float, default=1e-4)
    parser.add_argument("--lr", type=float, default=1e-3, help="the probe's learning rate")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    x, y, classes = images(args.task, args.train, "train")
    test_x, test_y, _ = images(args.task, args.test, "test")
    print(f"task {args.task} ({' / '.join(classes)}), {args.train} train / {args.test} held-out images, "
          f"{CANVAS} px canvas; shipped CLIP (pretrained at 64 px)")
    for resolution in args.resolutions:
        for label, steps, expert_lr in (("frozen", args.steps, None), ("frozen", args.frozen_steps, None),
                                        (f"adapted (expert_lr {args.expert_lr:g})", args.steps, args.expert_lr)):
            started = time.perf_counter()
            acc = run(shipped_clip(resolution), (x, y), (test_x, test_y), steps, expert_lr, args.lr, args.batch,
                      args.seed)
            se = math.sqrt(acc * (1 - acc) / args.test)
            print(f"  clip@{resolution:<4} {label:<26} {steps:>5} steps: held-out accuracy {acc:.3f} ± {se:.3f} "
                  f"({time.perf_counter() - started:.0f}s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
