"""A failure-injection vision encoder for tests, declared the way a user declares their own encoder.

It lets the failure handling of the trainer, the trial worker and the search be tested on a real trial: a single
strided convolution (3 → 8 channels, stride 16, 128 px, no weights) whose forward raises :data:`FAULTY_MESSAGE` on
every real image. It is not a built-in family (users never see it): a test declares it in a search space's
``experts:`` section (:func:`declaration`, :func:`copy_beside`) or registers it in its own process
(:func:`registered`).

Two inputs pass through instead of raising, so that the search space declaring it validates and the failure happens
inside a trial, where the tests need it:

* the declaration check's probe (``check_declaration`` runs every declared encoder once on an all-zero image);
  a real image is normalised with a non-zero mean, so it never arrives as all zeros;
* tensors on the ``meta`` device (memory planning and token counting size the model there; nothing is computed).

The module imports only torch, so :func:`copy_beside` can put it next to a temp project's search space, where the
CLI and its Ray workers import it as ``faulty_expert`` (as a user's module beside their YAML).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from torch import Tensor, nn

NAME = "faulty"
FAULTY_MESSAGE = "faulty expert: injected failure (this expert exists to test failure handling)"
RESOLUTION, STRIDE, CHANNELS = 128, 16, 8
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
MODULE = "tests.support.faulty_expert"
BESIDE_MODULE = "faulty_expert"  # the module's name once copied beside a search space


class FaultyEncoder(nn.Module):
    """A strided conv with the shape of a real encoder whose forward raises ``RuntimeError`` on real images."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, CHANNELS, kernel_size=STRIDE, stride=STRIDE)

    def forward(self, pixels: Tensor) -> Tensor:
        if pixels.is_meta or not pixels.any():  # sizing on meta, or the declaration check's zero-image probe
            return self.conv(pixels)
        raise RuntimeError(FAULTY_MESSAGE)


def build(pretrained: bool = False) -> nn.Module:
    """The factory a declaration names (``<module>:build``). There are no weights: ``pretrained`` changes nothing."""
    return FaultyEncoder()


def declaration(module: str = MODULE) -> dict[str, object]:
    """The fields of an ``experts:`` entry for this encoder (the entry's key is the name, :data:`NAME`)."""
    return {"factory": f"{module}:build", "resolution": RESOLUTION, "mean": list(CLIP_MEAN), "std": list(CLIP_STD),
            "channels": CHANNELS, "stride": STRIDE, "pretrained": False,
            "feature_layer": "conv output (real images never produce it: forward raises)",
            "description": "test-only: builds, then raises in forward"}


def copy_beside(folder: Path) -> dict[str, object]:
    """Copy this module into ``folder`` (a search space's folder or the one above it) as ``faulty_expert.py`` and
    return the ``experts:`` entry that declares it from there; a CLI subprocess and its Ray workers find it there
    whether or not the repository is on their ``PYTHONPATH``."""
    shutil.copyfile(Path(__file__), Path(folder) / f"{BESIDE_MODULE}.py")
    return declaration(BESIDE_MODULE)


@contextmanager
def registered() -> Iterator[None]:
    """Register the encoder as family :data:`NAME` in this process for the duration of the block, then leave the
    expert registry as it was (other tests list the built-in families)."""
    from eaglesearch.model.experts import custom, registry
    from eaglesearch.spec.custom_expert import CustomExpertSpec

    families, declared = dict(registry._FAMILIES), dict(custom._DECLARED)
    try:
        custom.register_custom_expert(CustomExpertSpec.model_validate({"name": NAME, **declaration()}), check=True)
        yield
    finally:
        registry._FAMILIES.clear()
        registry._FAMILIES.update(families)
        custom._DECLARED.clear()
        custom._DECLARED.update(declared)
