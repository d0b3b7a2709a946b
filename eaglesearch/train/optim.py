"""A stage's optimizer over the trainable parameters: AdamW or SGD with momentum; no weight decay on biases and
norm weights (1-D tensors)."""

from __future__ import annotations

import torch
from torch import nn

from eaglesearch.spec.train import StageSpec


def build_optimizer(model: nn.Module, spec: StageSpec) -> torch.optim.Optimizer:
    """``spec.optimizer`` (``adamw``: ``betas``; ``sgd``: ``momentum``) at ``spec.lr`` over parameters with
    ``requires_grad``, decaying the 2-D+ ones by ``spec.weight_decay``."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 else decay).append(param)
    if not decay and not no_decay:
        raise ValueError(f"stage '{spec.name}' has nothing to train: every parameter is frozen "
                         f"(trainable: {spec.trainable.label}); set the stage's `trainable` (e.g. projector: true, "
                         "lm: all) or unfreeze an expert, the projector or the LM in the model spec")
    groups = [{"params": decay, "weight_decay": spec.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if spec.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=spec.lr, momentum=spec.momentum)
    return torch.optim.AdamW(groups, lr=spec.lr, betas=spec.betas)
