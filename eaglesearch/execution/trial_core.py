"""Train and evaluate one Eagle model for a TrialSpec: data → tokenizer → model → SFT → benchmarks.

Pure computation: no tracking, no Ray. The worker (``execution/worker.py``) wraps it with MLflow records.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from eaglesearch.data import (
    Sample,
    TrainDataset,
    collate_train,
    read_llava_json,
    read_training_samples,
    training_corpus,
    write_synthetic,
)
from eaglesearch.data.policy import DataReport
from eaglesearch.evaluate.benchmarks import BENCHMARK_KINDS, load_benchmark
from eaglesearch.evaluate.items import BenchmarkItem
from eaglesearch.evaluate.predictions import PredictionRecord
from eaglesearch.evaluate.run import Benchmark, evaluate_benchmarks, summarize, summary_metrics
from eaglesearch.execution.threads import pin_threads
from eaglesearch.execution.workspace import Workspace, file_lock
from eaglesearch.model import build_eagle, load_tokenizer
from eaglesearch.model.cost import measure_cost
from eaglesearch.spec import DataSpec, TrialSpec
from eaglesearch.train import batches, train
from eaglesearch.train.distributed import WorldInfo, broadcast_parameters, prepare_model, training_device

ProgressFn = Callable[[str], None]


@dataclass
class TrialOutcome:
    """Everything a finished trial measured."""

    objective: float
    metrics: dict[str, float]
    loss_history: list[tuple[int, float]] = field(default_factory=list)
    predictions: list[PredictionRecord] = field(default_factory=list)


@dataclass(frozen=True)
class PreparedData:
    train: list[Sample]
    benchmarks: list[Benchmark]
    report: DataReport | None = None  # what the data policy skipped while reading (llava source)


def make_benchmark(name: str, kind: str, items: list[BenchmarkItem], scoring: str | None = None) -> Benchmark:
    """A benchmark scored with its kind's metric, in its kind's mode unless ``scoring`` overrides it."""
    spec = BENCHMARK_KINDS[kind]
    items = [item if item.benchmark == name else replace(item, benchmark=name) for item in items]
    mode = scoring or spec.mode
    candidates = {item.id: spec.candidates(item) for item in items} if mode == "likelihood" else {}
    if mode == "likelihood" and not all(candidates.values()):
        raise ValueError(f"benchmark '{name}' ({kind}) has no answer candidates to rank; use scoring: generate")
    return Benchmark(name=name, metric=spec.metric, scoring=mode, items=items, candidates=candidates)


def _digest(payload: object) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def prepare_data(spec: DataSpec, workspace: Workspace) -> PreparedData:
    """Read the LLaVA-format splits a trial trains and evaluates on, generating the synthetic ones first."""
    report: DataReport | None = None
    if spec.source == "synthetic":
        assert spec.synthetic is not None
        root = workspace.data_dir / f"synthetic-{_digest(spec.synthetic.model_dump(mode='json'))}"
        dataset = write_synthetic(spec.synthetic, root)
        train_samples = read_llava_json(dataset.train_json, dataset.image_folder)
        benchmarks = [make_benchmark(task, "synthetic", load_benchmark("synthetic", path, dataset.image_folder))
                      for task, path in dataset.eval_json.items()]
    else:
        assert spec.train is not None
        train_samples, report = read_training_samples(Path(spec.train.json_path), Path(spec.train.image_folder),
                                                      on_problem=spec.on_problem)
        benchmarks = [
            make_benchmark(name, split.kind, load_benchmark(
                split.kind, Path(split.path), Path(split.image_folder) if split.image_folder else None,
                limit=split.limit, prompt=split.prompt), split.scoring)
            for name, split in spec.eval.items()
        ]
    if not train_samples:
        raise ValueError("the training split is empty; check data.train.json_path or data.synthetic.train_per_task")
    return PreparedData(train=train_samples, benchmarks=benchmarks, report=report)


def prepare_tokenizer(trial: TrialSpec, data: PreparedData, workspace: Workspace):
    """The trial's tokenizer; an offline BPE is trained once per (tokenizer, data) pair and cached on disk."""
    spec = trial.model.tokenizer
    if spec.kind == "hf":
        return load_tokenizer(spec, corpus=None, cache_dir=None)
    cache = workspace.tokenizer_dir / _digest({"tok": spec.model_dump(mode="json"),
                                               "data": trial.data.model_dump(mode="json")})

    with file_lock(cache.with_suffix(".lock")):
        return load_tokenizer(spec, corpus=lambda: training_corpus(data.train, template=trial.data.template),
                              cache_dir=cache)


