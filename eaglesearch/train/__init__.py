"""Training: one stage at a time (what trains, AdamW/SGD, warmup + schedule, clipping, gradient accumulation),
deterministic for a seed and thread count."""

from eaglesearch.train.loop import TrainStats, batches, train
from eaglesearch.train.optim import build_optimizer
from eaglesearch.train.schedule import lr_multiplier, warmup_cosine
from eaglesearch.train.trainable import apply_trainable

__all__ = ["TrainStats", "apply_trainable", "batches", "build_optimizer", "lr_multiplier", "train", "warmup_cosine"]
