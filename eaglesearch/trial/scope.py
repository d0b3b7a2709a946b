"""A clean process for every trial, in a warm worker that runs one trial after another.

Ray CPU trials run in worker processes Tune reuses (``reuse_actors``), and the inline executor runs every trial in
the controller's process: both keep their imports (torch, transformers, timm, mlflow: seconds per process) and
must not keep anything else. :func:`trial_scope` wraps one trial:

* before: torch threads pinned to the trial's count, the global RNGs (``random``, numpy, torch and CUDA) seeded
  with the trial's seed, so a trial computes the same in a warm process as in a fresh one, whatever ran before;
* after (also when the trial raised, or a scheduler stopped it): the expert families the trial registered (its
  custom declarations) are unregistered, ``sys.path``, the environment, the working directory and torch's default
  dtype are restored, garbage is collected and the CUDA caching allocator gives its memory back to the device.

What is alive when a trial starts (imported modules, mostly) is set aside during the trial (``gc.freeze``), so
the collection after it walks only what the trial made (a full collection over torch, transformers and mlflow
takes 0.3-0.7 s on a busy 2-core machine); it is handed back to the collector afterwards (``gc.unfreeze``).

GPU trials on Ray still get a fresh process each (``ray_runner``): a process exit is the one release of CUDA memory
that holds whatever a trial leaks; the per-trial spawn cost is small beside a GPU trial's minutes.
"""

from __future__ import annotations

import gc
import os
import random
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from eaglesearch.trial.threads import pin_threads


def seed_everything(seed: int) -> None:
    """Seed every global generator a trial might draw from (the trial's own code uses seeded generators)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also every CUDA device's generator


def free_memory() -> None:
    """Collect garbage and return the CUDA caching allocator's blocks to the device (when CUDA is in use)."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _restore_environ(saved: dict[str, str]) -> None:
    for name in [n for n in os.environ if n not in saved]:
        del os.environ[name]
    for name, value in saved.items():
        if os.environ.get(name) != value:
            os.environ[name] = value


@contextmanager
def trial_scope(seed: int, threads: int) -> Iterator[None]:
    """Run one trial in this (possibly warm) process as if it were fresh, and leave nothing of it behind."""
    import torch

    from eaglesearch.model.experts.discovery import trial_expert_scope

    path, environ, cwd, dtype = list(sys.path), dict(os.environ), os.getcwd(), torch.get_default_dtype()
    pin_threads(threads)
    seed_everything(seed)
    gc.freeze()
    try:
        with trial_expert_scope():
            yield
    finally:
        sys.path[:] = path
        _restore_environ(environ)
        if os.getcwd() != cwd:
            os.chdir(cwd)
        torch.set_default_dtype(dtype)
        free_memory()
        gc.unfreeze()
