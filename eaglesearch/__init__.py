"""eaglesearch: design-space search for mixture-of-vision-encoder multimodal LLMs.

Importing the package sets ``OMP_WAIT_POLICY=PASSIVE`` (unless the user chose otherwise) before torch can be
imported anywhere below it: on a small shared CPU the default active spin-wait of libgomp makes two torch
processes run ~20x slower (see ``shared/reference/tiny_cpu.md`` §5).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

__version__ = "0.1.0"
