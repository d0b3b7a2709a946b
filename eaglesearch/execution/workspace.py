"""Where a search keeps its state on disk: generated data, tokenizers, Ray Tune experiments.

One folder (default ``.eaglesearch/`` in the working directory, ``--workdir`` or ``EAGLESEARCH_HOME`` to move it),
always absolute, because Ray trials run in other working directories.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def at(cls, root: str | Path | None = None) -> Workspace:
        chosen = root or os.environ.get("EAGLESEARCH_HOME") or Path.cwd() / ".eaglesearch"
        path = Path(chosen).expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        return cls(root=path)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def tokenizer_dir(self) -> Path:
        return self.root / "tokenizers"

    @property
    def ray_dir(self) -> Path:
        return self.root / "ray"

    @property
    def scratch_dir(self) -> Path:
        return self.root / "scratch"


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (``flock``) held for the ``with`` block; one writer per cached artifact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
