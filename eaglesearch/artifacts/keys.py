"""Artifact keys and names: what names a stage artifact in the store."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from eaglesearch.spec.keys import content_key

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")


def artifact_key(payload: Mapping[str, Any]) -> str:
    """The key of a stage artifact: sha256 of ``payload`` as sorted, compact JSON, first 20 hex characters.

    ``payload`` must hold everything the stage's result depends on, and nothing else:

    * the expert spec (encoder name, pretrained weights, input resolution, tiling: whatever changes its features),
    * the LM spec (the projector maps into the LM's embedding space: its name and hidden size),
    * the data spec (dataset, its size and generation seed, preprocessing),
    * the stage's hyperparameters (steps, learning rate, batch size, schedule, which parameters train),
    * the seed,
    * a recipe version string, bumped whenever a code change alters the stage's result (old artifacts are then
      simply not found, instead of being reused wrongly).

    Leave out what does not change the result (logging cadence, output paths, device, worker counts), or equal
    artifacts get different keys. Values must be JSON types; dump pydantic specs with ``model_dump(mode="json")``
    first. Numbers are hashed as written, so ``1`` and ``1.0`` differ: pass values through the spec models so they
    are normalised the same way every time.
    """
    try:
        return content_key(dict(payload), 20)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"artifact payload must be plain JSON (dicts, lists, str, finite numbers, bool, None): {exc}; "
            "dump specs with model_dump(mode='json') first"
        ) from exc


def check_name(what: str, value: str) -> str:
    if not isinstance(value, str) or not NAME.match(value):
        raise ValueError(
            f"artifact {what} {value!r} is not a valid name: use 1-128 letters, digits, '_' or '-', "
            "starting with a letter or digit"
        )
    return value

