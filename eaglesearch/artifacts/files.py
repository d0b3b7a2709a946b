"""Small filesystem helpers of the local store: atomic writes, fsync, and a local lock (``filelock``)."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from pathlib import Path

from filelock import FileLock


def file_lock(path: Path) -> FileLock:
    """An exclusive lock on ``path`` (created with its folder) for a ``with`` block: one writer per local resource,
    across processes and threads."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(path)


def parses(raw: bytes) -> bool:
    try:
        json.loads(raw)
    except ValueError:
        return False
    return True


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def fsync_tree(root: Path) -> None:
    """Flush an artifact's files to disk before its marker says it is complete."""
    for path in root.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        fsync_dir(folder)

