"""The seam through which a stage's checkpoint folder is copied to and from a store other nodes see.

The stage pipeline knows only this protocol; ``trial/scratch_mirror.py`` implements it on an fsspec store (a
trial retried on another node after its node died resumes from the last checkpoint instead of step 0).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol


class CheckpointMirror(Protocol):
    def pull(self, folder: Path) -> int:
        """Fetch the folder's files this node lacks; how many were fetched."""

    def push(self, folder: Path) -> int:
        """Upload the folder's files changed since the last push; how many were uploaded."""


def mirrored(mirror: CheckpointMirror | None, folder: Path, then: Callable[[int], None] | None,
             say: Callable[[str], None], position: str) -> Callable[[int], None] | None:
    """Before a stage trains into ``folder``: fetch its checkpoint from the shared store when this node has none,
    and return an ``on_step`` that uploads what the loop just wrote after every step (a ``stat`` per file; nothing
    is sent unless a checkpoint was written), then calls ``then`` (which may stop the trial). Without a mirror:
    ``then`` unchanged."""
    if mirror is None:
        return then
    if mirror.pull(folder):
        say(f"{position}: checkpoint fetched from the shared store")

    def on_step(done: int) -> None:
        mirror.push(folder)
        if then is not None:
            then(done)
    return on_step
