"""AdamW over the trainable parameters; no weight decay on biases and norm weights (1-D tensors)."""

from __future__ import annotations

import torch
from torch import nn

from eaglesearch.spec import TrainSpec


def build_optimizer(model: nn.Module, spec: TrainSpec) -> torch.optim.AdamW:
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 else decay).append(param)
    if not decay and not no_decay:
        raise ValueError("nothing to train: every parameter is frozen; unfreeze an expert, the projector or the LM")
    groups = [{"params": decay, "weight_decay": spec.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=spec.lr, betas=spec.betas)
