"""Measured cost of a model: forward FLOPs per image (vision side) and per training sample (whole model).

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` on a real forward pass (matmuls, convolutions,
attention), not estimated by formula. The same code runs on the ``meta`` device, so paper-scale models are
measured without allocating their weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from eaglesearch.model.eagle import EagleModel


@dataclass(frozen=True)
class ModelCost:
    params: dict[str, int]
    visual_tokens: int
    vision_flops_per_image: int
    flops_per_sample: int | None

    def as_metrics(self) -> dict[str, float]:
        metrics = {
            "cost/params_total": float(self.params["total"]),
            "cost/params_trainable": float(self.params["trainable"]),
            "cost/visual_tokens": float(self.visual_tokens),
            "cost/vision_gflops": self.vision_flops_per_image / 1e9,
        }
        if self.flops_per_sample is not None:
            metrics["cost/gflops_per_sample"] = self.flops_per_sample / 1e9
        for name, value in self.params.items():
            if name.startswith("expert/") or name in ("fusion", "projector", "lm"):
                metrics[f"cost/params_{name}"] = float(value)
        return metrics


def count_flops(fn, *args, **kwargs) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn(*args, **kwargs)
    return int(counter.get_total_flops())


def measure_cost(model: EagleModel, image: torch.Tensor, sample: dict[str, torch.Tensor] | None = None) -> ModelCost:
    """Cost of ``model`` for one uint8 ``image`` (1,3,S,S) and, if given, one collated training ``sample``."""
    was_training = model.training
    model.eval()
    try:
        vision = count_flops(model.encode_images, image[:1])
        total = None
        if sample is not None:
            one = {k: v[:1] for k, v in sample.items()}
            total = count_flops(model, one["images"], one["input_ids"], one["attention_mask"])
    finally:
        model.train(was_training)
    return ModelCost(params=model.param_counts(), visual_tokens=model.num_visual_tokens,
                     vision_flops_per_image=vision, flops_per_sample=total)
