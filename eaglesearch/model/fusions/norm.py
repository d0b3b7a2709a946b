"""Per-expert feature normalisation before fusion (``ModelSpec.fusion_norm``).

Experts end in features of very different scales: Eagle's code concatenates them raw (reference/eagle.md §1.5), and
in the tiny world Pix2Struct's channels have a quarter of CLIP's spread while SAM fills two thirds of the
concatenated width. A fusion that mixes them raw lets the loudest expert dominate the projector's first layer at
initialisation. Each expert therefore gets its own normalisation over its channel axis, applied to exactly the
features the fusion consumes from it (grid tokens, or the native map an injection fusion reads), before anything
combines them:

* ``none``: the identity (raw features, Eagle's behaviour; no parameters, so state dicts and content keys of
  existing trials are unchanged);
* ``layernorm``: ``nn.LayerNorm`` per expert: per-token zero mean / unit variance over channels, then a learnable
  gain and bias per channel (initialised to 1 and 0);
* ``rmsnorm``: ``nn.RMSNorm`` per expert: per-token division by the root mean square over channels (no centring),
  then a learnable gain per channel;
* ``standardize``: per-token zero mean / unit variance over channels with nothing learned (a LayerNorm without its
  affine). It is the ablation point that says whether the learned gain matters.

Why ``standardize`` is per token, not per channel over data statistics: batch statistics make a model's output
depend on what else is in its batch (training batches, evaluation batches of another size, unsynchronised DDP
ranks), and running statistics add state that would have to survive the stage pipeline (pre-alignment → alignment
→ SFT), the frozen-feature cache and export. Per-token standardisation is deterministic, stateless, identical in
training and evaluation, and removes what this option is for: the difference in scale *between experts*.

The parameters live inside the fusion, so they train whenever the fusion does (``trainable.projector``, see
``train/trainable.py``), are counted in ``param_counts()["fusion"]`` and the cost and memory estimates, and are
built on the ``meta`` device like every other layer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor, nn

EPS = 1e-6


def _standardize(width: int) -> nn.Module:
    return nn.LayerNorm(width, eps=EPS, elementwise_affine=False)


FUSION_NORMS: dict[str, Callable[[int], nn.Module]] = {
    "none": lambda width: nn.Identity(),
    "layernorm": lambda width: nn.LayerNorm(width, eps=EPS),
    "rmsnorm": lambda width: nn.RMSNorm(width, eps=EPS),
    "standardize": _standardize,
}
"""Each ``fusion_norm`` name (``spec.model.FusionNormName``) → a factory of one expert's norm over ``width``."""


def build_norm(kind: str, width: int) -> nn.Module:
    """The ``kind`` norm over ``width`` channels (the last axis of its input)."""
    if kind not in FUSION_NORMS:
        raise ValueError(f"unknown fusion_norm '{kind}'; choose one of {', '.join(FUSION_NORMS)}")
    if width <= 0:
        raise ValueError(f"fusion_norm '{kind}' needs a positive channel width; got {width}")
    return FUSION_NORMS[kind](width)


class ExpertNorms(nn.Module):
    """One norm per expert (in spec order), each over that expert's channel width as the fusion consumes it."""

    def __init__(self, kind: str, widths: Sequence[int]) -> None:
        super().__init__()
        self.kind = kind
        self.widths = tuple(widths)
        self.norms = nn.ModuleList(build_norm(kind, width) for width in self.widths)

    @property
    def identity(self) -> bool:
        return self.kind == "none"

    def tokens(self, index: int, tokens: Tensor) -> Tensor:
        """Expert ``index``'s tokens (…, C), channels last, normalised."""
        self._check(index, tokens.shape[-1], "tokens (…, C)")
        return tokens if self.identity else self.norms[index](tokens)

    def map(self, index: int, features: Tensor) -> Tensor:
        """Expert ``index``'s feature map (B, C, h, w), channels first, normalised at every position."""
        self._check(index, features.shape[1], "a feature map (B, C, h, w)")
        return features if self.identity else self.norms[index](features.movedim(1, -1)).movedim(-1, 1)

    def _check(self, index: int, width: int, what: str) -> None:
        if width != self.widths[index]:
            raise ValueError(f"fusion_norm '{self.kind}' for expert {index} was built for {self.widths[index]} "
                             f"channels; got {what} with {width}")

    def extra_repr(self) -> str:
        return f"kind={self.kind}, widths={list(self.widths)}"
