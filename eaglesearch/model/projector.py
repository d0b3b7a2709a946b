"""Projectors from fused visual tokens to the language model's embedding width."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn


class MLP2xGELU(nn.Module):
    """LLaVA-1.5 / Eagle ``mlp2x_gelu``: Linear(in → out) → GELU → Linear(out → out)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        self.net = nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))

    def forward(self, tokens: Tensor) -> Tensor:
        return self.net(tokens)


PROJECTORS: dict[str, Callable[[int, int], nn.Module]] = {"mlp2x_gelu": MLP2xGELU}


def build_projector(name: str, in_dim: int, out_dim: int) -> nn.Module:
    """The projector registered as ``name`` mapping width ``in_dim`` to ``out_dim``."""
    if name not in PROJECTORS:
        raise ValueError(f"unknown projector '{name}'; available: {', '.join(sorted(PROJECTORS))}")
    if in_dim <= 0 or out_dim <= 0:
        raise ValueError(f"projector widths must be positive; got in_dim={in_dim}, out_dim={out_dim}")
    return PROJECTORS[name](in_dim, out_dim)
