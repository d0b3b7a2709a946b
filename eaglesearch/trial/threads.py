"""CPU thread pinning. ``OMP_WAIT_POLICY=PASSIVE`` is set by ``import eaglesearch`` before torch loads."""

from __future__ import annotations

import os


def pin_threads(threads: int) -> None:
    """Use ``threads`` intra-op threads and one inter-op thread (trials × threads should not exceed cores)."""
    import torch

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    torch.set_num_threads(max(1, threads))
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # inter-op pool already started in this process; intra-op pinning above is what matters
