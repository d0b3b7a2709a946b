"""The streaming loader: endless, resumable training batches, decoded in worker processes, one shard per rank.

:class:`BatchStream` fixes *which* samples form each batch (the order a ``DataLoader(shuffle=True)`` draws with a
``torch.Generator`` seeded ``seed + epoch``), and a ``torch.utils.data.DataLoader`` decides only *where* they are
read: ``num_workers`` processes decode and collate batches ahead of the step (``prefetch_factor`` each, pinned
memory for a CUDA model), or the main process when ``num_workers`` is 0. The order does not depend on the workers,
so the stream's ``position`` (batches consumed, not batches prefetched) resumes a killed run at the same sample,
bit-identically, whatever ``num_workers``.

Per-rank shards (data-parallel training): with ``shard=(rank, world_size)`` each rank reads and decodes only its
contiguous rows ``rank*k:(rank+1)*k`` of every global batch (``k = rows / world_size``) instead of collating the
whole global batch and slicing it. Such a batch carries a :class:`RowShard` under :data:`SHARD`, which tells the
trainer (:mod:`eaglesearch.train.distributed`) that it is already this rank's share.

Problem samples: a dataset item may list under :data:`~eaglesearch.data.dataset.PROBLEMS` the samples it was
substituted for (an image that failed to decode, skipped per ``data.on_problem``); the stream passes them to the
dataset's ``note_problem`` in the main process, where the counts are kept. A :class:`DataProblem` raised in a
worker (the policy says ``error``) is re-raised here as itself, naming the source and the sample, and the workers
are shut down: a bad file never hangs the trial or kills the pool silently.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from eaglesearch.data.dataset import PROBLEMS
from eaglesearch.data.llava import DataProblem

Position = tuple[int, int]
SHARD = "shard"
"""Key of a batch that holds one rank's rows of the global batch; its value is a :class:`RowShard`."""

MAX_DEFAULT_WORKERS = 8


def num_workers_for(setting: int | None, threads: int, on_gpu: bool) -> int:
    """Loader workers: ``data.num_workers`` when set, else a default from the CPU threads the trial has.

    On a GPU every CPU thread but the one driving the GPU can decode (at most :data:`MAX_DEFAULT_WORKERS`). On a
    CPU the trial's threads already run the model: decoding in the main process costs the same core-seconds
    without a fork, so 0.
    """
    if setting is not None:
        return setting
    return max(1, min(MAX_DEFAULT_WORKERS, threads - 1)) if on_gpu else 0


def stream_settings(num_workers: int | None, world: Any, device: torch.device) -> dict[str, Any]:
    """How a training stage's stream reads: ``world``'s rank's rows only (anything with ``rank`` and
    ``world_size``, or None for one process), ``num_workers`` decoding processes (:func:`num_workers_for`, from the
    torch threads this trial was pinned to), pinned memory on CUDA."""
    on_gpu = device.type == "cuda"
    return {"shard": (world.rank, world.world_size) if world is not None else None,
            "num_workers": num_workers_for(num_workers, torch.get_num_threads(), on_gpu), "pin_memory": on_gpu}


def worker_context() -> str | None:
    """``fork`` wherever it exists, whatever the process's default (``spawn`` in a ``torch.multiprocessing.spawn``
    rank, ``forkserver`` from Python 3.14): forked workers share the index's arrays instead of unpickling a copy
    each, and need no picklable collate function."""
    return "fork" if "fork" in multiprocessing.get_all_start_methods() else None


@dataclass(frozen=True)
class RowShard:
    """A batch that is rank ``rank``'s contiguous rows of a global batch of ``global_rows`` rows."""

    rank: int
    world_size: int
    global_rows: int


@dataclass
class Loaded:
    """What a fetch hands back: the collated batch, or the error that stopped it; the problems substituted for."""

    batch: Any
    problems: list[DataProblem]
    error: DataProblem | None = None

    def pin_memory(self) -> Loaded:  # called by the DataLoader's pin-memory thread
        if isinstance(self.batch, dict):
            self.batch = {k: v.pin_memory() if isinstance(v, torch.Tensor) else v for k, v in self.batch.items()}
        elif isinstance(self.batch, torch.Tensor):
            self.batch = self.batch.pin_memory()
        return self


