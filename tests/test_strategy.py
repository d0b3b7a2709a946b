"""Parallelism strategies (eaglesearch.train.strategy): which one a run gets, and what DDP must keep from one process.
The k-rank equivalence itself is tests/test_distributed.py (ddp) and tests/test_fsdp.py (fsdp)."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest
import torch
from torch import nn

from eaglesearch.train.distributed import (
    WorldInfo,
    destroy_process_group,
    free_port,
    init_process_group,
)
from eaglesearch.train.strategy import DataParallel, SingleProcess, strategy_for

torch.set_num_threads(1)


class TwoBranches(nn.Module):
    """Uses ``b`` only when asked: like an expert on a text-only batch."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x: torch.Tensor, use_b: bool = False) -> torch.Tensor:
        return self.b(self.a(x)) if use_b else self.a(x)


@pytest.fixture()
def one_rank():
    world = init_process_group(0, 1, port=free_port(), backend="gloo")
    yield world
    destroy_process_group()


def test_one_process_and_several_ranks_get_their_strategies() -> None:
    model = nn.Linear(2, 2)
    assert type(strategy_for(model, None, torch.device("cpu"))) is SingleProcess
    assert type(strategy_for(model, WorldInfo(0, 1), torch.device("cpu"))) is SingleProcess
    assert type(strategy_for(model, WorldInfo(1, 2), torch.device("cpu"))) is DataParallel


def test_ddp_sums_and_leaves_unused_parameters_without_a_gradient(one_rank) -> None:
    torch.manual_seed(0)
    model, x = TwoBranches(), torch.randn(3, 4)
    strategy = DataParallel(one_rank, torch.device("cpu"))
    wrapped = strategy.setup(model)
    assert isinstance(wrapped, torch.nn.parallel.DistributedDataParallel)
    wrapped(x).sum().backward()  # b unused: it must keep no gradient, as in one process (AdamW then skips it)
    assert model.a.weight.grad is not None and model.b.weight.grad is None
    expected = torch.autograd.grad(model.a(x).sum(), model.a.weight)[0]
    torch.testing.assert_close(model.a.weight.grad, expected, rtol=0, atol=0)  # summed over 2 ranks: test_distributed
    model.zero_grad(set_to_none=True)
    with strategy.no_sync(wrapped, last=False):  # a micro-batch before the last: no collective, grads accumulate
        wrapped(x, use_b=True).sum().backward()
    wrapped(x, use_b=True).sum().backward()
    assert model.b.weight.grad is not None
    assert strategy.agree(True) and strategy.reduce_losses(torch.tensor([1.5, 2.0])).tolist() == [1.5, 2.0]
    strategy.teardown(wrapped)
