"""Small encoders for the bring-your-own-encoder tests, importable as ``tests.custom_encoders:<factory>``."""

from __future__ import annotations

import torch
from torch import nn


def patch16(pretrained: bool = True) -> nn.Module:
    """3 → 16 channels at stride 8 (one 8x8 patch per cell). "Pretrained" weights are a fixed ramp."""
    conv = nn.Conv2d(3, 16, kernel_size=8, stride=8)
    if pretrained:
        with torch.no_grad():
            conv.weight.copy_(torch.linspace(-0.1, 0.1, conv.weight.numel()).view_as(conv.weight))
            conv.bias.zero_()
    return conv


def patch32(pretrained: bool = True) -> nn.Module:
    """Another encoder: 3 → 32 channels at stride 16."""
    return nn.Conv2d(3, 32, kernel_size=16, stride=16)


def broken(pretrained: bool = True) -> nn.Module:
    raise RuntimeError("weights file missing")


def declaration(factory: str = "tests.custom_encoders:patch16", **changes: object) -> dict[str, object]:
    """The fields of an ``experts:`` entry for :func:`patch16` (name comes from the key)."""
    return {"factory": factory, "resolution": 64, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25],
            "channels": 16, "stride": 8, "feature_layer": "the patch conv", **changes}


PROBE_DIR = "EAGLESEARCH_TEST_PROBE_DIR"
LEAK_VAR = "EAGLESEARCH_TEST_LEAK"


def recording(pretrained: bool = True) -> nn.Module:
    """:func:`patch16`, after writing down (when ``$EAGLESEARCH_TEST_PROBE_DIR`` is set) which process builds it and
    what that process holds: the registered expert families, and what an earlier trial set in the environment.
    Then it sets that variable itself, for the next trial in this process to (not) see."""
    import json
    import os
    import time
    from pathlib import Path

    from eaglesearch.model.experts import expert_names

    folder = os.environ.get(PROBE_DIR)
    if folder:
        record = {"pid": os.getpid(), "time": time.time(), "experts": expert_names(),
                  "leak": os.environ.get(LEAK_VAR), "threads": torch.get_num_threads()}
        (Path(folder) / f"{os.getpid()}-{time.time_ns()}.json").write_text(json.dumps(record))
    os.environ[LEAK_VAR] = "set by an earlier trial"
    return patch16(pretrained)
