"""``model.meta.skeleton``: models built on meta without their initialisation's arithmetic, shapes unchanged."""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from eaglesearch.model.experts import build_expert
from eaglesearch.model.meta import skeleton
from eaglesearch.spec import ExpertSpec


class _CountAten(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls += 1
        return func(*args, **(kwargs or {}))


def _shapes(module: torch.nn.Module) -> list[tuple[str, tuple[int, ...], torch.dtype, str]]:
    return [(n, tuple(p.shape), p.dtype, p.device.type) for n, p in module.named_parameters()]


def test_an_expert_built_as_a_skeleton_has_the_meta_build_parameters_with_far_fewer_kernel_calls() -> None:
    spec = ExpertSpec(name="convnext", resolution=256, pretrained=False)
    with _CountAten() as plain_calls, torch.device("meta"):
        plain = build_expert(spec)
    with _CountAten() as skeleton_calls, skeleton():
        ours = build_expert(spec)
    assert _shapes(ours) == _shapes(plain) and all(d == "meta" for *_, d in _shapes(ours))
    assert skeleton_calls.calls < plain_calls.calls / 2, (skeleton_calls.calls, plain_calls.calls)


def test_only_value_writes_on_meta_tensors_are_skipped() -> None:
    with skeleton():
        meta = torch.empty(2, 3)
        assert meta.uniform_() is meta and meta.is_meta
        assert torch.nn.init.trunc_normal_(meta) is meta
        assert meta.t().shape == (3, 2)  # everything else runs as on meta
        assert meta.unsqueeze_(0).shape == (1, 2, 3)  # a shape-changing in-place op still runs
        real = torch.zeros(2, device="cpu")
        real.add_(1.0)  # a real tensor is written as usual
    assert real.tolist() == [1.0, 1.0]
