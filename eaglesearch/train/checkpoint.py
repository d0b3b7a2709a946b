"""In-trial checkpoints: everything a training stage needs to continue bit-identically after its process died.

One file per stage (``last.pt``), replaced atomically (temp file in the same folder, then ``os.replace``), so a kill
at any moment leaves either the previous checkpoint or the new one, never a torn file. The checkpoint it replaces is
kept as ``prev.pt``: a file damaged later (a full disk, a bad copy, bit rot) is caught by the SHA-256 digest of its
contents stored inside it (``torch.load`` itself does not notice flipped bytes in tensor data), and
:func:`load_latest` then falls back to ``prev.pt`` or, failing that, to the start of the stage. It holds

* the weights that training changes: every parameter with ``requires_grad`` and every persistent buffer. Frozen
  parameters are *not* saved: they are rebuilt bit-identically from the spec and seed (pretrained or seeded random
  init, see ``reference/tiny_cpu.md`` §5), which keeps a checkpoint of a 7B model with frozen experts small. Loading
  checks that the model being resumed has exactly these tensors with these shapes and dtypes;
* optimizer and LR-scheduler state;
* the process RNG states: torch CPU (and CUDA when available), Python ``random``, numpy;
* the data position ``(epoch, batches consumed in that epoch)`` of a :class:`~eaglesearch.train.loop.BatchStream`;
* the losses so far, ``meta`` (a small JSON-like dict the caller owns), a format version and the digest.

Files are read with ``torch.load(weights_only=True)``: nothing but tensors and plain containers is unpickled.

A model sharded with FSDP (:mod:`eaglesearch.train.fsdp`) is saved as full tensors gathered to rank 0, its
optimizer state keyed by parameter name; every rank must then call :func:`save_checkpoint` (only rank 0 writes)
and :func:`restore_checkpoint` shards the full tensors again. ``meta["sharded"]`` records which layout the
optimizer state has, so a checkpoint is resumed by the same kind of run that wrote it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from eaglesearch.train import fsdp

FORMAT_VERSION = 2
CHECKPOINT_NAME = "last.pt"
PREVIOUS_NAME = "prev.pt"
_CONTENT = ("step", "model", "optimizer", "scheduler", "rng", "data_state", "losses", "meta")
_REQUIRED = ("format_version", "digest", *_CONTENT)

logger = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used: unreadable, another format version, or written for another model."""


class CheckpointCorrupt(CheckpointError):
    """A damaged checkpoint (unreadable, truncated, digest mismatch, inconsistent): skipped with a warning for the
    previous one or the start of the stage, because nothing the user chose is wrong and training can go on."""


