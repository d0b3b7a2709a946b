"""How much GPU memory one trial may use: the figure the fit check (``trial/memory.py``) compares against.

Kept apart from the memory plan so that ``eaglesearch validate`` learns "nothing to check" (a CPU search, or no GPU
size known) without importing torch; torch is imported only to ask the visible GPU.
"""

from __future__ import annotations

from eaglesearch.spec import ResourcesSpec

GB = 1e9  # as eaglesearch.model.memory.GB


def available_gpu_memory_gb(resources: ResourcesSpec) -> float | None:
    """Memory one trial may use on one GPU: ``gpu_memory_gb``, else the visible GPU's (None: no check)."""
    if resources.gpus_per_trial <= 0:
        return None
    total = resources.gpu_memory_gb
    if total is None:  # only now is torch needed: ask the visible GPU
        import torch

        if torch.cuda.is_available():
            total = torch.cuda.get_device_properties(0).total_memory / GB
    if total is None:
        return None
    return total * min(1.0, resources.gpus_per_trial)  # a fractional GPU is shared with other trials
