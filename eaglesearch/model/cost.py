"""Measured cost of a model: forward FLOPs per image (vision side) and per training sample (whole model).

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` on a real forward pass (matmuls, convolutions,
attention), not estimated by formula. The same code runs on the ``meta`` device, so paper-scale models are
measured without allocating their weights.

Under the ``dynamic`` image policy a sample's picture is several square images (tiles + thumbnail), each costing
the model one image's FLOPs and visual tokens: ``images_per_sample`` (the data's mean, ``data/aspect.py``
``count_images``) scales the per-sample numbers, while ``vision_flops_per_image`` stays per square image.
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
    images_per_sample: float = 1.0  # square images per picture: > 1 only under the dynamic image policy

    def as_metrics(self) -> dict[str, float]:
        """``cost/visual_tokens`` and ``cost/vision_gflops`` are per sample (per picture: all its tiles, on the
        data's mean); ``cost/images_per_sample`` is logged only when a picture is more than one image."""
        metrics = {
            "cost/params_total": float(self.params["total"]),
            "cost/params_trainable": float(self.params["trainable"]),
            "cost/visual_tokens": float(self.visual_tokens * self.images_per_sample),
            "cost/vision_gflops": self.vision_flops_per_image * self.images_per_sample / 1e9,
        }
        if self.images_per_sample != 1.0:
            metrics["cost/images_per_sample"] = self.images_per_sample
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


def measure_cost(model: EagleModel, image: torch.Tensor, sample: dict[str, torch.Tensor] | None = None,
                 images_per_sample: float = 1.0) -> ModelCost:
    """Cost of ``model`` for one uint8 ``image`` (1,3,S,S) (of a stack (B,T,3,S,S): its first image) and, if
    given, one collated training ``sample`` (its own tiles); ``images_per_sample`` as in :class:`ModelCost`."""
    was_training = model.training
    model.eval()
    try:
        vision = count_flops(model.encode_images, image[:1, 0] if image.dim() == 5 else image[:1])
        total = None
        if sample is not None:
            one = {k: v[:1] for k, v in sample.items()}
            total = count_flops(model, one["images"], one["input_ids"], one["attention_mask"])
    finally:
        model.train(was_training)
    return ModelCost(params=model.param_counts(), visual_tokens=model.num_visual_tokens,
                     vision_flops_per_image=vision, flops_per_sample=total, images_per_sample=images_per_sample)
