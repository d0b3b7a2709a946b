"""In-trial checkpoints: everything a training stage needs to continue bit-identically after its process died,
written so that training barely waits for them.

A checkpoint is a folder (``last``) written with ``torch.distributed.checkpoint`` (DCP):

* ``__<rank>_0.distcp`` + ``.metadata``: the weights that training changes and the optimizer state, **sharded**:
  every rank writes only what it holds (its FSDP shards; under DDP DCP spreads the replicated tensors over the
  ranks), nothing is gathered to rank 0, and any world size can read it back (DCP reshards on load).
  Frozen parameters are *not* saved: they are rebuilt bit-identically from the spec and seed (pretrained or seeded
  random init, see ``reference/tiny_cpu.md`` §5), which keeps a checkpoint of a 7B model with frozen experts small.
* ``state.pt`` (rank 0): step, LR-scheduler state, the process RNG states (torch CPU and CUDA, Python ``random``,
  numpy), the data position ``(epoch, batches consumed)`` of the batch stream, the losses so far and ``meta``.
* ``manifest.json``, written last: the byte size and CRC-32 of every file above. A folder without it never finished.

**Integrity without hashing on the training path.** The old single-file format hashed the whole state with SHA-256
on the training thread before writing it (~84 GB for a 7B full SFT). Now the training thread only stages the state
(a copy to host memory, then DCP writes it from a background thread when ``asynchronous``); the CRC-32 of the
written files (zlib, which releases the GIL) is computed on that background thread after the write, and the folder
is renamed into place only then. On resume the sizes and checksums are verified before anything is loaded: a torn,
truncated or bit-flipped file is caught (``torch.load`` itself does not notice flipped bytes in tensor data).

**Atomic replacement.** Each save goes to a temp folder beside ``last`` and is renamed into place (``last`` first
becomes ``prev``), so a kill at any moment leaves the previous checkpoint or the new one, never a torn one;
:func:`load_latest` falls back from a damaged ``last`` to ``prev`` or, failing that, to the start of the stage.

**Async.** Writing is :mod:`eaglesearch.train.checkpoint_writer`'s. With ``asynchronous`` (``async_by_default``:
on CUDA) ``CheckpointWriter.save`` returns once the
state is copied to host memory; the write, the checksums and the rename run in a background thread while training
goes on. The next save, the end of the stage and an exception leaving the loop wait for it. On the CPU the copy and
the write compete with training for the same cores, so saves are synchronous there by default
(``benchmarks/checkpoint_overhead.py`` measures both).
"""

from __future__ import annotations

import json
import logging
import os
import random
import tempfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict
from torch.distributed.checkpoint.state_dict_loader import _load_state_dict_from_keys

from eaglesearch.train import fsdp

FORMAT_VERSION = 3
CHECKPOINT_NAME = "last"
PREVIOUS_NAME = "prev"
MANIFEST = "manifest.json"
STATE_FILE = "state.pt"
_STATE_KEYS = ("step", "scheduler", "rng", "data_state", "losses", "meta")

logger = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: another format version, or written for another model or settings."""


class CheckpointCorrupt(CheckpointError):
    """A damaged checkpoint (unfinished, unreadable, truncated, checksum mismatch, inconsistent): skipped with a
    warning for the previous one or the start of the stage, because nothing the user chose is wrong."""


@dataclass
class Checkpoint:
    """A verified checkpoint folder. ``model`` and ``optimizer`` are read on first access, as full tensors (for
    inspection and tests); :func:`restore_checkpoint` instead loads each rank's part straight into the model."""

    path: Path
    step: int
    """Optimizer steps completed; training continues with 0-based step ``step``."""
    scheduler: dict[str, Any]
    rng: dict[str, Any]
    data_state: tuple[int, int] | None
    losses: list[float]
    meta: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def _full(self) -> dict[str, Any]:
        return _load_state_dict_from_keys(checkpoint_id=str(self.path))

    @property
    def model(self) -> dict[str, torch.Tensor]:
        """The saved weights (trainable parameters and buffers) as full tensors keyed by parameter name."""
        return self._full["model"]

    @property
    def optimizer(self) -> dict[str, Any]:
        """The saved optimizer state keyed by parameter name (``state`` and ``param_groups``), full tensors."""
        return self._full["optimizer"]

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


# ------------------------------------------------------------------------------------------------- writing

def distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def file_crc(path: Path) -> int:
    """CRC-32 of a file's bytes, read in 16 MiB chunks (zlib releases the GIL while it sums)."""
    crc = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(16 << 20):
            crc = zlib.crc32(chunk, crc)
    return crc


def save_atomic(path: Path, payload: Mapping[str, Any], keep_previous: Path | None = None) -> None:
    """``torch.save`` to a temp file beside ``path``, fsync, then rename: readers see the old file or the new one
    (a stage's ``done.pt``). With ``keep_previous`` the file being replaced is first renamed there."""
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


# ------------------------------------------------------------------------------------------------- reading

