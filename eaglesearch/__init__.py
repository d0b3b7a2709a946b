"""eaglesearch: design-space search for mixture-of-vision-encoder multimodal LLMs.

Importing the package sets ``OMP_WAIT_POLICY=PASSIVE`` (unless the user chose otherwise) before torch can be
imported anywhere below it: on a small shared CPU the default active spin-wait of libgomp makes two torch
processes run ~20x slower (see ``shared/reference/tiny_cpu.md`` §5).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from eaglesearch.export import Winner

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

__version__ = "0.1.0"


def load(folder: str | os.PathLike[str], device: str | None = None) -> Winner:
    """The model in a folder written by ``eaglesearch export``: ``load(folder).generate(images, prompts)``.

    Imported lazily so that ``import eaglesearch`` stays light (no torch) for the command line."""
    from eaglesearch.export import load as _load

    return _load(folder, device)