@dataclass
class Checkpoint:
    path: Path
    step: int
    """Optimizer steps completed; training continues with 0-based step ``step``."""
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng: dict[str, Any]
    data_state: tuple[int, int] | None
    losses: list[float]
    meta: dict[str, Any] = field(default_factory=dict)

    def fail(self, problem: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {self.path} {problem}; delete it to start over")

    def corrupt(self, problem: str) -> CheckpointCorrupt:
        return CheckpointCorrupt(f"checkpoint {self.path} {problem}")


def trained_state(model: nn.Module, state: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The part of ``model.state_dict()`` (or of ``state``, e.g. a gathered full state of a sharded model) a
    checkpoint stores: trainable parameters and persistent buffers."""
    keep = {name for name, p in model.named_parameters(remove_duplicate=False) if p.requires_grad}
    keep.update(name for name, _ in model.named_buffers(remove_duplicate=False))
    return {name: tensor for name, tensor in (model.state_dict() if state is None else state).items()
            if name in keep}


def gathered_trained_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """:func:`trained_state` as full tensors: gathered to rank 0 for a sharded model (collective; empty on the
    other ranks), the plain state otherwise."""
    return trained_state(model, fsdp.full_state(model)) if fsdp.is_sharded(model) else trained_state(model)


def rng_state() -> dict[str, Any]:
    """This process's RNG states (torch CPU and CUDA, Python ``random``, numpy) as tensors and plain values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def save_checkpoint(
    path: Path,
    *,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    data_state: tuple[int, int] | None,
    losses: list[float],
    meta: Mapping[str, Any] | None = None,
    is_main: bool = True,
) -> None:
    """Write the checkpoint after ``step`` completed steps to ``path`` atomically (the RNG states are read now); the
    checkpoint it replaces becomes ``prev.pt`` beside it.

    For a sharded model every rank calls this (the state is gathered) and only the one with ``is_main`` writes."""
    sharded = fsdp.is_sharded(model)
    model_state = gathered_trained_state(model)
    optimizer_state = fsdp.full_optimizer_state(model, optimizer) if sharded else optimizer.state_dict()
    if not is_main:
        return
    payload: dict[str, Any] = {
        "step": int(step),
        "model": model_state,
        "optimizer": optimizer_state,
        "scheduler": scheduler.state_dict(),
        "rng": rng_state(),
        "data_state": None if data_state is None else [int(data_state[0]), int(data_state[1])],
        "losses": [float(v) for v in losses],
        "meta": {**dict(meta or {}), "sharded": sharded},
    }
    payload["digest"] = content_digest(payload)
    payload["format_version"] = FORMAT_VERSION
    save_atomic(path, payload, keep_previous=Path(path).with_name(PREVIOUS_NAME))


def content_digest(payload: Mapping[str, Any]) -> str:
    """SHA-256 over the checkpoint's content (tensor bytes, dtypes and shapes, plain values), in a fixed order."""
    digest = hashlib.sha256()

    def feed(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            flat = value.detach().cpu().contiguous().reshape(-1)
            digest.update(f"T{flat.dtype}{tuple(value.shape)}".encode())
            digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
        elif isinstance(value, Mapping):
            digest.update(f"D{len(value)}".encode())
            for key in sorted(value, key=repr):
                digest.update(repr(key).encode())
                feed(value[key])
        elif isinstance(value, list | tuple):
            digest.update(f"L{len(value)}".encode())
            for item in value:
                feed(item)
        else:
            digest.update(f"V{value!r}".encode())

    for name in _CONTENT:
        digest.update(name.encode())
        feed(payload[name])
    return digest.hexdigest()


def save_atomic(path: Path, payload: Mapping[str, Any], keep_previous: Path | None = None) -> None:
    """``torch.save`` to a temp file beside ``path``, fsync, then rename: readers see the old file or the new one.

    With ``keep_previous`` the file being replaced is first renamed there (a kill between the two renames leaves
    only ``keep_previous``, which :func:`load_latest` reads)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(dict(payload), handle)
            handle.flush()
            os.fsync(handle.fileno())
        if keep_previous is not None and path.exists():
            os.replace(path, keep_previous)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path) -> Checkpoint | None:
    """The checkpoint at ``path``; None when there is none. Raises :class:`CheckpointCorrupt` naming the file when it
    is unreadable or damaged, :class:`CheckpointError` when it is of another format version."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load fails in many ways on a torn or foreign file
        detail = f"{type(err).__name__}: {err}".splitlines()[0][:200]
        raise CheckpointCorrupt(f"checkpoint {path} is unreadable ({detail})") from err
    if not isinstance(payload, dict) or "format_version" not in payload:
        raise CheckpointCorrupt(f"checkpoint {path} is not an eaglesearch training checkpoint")
    if payload["format_version"] != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {payload['format_version']}, this eaglesearch "
                              f"reads version {FORMAT_VERSION}; delete it to start over")
    if any(k not in payload for k in _REQUIRED):
        raise CheckpointCorrupt(f"checkpoint {path} is not an eaglesearch training checkpoint")
    if content_digest(payload) != payload["digest"]:
        raise CheckpointCorrupt(f"checkpoint {path} is damaged (its contents do not match the digest written with "
                                "them)")
    data_state = payload["data_state"]
    return Checkpoint(path=path, step=int(payload["step"]), model=payload["model"], optimizer=payload["optimizer"],
                      scheduler=payload["scheduler"], rng=payload["rng"],
                      data_state=None if data_state is None else (int(data_state[0]), int(data_state[1])),
                      losses=list(payload["losses"]), meta=dict(payload["meta"]))


def restore_checkpoint(
    checkpoint: Checkpoint,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> None:
    """Load weights, optimizer, scheduler and RNG states into freshly built objects; the data position and the
    losses are the caller's. Raises :class:`CheckpointError` when the model does not match the checkpoint.
    A sharded model (every rank calls this with the same checkpoint) gets the full tensors sharded again."""
    sharded = fsdp.is_sharded(model)
    if bool(checkpoint.meta.get("sharded", False)) != sharded:
        written, here = (("an FSDP", "without FSDP") if not sharded else ("a non-FSDP", "with FSDP"))
        raise checkpoint.fail(f"was written by {written} run and this one trains {here} (resources.parallelism)")
    expected = trained_state(model)
    missing = sorted(set(expected) - set(checkpoint.model))
    unexpected = sorted(set(checkpoint.model) - set(expected))
    if missing or unexpected:
        parts = [f"{label} {', '.join(names[:3])}{' …' if len(names) > 3 else ''}"
                 for label, names in (("lacks", missing), ("has extra", unexpected)) if names]
        raise checkpoint.fail(f"was written for another model (it {'; '.join(parts)})")
    for name, tensor in checkpoint.model.items():
        target = expected[name]
        if tensor.shape != target.shape or tensor.dtype != target.dtype:  # a DTensor reports its global shape
            raise checkpoint.fail(f"was written for another model ({name}: {tuple(tensor.shape)} {tensor.dtype} "
                                  f"there, {tuple(target.shape)} {target.dtype} here)")
    if sharded:
        fsdp.load_full_state(model, checkpoint.model)
    else:
        model.load_state_dict(checkpoint.model, strict=False)
    try:
        if sharded:
            fsdp.load_full_optimizer_state(model, optimizer, checkpoint.optimizer)
        else:
            optimizer.load_state_dict(checkpoint.optimizer)
        scheduler.load_state_dict(checkpoint.scheduler)
    except (ValueError, KeyError, RuntimeError) as err:
        raise checkpoint.fail(f"has optimizer state for another model ({err})") from err
    set_rng_state(checkpoint.rng)


def load_latest(path: Path, check: Callable[[Checkpoint], None] | None = None) -> Checkpoint | None:
    """The newest usable checkpoint: ``path`` (``last.pt``), else ``prev.pt`` beside it, else None (start over).

    A damaged file is skipped with a warning that names it and says where training resumes instead. ``check`` sees
    each loaded candidate: it raises :class:`CheckpointCorrupt` for damage only the caller can see (steps that do
    not match the losses) and :class:`CheckpointError` for a sound checkpoint that must not be used (another model
    or other settings), which stops the caller: silently starting over would hide the user's mistake.
    """
    path = Path(path)
    damaged: list[str] = []
    for candidate in (path, path.with_name(PREVIOUS_NAME)):
        try:
            found = load_checkpoint(candidate)
            if found is not None and check is not None:
                check(found)
        except CheckpointCorrupt as err:
            damaged.append(str(err))
            continue
        if found is None:
            continue
        if damaged:
            logger.warning("%s; resuming from %s (step %d) instead", "; ".join(damaged), candidate, found.step)
        return found
    if damaged:
        logger.warning("%s; no usable checkpoint is left, so the stage starts again from step 0", "; ".join(damaged))
    return None
