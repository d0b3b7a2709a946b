"""Feature maps of a frozen expert, computed once per image.

A fully frozen expert (no trainable blocks) in eval mode is a fixed function of its input image, so over many
epochs it recomputes the same map for every image again and again; at tiny scale that is most of a stage's time
(SAM and Pix2Struct at 256 px cost more than the projector and LM together). A :class:`FeatureCache` attached to
an expert (:meth:`VisionExpert.attach_feature_cache`) keeps each image's map, keyed by the image's bytes, and
answers repeats from memory.

It is only consulted while the expert is fully frozen, and it forgets everything as soon as any parameter or
buffer of the expert changes (each tensor's in-place version counter and storage are part of the cache's state),
so a stage that trains the expert, or weights loaded into it, can never be answered with stale maps. A cached map
is exactly the tensor the expert produced for that image (in the batch it first appeared in), so training with
the cache reproduces training without it up to the batch-composition rounding of the expert's kernels.
"""

from __future__ import annotations

import hashlib
import os
import weakref
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

_last_batch: tuple[weakref.ref[Tensor], int, list[bytes]] | None = None


def image_keys(images: Tensor) -> list[bytes]:
    """:func:`image_key` of every image of a batch. The experts of one model see the same batch tensor in turn, so
    the digests of the last batch are remembered for as long as that very tensor lives, unmodified."""
    global _last_batch
    version = -1 if images.is_inference() else images._version  # inference tensors keep no version counter
    if _last_batch is not None:
        ref, seen, keys = _last_batch
        if ref() is images and version == seen:
            return keys
    keys = [image_key(image) for image in images]
    _last_batch = (weakref.ref(images), version, keys)
    return keys


def image_key(image: Tensor) -> bytes:
    """A digest of one image's shape, dtype and bytes."""
    data = image.detach().contiguous().cpu()
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{tuple(data.shape)}|{data.dtype}".encode())
    digest.update(data.numpy().tobytes())
    return digest.digest()


def weights_state(module: nn.Module) -> tuple[tuple[int, int], ...]:
    """Changes whenever a parameter or buffer of ``module`` is modified in place or replaced."""
    tensors = [*module.parameters(), *module.buffers()]
    return tuple((t.data_ptr(), t._version) for t in tensors)


def weights_digest(module: nn.Module) -> str:
    """A digest of every parameter's and buffer's name and bytes: which weights a set of maps belongs to."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(module.state_dict(keep_vars=False).items()):
        data = tensor.detach().contiguous().cpu()
        digest.update(f"{name}|{tuple(data.shape)}|{data.dtype}".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes() if data.numel() else b"")  # 0-dim too
    return digest.hexdigest()


class FeatureCache:
    """Per-image feature maps, up to ``max_bytes`` (images beyond that are computed every time)."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError(f"a feature cache needs a positive size; got max_bytes={max_bytes}")
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._maps: dict[bytes, Tensor] = {}
        self._state: tuple[tuple[int, int], ...] | None = None
        self._unsaved = False  # maps computed since the last load or save

    def __len__(self) -> int:
        return len(self._maps)

    def clear(self) -> None:
        self._maps.clear()
        self.bytes = 0
        self._state = None
        self._unsaved = False

    def load(self, folder: Path, owner: nn.Module) -> int:
        """Add the maps saved in ``folder`` for ``owner``'s current weights (see :meth:`save`); how many were added."""
        path = folder / f"{weights_digest(owner)}.pt"
        if not path.is_file():
            return 0
        try:
            saved: dict[bytes, Tensor] = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError):  # a file cut short by a crash: ignore it, it is rewritten later
            return 0
        device = next((t.device for t in owner.parameters()), torch.device("cpu"))
        state = weights_state(owner)
        if state != self._state:
            self.clear()
            self._state = state
        added = 0
        for key, value in saved.items():
            size = value.numel() * value.element_size()
            if key in self._maps or self.bytes + size > self.max_bytes:
                continue
            self._maps[key] = value.to(device)
            self.bytes += size
            added += 1
        return added

    def save(self, folder: Path, owner: nn.Module) -> Path | None:
        """Write the maps, under a name given by ``owner``'s weights, when they are the maps of those weights
        (nothing when the weights changed since, or no map was added since the last load or save: the file already
        holds them). Atomic: a reader never sees half a file."""
        if not self._maps or not self._unsaved or self._state != weights_state(owner):
            return None
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{weights_digest(owner)}.pt"
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
        torch.save({key: value.cpu() for key, value in self._maps.items()}, partial)
        os.replace(partial, path)
        self._unsaved = False
        return path

    def maps(self, owner: nn.Module, images: Tensor, compute: Callable[[Tensor], Tensor]) -> Tensor:
        """``compute(images)`` for a batch, with each image's map taken from the cache when it is there.

        ``owner`` is the module whose weights the maps depend on; a change to them empties the cache first.
        """
        state = weights_state(owner)
        if state != self._state:
            self.clear()
            self._state = state
        keys = image_keys(images)
        todo: dict[bytes, int] = {}
        for i, key in enumerate(keys):
            if key not in self._maps and key not in todo:
                todo[key] = i
        fresh: dict[bytes, Tensor] = {}
        if todo:
            with torch.no_grad():
                computed = compute(images[list(todo.values())])
            fresh = dict(zip(todo, computed, strict=True))
            for key, value in fresh.items():
                size = value.numel() * value.element_size()
                if self.bytes + size <= self.max_bytes:
                    with torch.inference_mode(False):  # a normal tensor, usable later with autograd on
                        self._maps[key] = value.clone()
                    self.bytes += size
                    self._unsaved = True
        self.misses += len(todo)
        self.hits += len(keys) - len(todo)
        return torch.stack([fresh[key] if key in fresh else self._maps[key] for key in keys])