class BatchFetcher(Dataset):
    """Reads one batch (a list of dataset indices) and collates it; what each worker runs (or the main process)."""

    def __init__(self, dataset: Dataset, collate: Callable) -> None:
        self.dataset, self.collate = dataset, collate

    def __getitem__(self, rows: Sequence[int]) -> Loaded:  # type: ignore[override]
        items, problems = [], []
        for index in rows:
            try:
                item = self.dataset[index]
            except DataProblem as error:  # crosses the process boundary as itself (not as a worker traceback)
                return Loaded(None, problems, error)
            if isinstance(item, dict) and PROBLEMS in item:
                item = dict(item)
                problems += item.pop(PROBLEMS)
            items.append(item)
        return Loaded(self.collate(items), problems)


def _unwrap(loaded: Loaded) -> Loaded:  # DataLoader collate_fn for batch_size=None: the fetch is already a batch
    return loaded


class Order:
    """Which dataset indices form each batch: the global batches of an epoch, and the rows a shard reads of them.

    Kept apart from :class:`BatchStream` so the DataLoader iterator that walks it holds no reference back to the
    stream: dropping the stream then stops its workers at once (no reference cycle to wait for).
    """

    def __init__(self, size: int, batch_size: int, seed: int, shard: tuple[int, int] | None) -> None:
        self.size, self.batch_size, self.seed, self.shard = size, batch_size, seed, shard
        self.drop_last = size >= batch_size
        self._cached: tuple[int, list[list[int]]] | None = None

    def epoch(self, epoch: int) -> list[list[int]]:
        """The global batches of ``epoch`` (dataset indices), exactly as a shuffling DataLoader would draw them."""
        if self._cached is None or self._cached[0] != epoch:
            # Shuffle indices, not samples, with the very DataLoader the order was defined by (its iterator draws a
            # worker seed from the generator before the sampler does, so a bare RandomSampler would differ).
            generator = torch.Generator().manual_seed(self.seed + epoch)
            indices = DataLoader(range(self.size), batch_size=self.batch_size, shuffle=True,  # type: ignore[arg-type]
                                 generator=generator, collate_fn=list, drop_last=self.drop_last)
            self._cached = (epoch, list(indices))
        return self._cached[1]

    def rows(self, batch: list[int]) -> list[int]:
        """The rows of the global ``batch`` this stream reads: its rank's contiguous share, or all of them."""
        if self.shard is None:
            return batch
        rank, world = self.shard
        k = len(batch) // world
        return batch[rank * k:(rank + 1) * k]

    def walk(self, start: Position) -> Iterator[list[int]]:
        """The rows read for every batch from ``start`` = ``(epoch, offset)`` on, forever."""
        epoch, offset = start
        while True:
            for batch in self.epoch(epoch)[offset:]:
                yield self.rows(batch)
            epoch, offset = epoch + 1, 0


class _Walk:
    """The sampler of one DataLoader iterator (an iterable that restarts at ``start``)."""

    def __init__(self, order: Order, start: Position) -> None:
        self.order, self.start = order, start

    def __iter__(self) -> Iterator[list[int]]:
        return self.order.walk(self.start)


