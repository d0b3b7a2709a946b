"""Where a search keeps its state on disk: generated data, tokenizers, Ray Tune experiments.

One folder (default ``.eaglesearch/`` in the working directory, ``--workdir`` or ``EAGLESEARCH_HOME`` to move it),
always absolute, because Ray trials run in other working directories.

Stage artifacts (pre-aligned experts, see ``eaglesearch/train/stages.py``; the store is ``eaglesearch/artifacts/``)
live under ``<root>/artifacts`` unless ``--artifacts`` or ``EAGLESEARCH_ARTIFACTS`` names another root: a shared
folder or any fsspec URL (``s3://...``), so every machine of a cluster, and every search, reuses them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ARTIFACTS_ENV = "EAGLESEARCH_ARTIFACTS"
PER_TRIAL = "per-trial"
"""Artifact root value that disables reuse: each trial builds its stage artifacts in a private store it deletes
afterwards (what ``benchmarks/stages.py`` compares reuse against)."""


@dataclass(frozen=True)
class Workspace:
    root: Path
    artifacts: str = ""
    """Root of the stage-artifact store: a local path or an fsspec URL (default ``<root>/artifacts``)."""

    @classmethod
    def at(cls, root: str | Path | None = None, artifacts: str | None = None) -> Workspace:
        chosen = root or os.environ.get("EAGLESEARCH_HOME") or Path.cwd() / ".eaglesearch"
        path = Path(chosen).expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        url = artifacts or os.environ.get(ARTIFACTS_ENV) or str(path / "artifacts")
        if url != PER_TRIAL and "://" not in url and "::" not in url:
            url = str(Path(url).expanduser().resolve())
        return cls(root=path, artifacts=url)

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
