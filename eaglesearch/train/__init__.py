"""Training: one SFT stage (AdamW, warmup + cosine, gradient clipping), deterministic for a seed and thread count."""

from eaglesearch.train.loop import TrainStats, batches, train
from eaglesearch.train.optim import build_optimizer
from eaglesearch.train.schedule import warmup_cosine

__all__ = ["TrainStats", "batches", "build_optimizer", "train", "warmup_cosine"]