def verify(path: Path) -> dict[str, Any]:
    """Check the folder against its manifest (every file present, its size and CRC-32); returns the manifest.
    Raises :class:`CheckpointCorrupt` naming the folder and the file, :class:`CheckpointError` for another format."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointCorrupt(f"checkpoint {path} is not an eaglesearch training checkpoint (expected a folder "
                                f"with {MANIFEST})")
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except FileNotFoundError:
        raise CheckpointCorrupt(f"checkpoint {path} is unfinished (no {MANIFEST}: its write was interrupted)") \
            from None
    except (OSError, ValueError) as err:
        raise CheckpointCorrupt(f"checkpoint {path} is unreadable ({MANIFEST}: {err})") from err
    if not isinstance(manifest, dict) or "format_version" not in manifest or "files" not in manifest:
        raise CheckpointCorrupt(f"checkpoint {path} is not an eaglesearch training checkpoint")
    if manifest["format_version"] != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {manifest['format_version']}, this "
                              f"eaglesearch reads version {FORMAT_VERSION}; delete it to start over")
    for name, expected in manifest["files"].items():
        file = path / name
        if not file.is_file():
            raise CheckpointCorrupt(f"checkpoint {path} is damaged ({name} is missing)")
        size = file.stat().st_size
        if size != expected["bytes"]:
            raise CheckpointCorrupt(f"checkpoint {path} is truncated or damaged ({name} has {size} bytes, "
                                    f"{expected['bytes']} were written)")
        if file_crc(file) != expected["crc32"]:
            raise CheckpointCorrupt(f"checkpoint {path} is damaged ({name} does not match the checksum written "
                                    "with it)")
    return manifest


def load_checkpoint(path: Path) -> Checkpoint | None:
    """The checkpoint folder at ``path``; None when there is none. Raises :class:`CheckpointCorrupt` naming it when
    it is unfinished or damaged, :class:`CheckpointError` when it is of another format version."""
    path = Path(path)
    if not path.exists():
        return None
    verify(path)
    try:
        payload = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load fails in many ways on a foreign file
        detail = f"{type(err).__name__}: {err}".splitlines()[0][:200]
        raise CheckpointCorrupt(f"checkpoint {path} is unreadable ({detail})") from err
    if not isinstance(payload, dict) or any(k not in payload for k in _STATE_KEYS):
        raise CheckpointCorrupt(f"checkpoint {path} is not an eaglesearch training checkpoint")
    data_state = payload["data_state"]
    return Checkpoint(path=path, step=int(payload["step"]), scheduler=payload["scheduler"], rng=payload["rng"],
                      data_state=None if data_state is None else (int(data_state[0]), int(data_state[1])),
                      losses=list(payload["losses"]), meta=dict(payload["meta"]))


def _saved_tensors(path: Path) -> dict[str, Any]:
    """What DCP's metadata says was saved under ``model.``: name -> (shape, dtype)."""
    metadata = dcp.FileSystemReader(str(path)).read_metadata().state_dict_metadata
    return {key[len("model."):]: (tuple(meta.size), meta.properties.dtype) for key, meta in metadata.items()
            if key.startswith("model.") and hasattr(meta, "size")}


def restore_checkpoint(
    checkpoint: Checkpoint,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    process_group: dist.ProcessGroup | None = None,
) -> None:
    """Load weights, optimizer, scheduler and RNG states into freshly built objects (every rank calls this; each
    reads the part it holds); the data position and the losses are the caller's. Raises :class:`CheckpointError`
    when the model does not match the checkpoint."""
    sharded = fsdp.is_sharded(model)
    if bool(checkpoint.meta.get("sharded", False)) != sharded:
        written, here = (("an FSDP", "without FSDP") if not sharded else ("a non-FSDP", "with FSDP"))
        raise checkpoint.fail(f"was written by {written} run and this one trains {here} (resources.parallelism)")
    saved = _saved_tensors(checkpoint.path)
    model_state, optimizer_state = get_state_dict(model, optimizer)
    expected = trained_state(model, model_state)
    missing = sorted(set(expected) - set(saved))
    unexpected = sorted(set(saved) - set(expected))
    if missing or unexpected:
        parts = [f"{label} {', '.join(names[:3])}{' …' if len(names) > 3 else ''}"
                 for label, names in (("lacks", missing), ("has extra", unexpected)) if names]
        raise checkpoint.fail(f"was written for another model (it {'; '.join(parts)})")
    for name, target in expected.items():
        shape, dtype = saved[name]
        if shape != tuple(target.shape) or dtype != target.dtype:  # a DTensor reports its global shape
            raise checkpoint.fail(f"was written for another model ({name}: {shape} {dtype} there, "
                                  f"{tuple(target.shape)} {target.dtype} here)")
    state = {"model": expected, "optimizer": optimizer_state}
    no_dist = not distributed()
    try:
        dcp.load(state, checkpoint_id=str(checkpoint.path), process_group=None if no_dist else process_group,
                 no_dist=no_dist)
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"],
                       options=StateDictOptions(strict=False))  # frozen parameters stay as built
        scheduler.load_state_dict(checkpoint.scheduler)
    except (ValueError, KeyError, RuntimeError) as err:
        raise checkpoint.fail(f"has optimizer state for another model ({str(err).splitlines()[0][:200]})") from err
    set_rng_state(checkpoint.rng)


def load_latest(path: Path, check: Callable[[Checkpoint], None] | None = None) -> Checkpoint | None:
    """The newest usable checkpoint: ``path`` (``last``), else ``prev`` beside it, else None (start over).

    A damaged or unfinished folder is skipped with a warning that names it and says where training resumes
    instead. ``check`` sees each loaded candidate: it raises :class:`CheckpointCorrupt` for damage only the caller
    can see (steps that do not match the losses) and :class:`CheckpointError` for a sound checkpoint that must not
    be used (another model or other settings), which stops the caller: silently starting over would hide the
    user's mistake.
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
