"""Stage checkpoints mirrored into the shared store, so a trial retried on another machine resumes, not restarts.

Why: a stage writes its checkpoints (``last.pt``, ``done.pt``...) into the workdir's scratch folder, which on a
cluster is a disk of the node the trial ran on. When that node dies, Ray Tune retries the trial on another node,
whose scratch folder is empty: without this, the retry starts from step 0. With a shared artifact root (an fsspec
URL such as ``s3://bucket/prefix``) every checkpoint folder under scratch has a twin at
``<artifact root>/scratch/<same relative path>``: the stage pulls it before training (when the local folder lacks
it) and pushes each file the training loop has rewritten after every step (a ``stat`` per file: nothing is
uploaded unless a checkpoint was written); when the trial ends, :meth:`ScratchMirror.close` deletes the twins of
its folders (the trial's, and those of per-expert stages whose local folder is gone: their artifact is built). The checkpoint format stays the training
loop's business: files are copied as they are. Each object is uploaded whole (S3 puts are atomic), the newest
checkpoint file last, so a reader sees either the previous or the new checkpoint of a file.

Released checkpoints: when a search discontinues a successive-halving candidate, the driver deletes the twin of its
checkpoint folder and leaves a marker under ``<artifact root>/released/`` (:meth:`ScratchMirror.release`); the
node that trained the rung holds a local copy the driver cannot reach, and deletes it when it next starts a trial
(:meth:`ScratchMirror.sweep`). A trial that starts under a released key (the same candidate in a later search)
withdraws the marker first (:meth:`ScratchMirror.claim`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import fsspec

SCRATCH_PREFIX = "scratch"
RELEASED_PREFIX = "released"
SWEEP_AGE_S = 60.0
"""A released folder changed within this many seconds is left alone (a trial that just claimed it may write)."""


class ScratchMirror:
    """Mirror of ``scratch`` (a local folder) under ``<url>/scratch`` (an fsspec URL every node can open)."""

    def __init__(self, scratch: Path, url: str) -> None:
        self.scratch = Path(scratch)
        self.fs, root = fsspec.core.url_to_fs(url)
        self.root = f"{root.rstrip('/')}/{SCRATCH_PREFIX}"
        self.released_root = f"{root.rstrip('/')}/{RELEASED_PREFIX}"
        self._pushed: dict[str, tuple[int, int]] = {}  # local file -> (size, mtime_ns) last uploaded
        self._folders: set[Path] = set()  # folders pushed to (close() deletes their twins once they are gone)

    def __repr__(self) -> str:
        return f"ScratchMirror({self.scratch} -> {self.root})"

    def _remote(self, folder: Path) -> str:
        relative = Path(folder).absolute().relative_to(self.scratch.absolute())
        return f"{self.root}/{relative.as_posix()}"

    def pull(self, folder: Path) -> int:
        """Download the files of ``folder``'s twin that ``folder`` lacks; returns how many were downloaded."""
        remote = self._remote(folder)
        self.fs.invalidate_cache(remote)  # fsspec shares one filesystem object per process: its listing may be old
        try:
            found = self.fs.find(remote)
        except FileNotFoundError:
            return 0
        pulled = 0
        for path in found:
            target = Path(folder) / path[len(remote):].lstrip("/")
            if target.exists():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            handle, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
            os.close(handle)
            try:
                self.fs.get_file(path, tmp)
                os.replace(tmp, target)  # a concurrent reader (another rank) never sees half a file
            finally:
                Path(tmp).unlink(missing_ok=True)
            self._note(target)
            pulled += 1
        return pulled

    def push(self, folder: Path) -> int:
        """Upload the files of ``folder`` changed since the last push (oldest first); returns how many."""
        folder = Path(folder)
        if not folder.is_dir():
            return 0
        changed = []
        for path in folder.rglob("*"):
            parts = path.relative_to(folder).parts
            if not path.is_file() or any(part.endswith(".tmp") for part in parts):  # an atomic save's temp file
                continue  # or folder (a checkpoint being written); DCP's own ".metadata" is part of the checkpoint
            try:
                stat = path.stat()
            except FileNotFoundError:  # replaced meanwhile
                continue
            if self._pushed.get(str(path)) != (stat.st_size, stat.st_mtime_ns):
                changed.append((stat.st_mtime_ns, path))
        remote = self._remote(folder)
        self._folders.add(folder)
        for _, path in sorted(changed):
            self.fs.put_file(str(path), f"{remote}/{path.relative_to(folder).as_posix()}")
            self._note(path)
        return len(changed)

    def remove(self, folder: Path) -> None:
        """Delete ``folder``'s twin (the stage or trial is done: nothing will resume from it)."""
        remote = self._remote(folder)
        try:
            self.fs.rm(remote, recursive=True)
        except FileNotFoundError:
            pass
        prefix = str(Path(folder))
        self._pushed = {k: v for k, v in self._pushed.items() if not k.startswith(prefix)}

    def _marker(self, folder: Path) -> str:
        relative = Path(folder).absolute().relative_to(self.scratch.absolute())
        return f"{self.released_root}/{relative.as_posix()}"

    def release(self, folder: Path) -> None:
        """Nothing will resume from ``folder`` on any node: delete its twin and mark it released for the nodes."""
        self.remove(folder)
        marker = self._marker(folder)
        self.fs.makedirs(marker.rsplit("/", 1)[0], exist_ok=True)
        self.fs.pipe_file(marker, b"")

    def claim(self, folder: Path) -> None:
        """A trial starts in ``folder``: withdraw a release marker left by an earlier search."""
        try:
            self.fs.rm(self._marker(folder))
        except FileNotFoundError:
            pass

    def sweep(self, parent: Path) -> list[Path]:
        """Delete the folders under ``parent`` (local trial checkpoint folders) that are marked released and unchanged
        for :data:`SWEEP_AGE_S`; returns them."""
        if not Path(parent).is_dir():
            return []
        self.fs.invalidate_cache(self.released_root)
        removed = []
        for folder in sorted(p for p in Path(parent).iterdir() if p.is_dir()):
            if time.time() - folder.stat().st_mtime < SWEEP_AGE_S or not self.fs.exists(self._marker(folder)):
                continue
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
        return removed

    def close(self, trial_folder: Path) -> None:
        """The trial finished: delete the twin of ``trial_folder`` and of every folder pushed that is gone here."""
        for folder in {Path(trial_folder), *(f for f in self._folders if not f.exists())}:
            self.remove(folder)
        self._folders.clear()

    def _note(self, path: Path) -> None:
        stat = path.stat()
        self._pushed[str(path)] = (stat.st_size, stat.st_mtime_ns)
