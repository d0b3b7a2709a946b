"""Run a trained model over benchmarks and summarize: predictions → per-item values → scores with intervals.

Each benchmark is scored in its mode: ``generate`` (batched greedy decoding with a KV cache, the decoded text is
the prediction) or ``likelihood`` (the answer candidate with the highest log-probability is the prediction, so
yes/no and multiple-choice answers never fail to parse). Every prediction is kept as a :class:`PredictionRecord`;
:func:`summarize` computes every number from those records alone, which is exactly what ``eaglesearch rescore``
does later without the model.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from eaglesearch.data import Sample, collate_prompts, encode_prompt, load_image
from eaglesearch.data.aspect import SQUARE, ImagePolicy, apply_policy, images_in, stack_images
from eaglesearch.data.dataset import EvalBatchItem
from eaglesearch.evaluate.benchmarks import open_image
from eaglesearch.evaluate.groups import AggregateGroup, combine, mean_group
from eaglesearch.evaluate.items import BenchmarkItem, ScoredItem
from eaglesearch.evaluate.likelihood import candidate_logprobs, pick
from eaglesearch.evaluate.metrics import Metric, get_metric
from eaglesearch.evaluate.predictions import PredictionRecord, by_benchmark
from eaglesearch.evaluate.uncertainty import Interval, aggregate_interval, bootstrap_interval
from eaglesearch.model import EagleModel
from eaglesearch.spec import EvalSpec

EMBEDDED = Path("<embedded image>")


@dataclass(frozen=True)
class Benchmark:
    name: str
    metric: str
    scoring: str  # "generate" | "likelihood"
    items: Sequence[BenchmarkItem]
    candidates: Mapping[str, tuple[str, ...]]  # item id → answer candidates (likelihood scoring)


@dataclass(frozen=True)
class Summary:
    values: dict[str, dict[str, float]]  # benchmark → every aggregate number of its metric
    primary: dict[str, float]
    intervals: dict[str, Interval]
    objective: float
    objective_interval: Interval


def item_image(item: BenchmarkItem, size: int, policy: ImagePolicy = SQUARE) -> torch.Tensor:
    """The item's image under the trial's image policy: (3,S,S), or (T,3,S,S) tiles under ``dynamic``."""
    if isinstance(item.image, Path):
        return load_image(item.image, size, policy)
    if item.image is None:
        raise ValueError(f"{item.benchmark} item {item.id!r} has no image; every benchmark item needs one")
    return apply_policy(open_image(item.image), policy, size)


def _prompt_ids(tokenizer, item: BenchmarkItem, visual_tokens: int, template: str) -> list[int]:
    image = item.image if isinstance(item.image, Path) else EMBEDDED
    sample = Sample(id=item.id, image=image, turns=(("user", item.prompt),))
    return encode_prompt(tokenizer, sample, visual_tokens, template=template)


def _answer_ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (as in training); nothing on CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()


@torch.inference_mode()
def predict(
    model: EagleModel, tokenizer, benchmark: Benchmark, *, image_size: int, batch_size: int, max_new_tokens: int,
    template: str = "chatml", policy: ImagePolicy = SQUARE,
) -> list[PredictionRecord]:
    """The model's prediction for every item of ``benchmark``, scored by its metric; images go through the trial's
    image ``policy`` as in training (a prompt gets ``num_visual_tokens`` image tokens per image of its stack)."""
    model.eval()
    device = next(model.parameters()).device
    metric = get_metric(benchmark.metric)
    records: list[PredictionRecord] = []
    items = list(benchmark.items)
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        pictures = [item_image(item, image_size, policy) for item in chunk]
        prompts = [_prompt_ids(tokenizer, item, images_in(picture) * model.num_visual_tokens, template)
                   for item, picture in zip(chunk, pictures, strict=True)]
        images = stack_images(pictures).to(device)
        if benchmark.scoring == "likelihood":
            options = [benchmark.candidates[item.id] for item in chunk]
            with _autocast(device):
                scores = candidate_logprobs(model, images, prompts,
                                            [[_answer_ids(tokenizer, c) for c in opts] for opts in options],
                                            tokenizer.pad_token_id)
            texts = [opts[pick(s)] for opts, s in zip(options, scores, strict=True)]
        else:
            batch = collate_prompts([EvalBatchItem(i.id, img, tuple(p), "") for i, img, p in
                                     zip(chunk, pictures, prompts, strict=True)], tokenizer.pad_token_id)
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
) -> tuple[list[PredictionRecord], float]:
    start = time.perf_counter()
    records: list[PredictionRecord] = []
    for benchmark in benchmarks:
        records += predict(model, tokenizer, benchmark, image_size=image_size, batch_size=batch_size,
                           max_new_tokens=max_new_tokens, template=template, policy=policy)
    return records, time.perf_counter() - start


def objective_group(spec: EvalSpec, names: Sequence[str]) -> AggregateGroup:
    if spec.objective == "mean":
        members = list(spec.benchmarks) if spec.benchmarks is not None else sorted(names)
        return mean_group(members, name="mean")
    agg = spec.aggregates[spec.objective]
    return AggregateGroup(name=spec.objective, members=agg.members, scale=dict(agg.scale), percent=agg.percent)


def summarize(records: Sequence[PredictionRecord], spec: EvalSpec, *, rescore: bool = False, seed: int = 0) -> Summary:
    """Every benchmark number, its interval, and the objective with its interval, from prediction records alone.

    With ``rescore``, per-item values are recomputed from the predictions (as ``eaglesearch rescore`` does)
    instead of taken from the records.
    """
    grouped = by_benchmark(records)
    metrics: dict[str, Metric] = {}
    scored: dict[str, list[ScoredItem]] = {}
    for name, recs in grouped.items():
        metric = get_metric(recs[0].metric)
        metrics[name] = metric
        scored[name] = [metric.score_item(r.scored.prediction, r.scored.item) if rescore else r.scored for r in recs]
    values = {name: metrics[name].aggregate(items) for name, items in scored.items()}
    primary = {name: v[metrics[name].primary] for name, v in values.items()}
    intervals = {
        name: bootstrap_interval(items, metrics[name], n_resamples=spec.bootstrap_resamples,
                                 confidence=spec.confidence, seed=seed)
        for name, items in scored.items()
    }
    group = objective_group(spec, list(grouped))
    missing = [m for m in group.members if m not in scored]
    if missing:
        raise KeyError(f"the objective '{group.name}' needs {', '.join(missing)}, which were not evaluated "
                       f"(evaluated: {', '.join(sorted(scored))})")
    members = {m: scored[m] for m in group.members}
    objective = combine(group, primary)
    interval = aggregate_interval(members, {m: metrics[m] for m in group.members}, group,
                                  n_resamples=spec.bootstrap_resamples, confidence=spec.confidence, seed=seed)
    return Summary(values=values, primary=primary, intervals=intervals, objective=objective,
                   objective_interval=interval)


def summary_metrics(summary: Summary) -> dict[str, float]:
    """The curated MLflow metrics of an evaluation: each benchmark's primary score and interval, the objective's."""
    out: dict[str, float] = {"objective": summary.objective, "objective_low": summary.objective_interval.low,
                             "objective_high": summary.objective_interval.high}
    for name, value in summary.primary.items():
        out[f"score/{name}"] = value
        out[f"score_low/{name}"] = summary.intervals[name].low
        out[f"score_high/{name}"] = summary.intervals[name].high
    return out
