"""Run a trained model over benchmarks: predictions, each kept as a record that ``evaluate/summary.py`` turns into
per-item values and scores with intervals.

Each benchmark is scored in its mode: ``generate`` (batched greedy decoding with a KV cache, the decoded text is
the prediction) or ``likelihood`` (the answer candidate with the highest log-probability is the prediction, so
yes/no and multiple-choice answers never fail to parse). Every prediction is kept as a :class:`PredictionRecord`;
:func:`~eaglesearch.evaluate.summary.summarize` computes every number from those records alone, which is exactly
what ``eaglesearch rescore`` does later without the model.

Images stream: a benchmark is cut into batches of ``batch_size`` items in order, and each batch's images are
decoded when it is about to run, by ``num_workers`` loader processes (or this one), never the whole benchmark at
once. With ``shard=(rank, world_size)`` (a data-parallel trial) rank ``r`` runs batches ``r, r+W, …`` of every
benchmark and rank 0 gathers the records back into item order: the batches are the very ones one process runs,
so predictions and scores are identical to a 1-process evaluation, in about 1/W of the time.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset

from eaglesearch.data import Sample, collate_prompts, encode_prompt, load_image
from eaglesearch.data.aspect import SQUARE, ImagePolicy, apply_policy, images_in, stack_images
from eaglesearch.data.dataset import EvalBatchItem
from eaglesearch.data.loader import worker_context
from eaglesearch.evaluate.benchmarks import open_image
from eaglesearch.evaluate.items import BenchmarkItem
from eaglesearch.evaluate.likelihood import candidate_logprobs, pick
from eaglesearch.evaluate.metrics import get_metric
from eaglesearch.evaluate.predictions import PredictionRecord
from eaglesearch.model import EagleModel

EMBEDDED = Path("<embedded image>")


@dataclass(frozen=True)
class Benchmark:
    name: str
    metric: str
    scoring: str  # "generate" | "likelihood"
    items: Sequence[BenchmarkItem]
    candidates: Mapping[str, tuple[str, ...]]  # item id → answer candidates (likelihood scoring)


def item_image(item: BenchmarkItem, size: int, policy: ImagePolicy = SQUARE) -> torch.Tensor:
    """The item's image under the trial's image policy: (3,S,S), or (T,3,S,S) tiles under ``dynamic``."""
    if isinstance(item.image, Path):
        return load_image(item.image, size, policy)
    if item.image is None:
        raise ValueError(f"{item.benchmark} item {item.id!r} has no image; every benchmark item needs one")
    return apply_policy(open_image(item.image), policy, size)


class ImageBatches(Dataset):
    """The stacked images of one batch of benchmark items (a list of item positions), decoded where it is read,
    with how many square images each item's picture became under the image policy."""

    def __init__(self, items: Sequence[BenchmarkItem], image_size: int, policy: ImagePolicy = SQUARE) -> None:
        self.items, self.image_size, self.policy = items, image_size, policy

    def __getitem__(self, rows: Sequence[int]) -> tuple[torch.Tensor, list[int]]:  # type: ignore[override]
        pictures = [item_image(self.items[i], self.image_size, self.policy) for i in rows]
        return stack_images(pictures), [images_in(p) for p in pictures]


def _same(batch: tuple[torch.Tensor, list[int]]) -> tuple[torch.Tensor, list[int]]:  # collate_fn for
    return batch  # batch_size=None: the fetch is the batch


def stream_images(items: Sequence[BenchmarkItem], chunks: Sequence[Sequence[int]], image_size: int,
                  policy: ImagePolicy = SQUARE, num_workers: int = 0,
                  pin_memory: bool = False) -> Iterator[tuple[torch.Tensor, list[int]]]:
    """The images of each chunk of ``items`` (lists of positions), in order, decoded by ``num_workers`` processes,
    with each item's image count (1, or its tiles under ``dynamic``)."""
    source = ImageBatches(items, image_size, policy)
    if num_workers == 0:
        return (source[rows] for rows in chunks)
    loader = DataLoader(source, batch_size=None, sampler=list(chunks), collate_fn=_same,  # type: ignore[arg-type]
                        num_workers=min(num_workers, len(chunks)), pin_memory=pin_memory,
                        generator=torch.Generator().manual_seed(0),  # leaves the global RNG alone
                        multiprocessing_context=worker_context())
    return iter(loader)


def _prompt_ids(tokenizer, item: BenchmarkItem, visual_tokens: int, template: str) -> list[int]:
    image = item.image if isinstance(item.image, Path) else EMBEDDED
    sample = Sample(id=item.id, image=image, turns=(("user", item.prompt),))
    return encode_prompt(tokenizer, sample, visual_tokens, template=template)


def _answer_ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (as in training); nothing on CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()


def chunks_of(count: int, batch_size: int, shard: tuple[int, int] | None = None) -> list[list[int]]:
    """Item positions of each evaluation batch (``batch_size`` consecutive items); with ``shard=(rank, world)``
    only the batches ``rank, rank+world, …`` that rank runs."""
    chunks = [list(range(lo, min(lo + batch_size, count))) for lo in range(0, count, batch_size)]
    return chunks if shard is None else chunks[shard[0]::shard[1]]


