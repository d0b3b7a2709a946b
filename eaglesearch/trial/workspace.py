"""Where a search keeps its state on disk: generated data, tokenizers, Ray Tune experiments.

One folder (default ``.eaglesearch/`` in the working directory, ``--workdir`` or ``EAGLESEARCH_HOME`` to move it),
always absolute, because Ray trials run in other working directories.

Stage artifacts (pre-aligned experts, see ``eaglesearch/train/stages.py``; the store is ``eaglesearch/artifacts/``)
live under ``<root>/artifacts`` unless ``--artifacts`` or ``EAGLESEARCH_ARTIFACTS`` names another root: a shared
folder or any fsspec URL (``s3://...``), so every machine of a cluster, and every search, reuses them.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from eaglesearch.trial.scratch_mirror import ScratchMirror

ARTIFACTS_ENV = "EAGLESEARCH_ARTIFACTS"
PER_TRIAL = "per-trial"
"""Artifact root value that disables reuse: each trial builds its stage artifacts in a private store it deletes
afterwards (what ``benchmarks/stages.py`` compares reuse against)."""


def is_remote_url(url: str) -> bool:
    """An fsspec URL every machine can open by itself (``s3://``, ``gs://``...; not a path, not ``file://``)."""
    if "://" not in url:
        return "::" in url  # a chained URL (simplecache::s3://...)
    return url.partition("://")[0].lower() not in ("file", "local")


@dataclass(frozen=True)
class Workspace:
    root: Path
    artifacts: str = ""
    """Root of the stage-artifact store: a local path or an fsspec URL (default ``<root>/artifacts``)."""

    @classmethod
    def at(cls, root: str | Path | None = None, artifacts: str | None = None) -> Workspace:
        path = cls.root_path(root)
        path.mkdir(parents=True, exist_ok=True)
        return cls(root=path, artifacts=cls.artifacts_url(path, artifacts))

    @staticmethod
    def root_path(root: str | Path | None = None) -> Path:
        """The absolute workdir ``at`` would use, created by nobody (preflight reads it before anything starts)."""
        chosen = root or os.environ.get("EAGLESEARCH_HOME") or Path.cwd() / ".eaglesearch"
        return Path(chosen).expanduser().resolve()

    @staticmethod
    def artifacts_url(root: Path, artifacts: str | None = None) -> str:
        """The artifact root ``at`` would use for workdir ``root``: local paths absolute, URLs unchanged."""
        url = artifacts or os.environ.get(ARTIFACTS_ENV) or str(root / "artifacts")
        if url != PER_TRIAL and "://" not in url and "::" not in url:
            url = str(Path(url).expanduser().resolve())
        return url

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

    def trial_scratch(self, key: str) -> Path:
        """The folder a trial checkpoints its joint stages into (every rung of a candidate shares its full key's)."""
        return self.scratch_dir / "trials" / key

    def remove_trial_scratch(self, key: str) -> None:
        """Delete trial ``key``'s checkpoint folder here and its twin in the scratch mirror, if any (nothing will
        resume from it: e.g. a successive-halving candidate that was discontinued)."""
        folder = self.trial_scratch(key)
        shutil.rmtree(folder, ignore_errors=True)
        mirror = self.scratch_mirror()
        if mirror is not None:  # other nodes delete their copies when they next start a trial (sweep)
            mirror.release(folder)

    def scratch_mirror(self) -> ScratchMirror | None:
        """With a remote artifact root, the scratch folder's checkpoints are mirrored there (a trial retried on
        another node resumes from them); None when the artifact root is a local folder."""
        if not is_remote_url(self.artifacts):
            return None
        from eaglesearch.trial.scratch_mirror import ScratchMirror

        return ScratchMirror(self.scratch_dir, self.artifacts)