class BatchStream:
    """Endless shuffled batches with a resumable position, read by ``num_workers`` loader processes.

    Epoch ``e`` visits the dataset in the order a ``DataLoader(shuffle=True)`` draws from a ``torch.Generator``
    seeded ``seed + e`` (the last partial batch is dropped unless the dataset is smaller than one batch).
    ``position`` is ``(epoch, batches consumed in that epoch)`` of the next batch; a stream started (or
    :meth:`seek`-ed) there yields exactly the batches an uninterrupted stream would, without loading the skipped ones.
    With ``shard=(rank, world_size)`` it yields only the rank's rows of each batch (see the module docs).
    """

    def __init__(self, dataset: Dataset, batch_size: int, collate: Callable, seed: int,
                 start: Position = (0, 0), *, shard: tuple[int, int] | None = None, num_workers: int = 0,
                 pin_memory: bool = False, prefetch_factor: int = 2) -> None:
        size = len(dataset)  # type: ignore[arg-type]
        if size == 0:
            raise ValueError("the training dataset is empty; check the training split")
        if num_workers < 0:
            raise ValueError(f"num_workers={num_workers}: use 0 (read in the main process) or more")
        self.dataset, self.batch_size, self.collate, self.seed = dataset, batch_size, collate, seed
        self.num_workers, self.pin_memory, self.prefetch_factor = num_workers, pin_memory, prefetch_factor
        self.shard = shard if shard is not None and shard[1] > 1 else None
        self.batches_per_epoch = size // batch_size if size >= batch_size else 1
        self.global_rows = min(batch_size, size)  # every batch's rows: whole batches, or the one partial batch
        if self.shard is not None and self.global_rows % self.shard[1]:
            raise ValueError(f"the global batch of {self.global_rows} rows does not divide by the "
                             f"{self.shard[1]} workers; set train.batch_size to a multiple of the worker count")
        self._fetch = BatchFetcher(dataset, collate)
        self.order = Order(size, batch_size, seed, self.shard)
        self._loader: Iterator[Loaded] | None = None
        self.seek(start)

    @property
    def position(self) -> Position:
        if self._offset >= self.batches_per_epoch:
            return (self._epoch + 1, 0)
        return (self._epoch, self._offset)

    def seek(self, position: Position) -> None:
        epoch, offset = (int(v) for v in position)
        if epoch < 0 or not 0 <= offset <= self.batches_per_epoch:
            raise ValueError(f"data position {position} is outside the stream (epochs have "
                             f"{self.batches_per_epoch} batches)")
        self._epoch, self._offset = epoch, offset
        self.close()

    def close(self) -> None:
        """Stop the worker processes (the next batch starts new ones at the current position)."""
        self._loader = None  # the DataLoader iterator shuts its workers down when it is dropped

    def epoch_order(self, epoch: int) -> list[list[int]]:
        """The global batches of ``epoch`` (dataset indices)."""
        return self.order.epoch(epoch)

    def _start(self) -> Iterator[Loaded]:
        if self.num_workers == 0:
            return (self._fetch[rows] for rows in self.order.walk(self.position))
        # Workers get their seeds from this generator, never from the global RNG (which would shift the model's).
        walk = _Walk(self.order, self.position)
        loader = DataLoader(self._fetch, batch_size=None, sampler=walk, collate_fn=_unwrap,  # type: ignore[arg-type]
                            num_workers=self.num_workers, pin_memory=self.pin_memory,
                            prefetch_factor=self.prefetch_factor, generator=torch.Generator().manual_seed(self.seed),
                            multiprocessing_context=worker_context())
        return iter(loader)

    def __iter__(self) -> BatchStream:
        return self

    def __next__(self) -> Any:
        if self._offset >= self.batches_per_epoch:
            self._epoch, self._offset = self._epoch + 1, 0
        if self._loader is None:
            self._loader = self._start()
        loaded = next(self._loader)
        self._offset += 1
        base = self.dataset.dataset if isinstance(self.dataset, Subset) else self.dataset  # a mixture's draw
        note = getattr(base, "note_problem", None)
        for problem in loaded.problems:
            if note is not None:
                note(problem)
        if loaded.error is not None:
            self.close()
            raise loaded.error
        batch = loaded.batch
        if self.shard is not None and isinstance(batch, dict):
            batch[SHARD] = RowShard(self.shard[0], self.shard[1], self.global_rows)
        return batch


def batches(dataset: Dataset, batch_size: int, collate: Callable, seed: int, start: Position = (0, 0),
            **loader: Any) -> BatchStream:
    """Endless shuffled batches from ``start`` = ``(epoch, offset)``; see :class:`BatchStream` (``loader``:
    ``shard``, ``num_workers``, ``pin_memory``, ``prefetch_factor``)."""
    return BatchStream(dataset, batch_size, collate, seed, start, **loader)