def run_trial_core(
    trial: TrialSpec, workspace: Workspace, threads: int, progress: ProgressFn | None = None,
    world: WorldInfo | None = None,
) -> TrialOutcome | None:
    """Build, train and evaluate the model ``trial`` describes. Deterministic for a fixed seed and thread count.

    With ``world`` (one rank of a data-parallel trial, see ``execution/multi_worker.py``) every rank trains its
    shard of each global batch on its device; rank 0 evaluates and returns the outcome, the others return None.
    """
    say = progress or (lambda _msg: None)
    main = world is None or world.is_main
    if not main:
        say = lambda _msg: None  # noqa: E731 - only rank 0 reports progress
    started = time.perf_counter()
    pin_threads(threads)
    if world is not None and trial.train.batch_size % world.world_size:
        raise ValueError(f"train.batch_size={trial.train.batch_size} does not divide by {world.world_size} workers; "
                         "use a multiple of the worker count")

    say("preparing data")
    data = prepare_data(trial.data, workspace)
    tokenizer = prepare_tokenizer(trial, data, workspace)

    say(f"building {trial.label}")
    torch.manual_seed(trial.seed)
    model = build_eagle(trial.model, tokenizer)

    dataset = TrainDataset(data.train, tokenizer, image_size=trial.data.image_size,
                           num_visual_tokens=model.num_visual_tokens, max_length=trial.data.max_length,
                           template=trial.data.template, on_problem=trial.data.on_problem, report=data.report,
                           allow_text_only=True)
    if dataset.report.skipped:
        say(dataset.report.summary())
    first = collate_train([dataset[0]], tokenizer.pad_token_id)
    cost = measure_cost(model, first["images"], first) if main else None
    device = training_device()
    if world is not None:
        model = prepare_model(model.to(device))
        broadcast_parameters(model)
    stream = batches(dataset, trial.train.batch_size, lambda b: collate_train(b, tokenizer.pad_token_id), trial.seed)
    # In-trial checkpoints: a rerun of this trial (Tune retry, rerun search) continues where this process died.
    checkpoints = workspace.scratch_dir / "trials" / trial.key

    history: list[tuple[int, float]] = []

    def log_step(step: int, loss: float) -> None:
        history.append((step, loss))
        say(f"step {step + 1}/{trial.train.steps} loss {loss:.4f}")

    stats = train(model, stream, trial.train, on_log=log_step, checkpoint_dir=checkpoints, world=world)
    if not main:
        return None

    say("evaluating")
    model = model.cpu() if device.type != "cpu" else model
    records, eval_s = evaluate_benchmarks(model, tokenizer, data.benchmarks, image_size=trial.data.image_size,
                                          batch_size=trial.eval.batch_size, max_new_tokens=trial.eval.max_new_tokens,
                                          template=trial.data.template)
    summary = summarize(records, trial.eval, seed=trial.seed)

    metrics: dict[str, float] = summary_metrics(summary)
    metrics.update({
        "train/loss_first": stats.loss_first,
        "train/loss_final": stats.loss_final,
        "train/samples_per_s": stats.samples_per_s,
        "train/wall_s": stats.wall_s,
        "train/resumed_from_step": float(stats.resumed_from),
        "train/workers": float(world.world_size if world is not None else 1),
        "eval/wall_s": eval_s,
        **(cost.as_metrics() if cost is not None else {}),
        **dataset.report.as_metrics(),
    })
    metrics["cost/wall_s"] = time.perf_counter() - started
    shutil.rmtree(checkpoints, ignore_errors=True)  # done: kept only while the trial may be retried
    return TrialOutcome(objective=summary.objective, metrics=metrics, loss_history=history, predictions=records)