@torch.inference_mode()
def predict(
    model: EagleModel, tokenizer, benchmark: Benchmark, *, image_size: int, batch_size: int, max_new_tokens: int,
    template: str = "chatml", policy: ImagePolicy = SQUARE, shard: tuple[int, int] | None = None,
    num_workers: int = 0,
) -> list[PredictionRecord]:
    """The model's prediction for every item of ``benchmark`` (with ``shard``, for the items of this rank's
    batches, in item order), scored by its metric; images go through the trial's image ``policy`` as in training (a
    prompt gets ``num_visual_tokens`` image tokens per image of its stack)."""
    model.eval()
    device = next(model.parameters()).device
    metric = get_metric(benchmark.metric)
    records: list[PredictionRecord] = []
    items = list(benchmark.items)
    chunks = chunks_of(len(items), batch_size, shard)
    loaded = stream_images(items, chunks, image_size, policy, num_workers, pin_memory=device.type == "cuda")
    for rows, (images, counts) in zip(chunks, loaded, strict=True):
        chunk = [items[i] for i in rows]
        prompts = [_prompt_ids(tokenizer, item, count * model.num_visual_tokens, template)
                   for item, count in zip(chunk, counts, strict=True)]
        images = images.to(device, non_blocking=True)
        if benchmark.scoring == "likelihood":
            options = [benchmark.candidates[item.id] for item in chunk]
            with _autocast(device):
                scores = candidate_logprobs(model, images, prompts,
                                            [[_answer_ids(tokenizer, c) for c in opts] for opts in options],
                                            tokenizer.pad_token_id)
            texts = [opts[pick(s)] for opts, s in zip(options, scores, strict=True)]
        else:
            batch = collate_prompts([EvalBatchItem(i.id, img, tuple(p), "") for i, img, p in
                                     zip(chunk, images, prompts, strict=True)], tokenizer.pad_token_id)
            with _autocast(device):
                out = model.generate_greedy(batch["images"].to(device), batch["input_ids"].to(device),
                                            batch["attention_mask"].to(device), max_new_tokens=max_new_tokens,
                                            eos_token_id=tokenizer.eos_token_id)
            texts = [tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in out]
        for item, text in zip(chunk, texts, strict=True):
            records.append(PredictionRecord(metric=metric.name, scoring=benchmark.scoring,
                                            scored=metric.score_item(text, item)))
    return records


def evaluate_benchmarks(
    model: EagleModel, tokenizer, benchmarks: Sequence[Benchmark], *, image_size: int, batch_size: int,
    max_new_tokens: int, template: str = "chatml", policy: ImagePolicy = SQUARE,
    shard: tuple[int, int] | None = None, num_workers: int = 0,
) -> tuple[list[PredictionRecord], float]:
    """Every benchmark's prediction records, in benchmark and item order, and the seconds it took.

    With ``shard=(rank, world_size)`` every rank of the initialized process group calls this: each predicts its
    batches of every benchmark and rank 0 gathers them (``gather_object``); rank 0 returns all records, the other
    ranks none.
    """
    start = time.perf_counter()
    sharded = shard is not None and shard[1] > 1
    records: list[PredictionRecord] = []
    parts: list[list[PredictionRecord]] = []
    for benchmark in benchmarks:
        mine = predict(model, tokenizer, benchmark, image_size=image_size, batch_size=batch_size,
                       max_new_tokens=max_new_tokens, template=template, policy=policy,
                       shard=shard if sharded else None, num_workers=num_workers)
        parts.append(mine)
    if not sharded:
        return [r for part in parts for r in part], time.perf_counter() - start
    assert shard is not None
    rank, world = shard
    gathered: list[list[list[PredictionRecord]]] | None = [[] for _ in range(world)] if rank == 0 else None
    dist.gather_object(parts, gathered, dst=0)
    if gathered is None:
        return [], time.perf_counter() - start
    for b, benchmark in enumerate(benchmarks):
        records += _interleave([ranks[b] for ranks in gathered], len(benchmark.items), batch_size)
    return records, time.perf_counter() - start


def _interleave(per_rank: list[list[PredictionRecord]], count: int, batch_size: int) -> list[PredictionRecord]:
    """One benchmark's records back in item order from each rank's records of its batches (``chunks_of``)."""
    world = len(per_rank)
    out: list[PredictionRecord] = []
    taken = [0] * world
    for c, rows in enumerate(chunks_of(count, batch_size)):
        rank = c % world
        out += per_rank[rank][taken[rank]:taken[rank] + len(rows)]
        taken[rank] += len(rows)
    if taken != [len(r) for r in per_rank]:
        raise RuntimeError(f"ranks returned {[len(r) for r in per_rank]} records for {count} items; expected "
                           f"{taken}: every rank must evaluate the same benchmarks with the same batch size")
    return out
