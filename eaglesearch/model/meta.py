"""Models built on the ``meta`` device (plans, memory estimates, preflight): shapes without values.

Building a paper-scale model on ``meta`` still runs every module's weight initialisation, and each in-place fill
(timm's truncated normal is uniform_, erfinv_, mul_, add_, clamp_) goes through meta kernels that compute nothing
but cost Python time (``benchmarks/meta_build.py``: paper_fusion's models build in 0.34x the CPU time without them;
sizing its 10 trials for ``eaglesearch plan`` goes from 20.3 to 15.6 CPU-s). Under :func:`skeleton`, value-only
in-place operations on meta tensors return their tensor untouched; shapes, dtypes and every other operation are as
under ``torch.device("meta")``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.overrides import TorchFunctionMode

# In-place operations that only write values (never a shape, stride or dtype), and torch.nn.init's fillers.
_VALUE_ONLY = frozenset({
    "uniform_", "normal_", "trunc_normal_", "erfinv_", "mul_", "add_", "sub_", "div_", "clamp_", "clamp_min_",
    "clamp_max_", "fill_", "zero_", "zeros_", "ones_", "constant_", "copy_", "exp_", "log_", "sqrt_", "neg_",
    "bernoulli_", "random_", "exponential_", "geometric_", "log_normal_", "cauchy_", "eye_", "dirac_",
    "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_", "sparse_",
    "lecun_normal_", "trunc_normal_tf_", "variance_scaling_",
})


class _SkipValueWrites(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in _VALUE_ONLY and args and isinstance(args[0], torch.Tensor) \
                and args[0].is_meta:
            return args[0]
        return func(*args, **(kwargs or {}))


@contextmanager
def skeleton() -> Iterator[None]:
    """Build modules on ``meta`` without running their weight initialisation's arithmetic."""
    with torch.device("meta"), _SkipValueWrites():
        yield
