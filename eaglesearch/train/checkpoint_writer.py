"""Writing a stage's checkpoints (the format and reading are :mod:`eaglesearch.train.checkpoint`'s): every rank
writes its part with ``torch.distributed.checkpoint`` into a temp folder; rank 0 adds ``state.pt``, then the
manifest of sizes and CRC-32s, then renames the folder into place. With ``asynchronous`` all of it after the copy
to host memory runs in a background thread while training goes on.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import get_state_dict

from eaglesearch.train import fsdp
from eaglesearch.train.checkpoint import (
    CHECKPOINT_NAME,
    FORMAT_VERSION,
    MANIFEST,
    PREVIOUS_NAME,
    STATE_FILE,
    distributed,
    file_crc,
    rng_state,
    trained_state,
)


def async_by_default(device: torch.device) -> bool:
    """Whether saves overlap training by default: on CUDA (the GPU keeps computing while the host writes), not on
    the CPU (the write would compete with training for the same cores)."""
    return device.type == "cuda"


def _manifest(folder: Path, step: int) -> dict[str, Any]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name != MANIFEST)
    return {"format_version": FORMAT_VERSION, "step": step,
            "files": {p.name: {"bytes": p.stat().st_size, "crc32": file_crc(p)} for p in files}}


def _publish(tmp: Path, path: Path, step: int) -> None:
    """Checksum the finished temp folder, write its manifest, then rename it to ``path`` (``path`` → ``prev``)."""
    (tmp / MANIFEST).write_text(json.dumps(_manifest(tmp, step), indent=1) + "\n")
    previous = path.with_name(PREVIOUS_NAME)
    old = path.with_name(f".{PREVIOUS_NAME}.old")
    if previous.exists():
        os.replace(previous, old)
    if path.exists():
        os.replace(path, previous)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


class CheckpointWriter:
    """Writes a stage's checkpoints to ``path`` (the ``last`` folder); every rank calls :meth:`save` (it is
    collective: each rank writes its part), rank 0 (``is_main``) also writes ``state.pt`` and publishes the folder.

    ``process_group``: the group DCP coordinates over; an asynchronous save must not share the training's group
    (its collectives would interleave with DDP's from another thread), so the strategy gives it its own gloo group.
    """

    def __init__(self, path: Path, *, is_main: bool = True, asynchronous: bool = False,
                 process_group: dist.ProcessGroup | None = None) -> None:
        self.path, self.is_main, self.asynchronous = Path(path), is_main, asynchronous
        self.process_group = process_group
        self._pending: Future | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.saves = 0
        if is_main:  # a temp folder left by a killed run is never published: remove it
            self.path.parent.mkdir(parents=True, exist_ok=True)
            for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):
                shutil.rmtree(stale, ignore_errors=True)

    def save(self, *, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
             scheduler: torch.optim.lr_scheduler.LRScheduler, data_state: tuple[int, int] | None,
             losses: list[float], meta: Mapping[str, Any] | None = None) -> None:
        """Checkpoint the state after ``step`` completed steps (the RNG states are read now). ``model`` is the
        module itself (not a DDP wrapper); a sharded model saves its shards."""
        self.wait()
        model_state, optimizer_state = get_state_dict(model, optimizer)
        keep = trained_state(model, model_state)
        small = {"step": int(step), "scheduler": scheduler.state_dict(), "rng": rng_state(),
                 "data_state": None if data_state is None else [int(data_state[0]), int(data_state[1])],
                 "losses": [float(v) for v in losses],
                 "meta": {**dict(meta or {}), "sharded": fsdp.is_sharded(model)},
                 "format_version": FORMAT_VERSION}
        tmp = self.path.with_name(f".{self.path.name}.step{int(step):08d}.tmp")
        writer = dcp.FileSystemWriter(str(tmp), sync_files=True)
        state = {"model": keep, "optimizer": optimizer_state}
        no_dist = not distributed()
        group = None if no_dist else self.process_group
        self.saves += 1
        if self.asynchronous:
            written = dcp.async_save(state, storage_writer=writer, process_group=group, no_dist=no_dist)
            if not isinstance(written, Future):  # an AsyncSaveResponse (staging future + upload future)
                written = written.upload_completion
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint")
            self._pending = self._executor.submit(self._finish, written, small, tmp, int(step))
        else:
            dcp.save(state, storage_writer=writer, process_group=group, no_dist=no_dist)
            self._finish(None, small, tmp, int(step))

    def _finish(self, written: Future | None, small: dict[str, Any], tmp: Path, step: int) -> None:
        if written is not None:
            written.result()
        if self.is_main:
            with open(tmp / STATE_FILE, "wb") as handle:
                torch.save(small, handle)
                handle.flush()
                os.fsync(handle.fileno())
            _publish(tmp, self.path, step)

    def wait(self) -> None:
        """Block until the save in flight (if any) is published; re-raises its error."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None


def remove_checkpoints(folder: Path) -> None:
    """Delete a stage's checkpoints in ``folder`` (``last``, ``prev`` and unfinished temp folders)."""
    for name in (CHECKPOINT_NAME, PREVIOUS_NAME, f".{PREVIOUS_NAME}.old"):
        shutil.rmtree(Path(folder) / name, ignore_errors=True)
    for stale in Path(folder).glob(f".{CHECKPOINT_NAME}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
