"""A stage's optimizer over the trainable parameters: AdamW (fused on CUDA) or SGD with momentum; no weight decay on
biases and norm weights (1-D tensors)."""

from __future__ import annotations

import torch
from torch import nn

from eaglesearch.spec.train import StageSpec


def build_optimizer(model: nn.Module, spec: StageSpec) -> torch.optim.Optimizer:
    """``spec.optimizer`` (``adamw``: ``betas``; ``sgd``: ``momentum``) at ``spec.lr`` over parameters with
    ``requires_grad``, decaying the 2-D+ ones by ``spec.weight_decay``; the vision experts' parameters at
    ``spec.expert_lr`` when it is set (Eagle's ``vision_tower_lr``)."""
    vision = getattr(getattr(model, "module", model), "experts", None)  # an EagleModel's experts (under DDP too)
    expert_ids = {id(p) for p in vision.parameters()} if spec.expert_lr is not None and vision is not None else set()
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for param in model.parameters():
        if param.requires_grad:
            groups.setdefault((id(param) in expert_ids, param.ndim >= 2), []).append(param)
    if not groups:
        raise ValueError(f"stage '{spec.name}' has nothing to train: every parameter is frozen "
                         f"(trainable: {spec.trainable.label}); set the stage's `trainable` (e.g. projector: true, "
                         "lm: all) or unfreeze an expert, the projector or the LM in the model spec")
    # decayed before undecayed, the experts' groups last: without expert_lr the two groups of earlier checkpoints
    param_groups = [{"params": params, "weight_decay": spec.weight_decay if decays else 0.0,
                     "lr": spec.expert_lr if expert and spec.expert_lr is not None else spec.lr}
                    for (expert, decays), params in sorted(groups.items(), key=lambda kv: (kv[0][0], not kv[0][1]))]
    if spec.optimizer == "sgd":
        return torch.optim.SGD(param_groups, lr=spec.lr, momentum=spec.momentum)
    # On CUDA the fused kernel updates every parameter in a few launches (the default foreach path launches
    # several kernels per parameter group and tensor list); on the CPU foreach is the fast path.
    on_cuda = all(p.is_cuda for group in param_groups for p in group["params"])
    return torch.optim.AdamW(param_groups, lr=spec.lr, betas=spec.betas, fused=True if on_cuda else None)
