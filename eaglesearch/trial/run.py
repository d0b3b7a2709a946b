"""Train and evaluate one Eagle model for a TrialSpec: data → tokenizer → stages → benchmarks.

Pure computation: no tracking, no Ray. The worker (``execution/worker.py``) wraps it with MLflow records.
"""

from __future__ import annotations

import copy
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch

from eaglesearch.artifacts import ArtifactStore
from eaglesearch.artifacts.files import file_lock
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
from eaglesearch.data.synthetic import GENERATOR_VERSION
from eaglesearch.evaluate.benchmarks import BENCHMARK_KINDS, load_benchmark
from eaglesearch.evaluate.items import BenchmarkItem
from eaglesearch.evaluate.predictions import PredictionRecord
from eaglesearch.evaluate.prior import prior_records
from eaglesearch.evaluate.run import Benchmark, evaluate_benchmarks, summarize, summary_metrics
from eaglesearch.model import EagleModel, load_tokenizer
from eaglesearch.model.cost import measure_cost
from eaglesearch.spec import DataSpec, TrialSpec
from eaglesearch.spec.keys import content_key
from eaglesearch.spec.train import StageSpec
from eaglesearch.train.distributed import WorldInfo, broadcast_parameters, prepare_model, training_device
from eaglesearch.train.fsdp import shard_model
from eaglesearch.train.pretrained import PretrainedComponents
from eaglesearch.train.stages import StagePipeline, StageRecord
from eaglesearch.trial.intermediate import IntermediateEval, IntermediateSettings, subset
from eaglesearch.trial.threads import pin_threads
from eaglesearch.trial.workspace import PER_TRIAL, Workspace

ProgressFn = Callable[[str], None]


@dataclass
class TrialOutcome:
    """Everything a finished trial measured."""

    objective: float
    metrics: dict[str, float]
    loss_history: list[tuple[int, float]] = field(default_factory=list)  # the final stage's logged losses
    predictions: list[PredictionRecord] = field(default_factory=list)
    stages: list[StageRecord] = field(default_factory=list)  # one per stage (per expert for per-expert stages)


@dataclass(frozen=True)
class PreparedData:
    train: list[Sample]
    benchmarks: list[Benchmark]
    report: DataReport | None = None  # what the data policy skipped while reading (llava source)
    captions: list[Sample] | None = None  # image-caption pairs for ``data: caption`` stages (None: not needed)
    caption_report: DataReport | None = None


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
    return content_key(payload, 12, spaced=True)


def prepare_data(spec: DataSpec, workspace: Workspace, captions: bool = False) -> PreparedData:
    """Read the LLaVA-format splits a trial trains and evaluates on, generating the synthetic ones first.
    The image-caption pairs are read whenever the data has them (synthetic: always); ``captions`` says a stage
    needs them, an error when there are none."""
    report: DataReport | None = None
    caption_samples: list[Sample] | None = None
    caption_report: DataReport | None = None
    if spec.source == "synthetic":
        assert spec.synthetic is not None
        root = workspace.data_dir / f"synthetic-{_digest([GENERATOR_VERSION, spec.synthetic.model_dump(mode='json')])}"
        dataset = write_synthetic(spec.synthetic, root)
        train_samples = read_llava_json(dataset.train_json, dataset.image_folder)
        caption_samples = read_llava_json(dataset.caption_json, dataset.image_folder)
        benchmarks = [make_benchmark(task, "synthetic", load_benchmark("synthetic", path, dataset.image_folder))
                      for task, path in dataset.eval_json.items()]
    else:
        assert spec.train is not None
        train_samples, report = read_training_samples(Path(spec.train.json_path), Path(spec.train.image_folder),
                                                      on_problem=spec.on_problem)
        if captions and spec.caption is None:
            raise ValueError("a stage trains on caption pairs but data.caption is not set; give data.caption: "
                             "{json_path, image_folder} (LLaVA pre-training format)")
        if spec.caption is not None:
            caption_samples, caption_report = read_training_samples(
                Path(spec.caption.json_path), Path(spec.caption.image_folder), on_problem=spec.on_problem)
        benchmarks = [
            make_benchmark(name, split.kind, load_benchmark(
                split.kind, Path(split.path), Path(split.image_folder) if split.image_folder else None,
                limit=split.limit, prompt=split.prompt), split.scoring)
            for name, split in spec.eval.items()
        ]
    if not train_samples:
        raise ValueError("the training split is empty; check data.train.json_path or data.synthetic.train_per_task")
    if captions and not caption_samples:
        raise ValueError("the caption split is empty; check data.caption.json_path")
    return PreparedData(train=train_samples, benchmarks=benchmarks, report=report, captions=caption_samples,
                        caption_report=caption_report)


def prepare_tokenizer(trial: TrialSpec, data: PreparedData, workspace: Workspace,
                      pretrained: PretrainedComponents | None = None):
    """The trial's tokenizer; an offline BPE is trained once per (tokenizer, data) pair and cached on disk; the
    world tokenizer is a pretrained component (shipped, or built once per store)."""
    spec = trial.model.tokenizer
    if spec.kind == "world":
        return (pretrained or PretrainedComponents(ArtifactStore(workspace.artifacts))).tokenizer(spec)
    if spec.kind == "hf":  # a GGUF tokenizer is cached as an ordinary one (parsing the GGUF file takes seconds)
        gguf_cache = workspace.tokenizer_dir / _digest({"tok": spec.model_dump(mode="json")}) if spec.gguf_file else None
        return load_tokenizer(spec, corpus=None, cache_dir=gguf_cache)
    cache = workspace.tokenizer_dir / _digest({"tok": spec.model_dump(mode="json"),
                                               "data": trial.data.model_dump(mode="json")})

    with file_lock(cache.with_suffix(".lock")):
        # Captions (when the data has them) join the corpus whether or not a stage trains on them, so trials with and
        # without a caption stage share one tokenizer.
        return load_tokenizer(spec, corpus=lambda: training_corpus([*data.train, *(data.captions or [])],
                                                                   template=trial.data.template),
                              cache_dir=cache)


class StageDatasets:
    """The training dataset of each stage, built once per (data source, template, visual tokens per image)."""

    def __init__(self, trial: TrialSpec, data: PreparedData, tokenizer: Any, say: ProgressFn) -> None:
        self.trial, self.data, self.tokenizer, self.say = trial, data, tokenizer, say
        self._built: dict[tuple[str, str, int], TrainDataset] = {}
        self.reports: dict[str, DataReport] = {}  # per data source, from its latest dataset

    def __call__(self, stage: StageSpec, num_visual_tokens: int) -> TrainDataset:
        template = stage.template or self.trial.data.template
        key = (stage.data, template, num_visual_tokens)
        if key not in self._built:
            samples, read = ((self.data.captions, self.data.caption_report) if stage.data == "caption"
                             else (self.data.train, self.data.report))
            assert samples is not None, "captions were not read; prepare_data(captions=True)"
            dataset = TrainDataset(samples, self.tokenizer, image_size=self.trial.data.image_size,
                                   num_visual_tokens=num_visual_tokens, max_length=self.trial.data.max_length,
                                   template=template, on_problem=self.trial.data.on_problem,
                                   report=copy.deepcopy(read) if read is not None else None, allow_text_only=True)
            if dataset.report.skipped and stage.data not in self.reports:
                self.say(dataset.report.summary())
            self._built[key] = dataset
            self.reports[stage.data] = dataset.report
        return self._built[key]

    def metrics(self) -> dict[str, float]:
        """``data/...`` for the SFT data (as before stages existed), ``data/caption/...`` for the captions."""
        out: dict[str, float] = {}
        for source, report in self.reports.items():
            prefix = "data/" if source == "sft" else f"data/{source}/"
            out.update({prefix + k.removeprefix("data/"): v for k, v in report.as_metrics().items()})
        return out


def stage_metrics(records: list[StageRecord]) -> dict[str, float]:
    """Trial-level numbers from the stage records: the final stage's loss figures and a line per stage."""
    final = records[-1]
    trained = [r for r in records if r.status == "trained"]
    out: dict[str, float] = {
        "train/loss_first": final.losses[0][1] if final.losses else float("nan"),
        "train/loss_final": final.loss_final if final.loss_final is not None else float("nan"),
        "train/samples_per_s": final.samples / final.wall_s if final.wall_s > 0 else 0.0,
        "train/wall_s": sum(r.wall_s for r in trained),
        "train/resumed_from_step": float(final.resumed_from),
        # Optimizer steps this trial ran itself (restored ones excluded): the compute a multi-fidelity search saves.
        "train/steps_trained": float(sum(r.steps - r.resumed_from for r in trained)),
        "stages/trained": float(len(trained)),
        "stages/reused": float(len(records) - len(trained)),
    }
    for r in records:
        out[f"stage/{r.name}/loss_final"] = r.loss_final if r.loss_final is not None else float("nan")
        out[f"stage/{r.name}/steps"] = float(r.steps)
        if r.status == "trained":
            out[f"stage/{r.name}/wall_s"] = r.wall_s
    return out


def run_trial_core(
    trial: TrialSpec, workspace: Workspace, threads: int, progress: ProgressFn | None = None,
    world: WorldInfo | None = None, parallelism: Literal["ddp", "fsdp"] = "ddp", device: torch.device | None = None,
    intermediate: IntermediateSettings | None = None,
) -> TrialOutcome | None:
    """Build, train (every stage, see :mod:`eaglesearch.train.stages`) and evaluate the model ``trial`` describes.
    Deterministic for a fixed seed and thread count.

    With ``world`` (one rank of a data-parallel trial, see ``execution/multi_worker.py``) every rank trains its
    shard of each global batch on its device; rank 0 evaluates and returns the outcome, the others return None.
    ``parallelism`` says how the ranks hold the model: ``ddp`` a full copy each (gradients all-reduced), ``fsdp``
    a shard each (:mod:`eaglesearch.train.fsdp`; rank 0 evaluates an unsharded copy). ``device`` defaults to
    :func:`~eaglesearch.train.distributed.training_device`.

    With ``intermediate`` (a scheduler such as ASHA watches the trial) the final stage is evaluated on a subset
    every ``intermediate.every`` steps and reported (``trial/intermediate.py``); the result is unchanged.
    """
    say = progress or (lambda _msg: None)
    main = world is None or world.is_main
    if not main:
        say = lambda _msg: None  # noqa: E731 - only rank 0 reports progress
    started = time.perf_counter()
    pin_threads(threads)
    if world is not None:
        for stage in trial.train.active:
            if stage.batch_size % world.world_size:
                raise ValueError(f"stage '{stage.name}': batch_size={stage.batch_size} does not divide by "
                                 f"{world.world_size} workers; use a multiple of the worker count")

    say("preparing data")
    data = prepare_data(trial.data, workspace, captions=any(s.data == "caption" for s in trial.train.active))
    private = workspace.scratch_dir / "trials" / trial.key / "private" if workspace.artifacts == PER_TRIAL else None
    store = ArtifactStore(private / "artifacts" if private else workspace.artifacts)
    pretrained = PretrainedComponents(store, say)
    tokenizer = prepare_tokenizer(trial, data, workspace, pretrained)
    datasets = StageDatasets(trial, data, tokenizer, say)
    device = device or training_device()
    sharded = parallelism == "fsdp" and world is not None and world.world_size > 1

    def place(model: EagleModel) -> EagleModel:
        if sharded:  # identical on every rank, then sharded (its own mixed precision and checkpointing on GPU)
            broadcast_parameters(model)
            return shard_model(model)  # type: ignore[return-value]
        model = prepare_model(model)  # gradient checkpointing on GPU; nothing on CPU
        if world is not None:
            broadcast_parameters(model)
        return model

    watch = None
    if intermediate is not None and main:
        watch = IntermediateEval(trial, tokenizer, subset(data.benchmarks, intermediate.limit), intermediate.every,
                                 intermediate.report)
    say(f"building {trial.label} ({trial.train.label})")
    # No reuse ("per-trial"): a private store and scratch inside the trial's folder, deleted when it finishes.
    pipeline = StagePipeline(trial, tokenizer, datasets, lambda b: collate_train(b, tokenizer.pad_token_id),
                             store=store, scratch=private or workspace.scratch_dir, world=world,
                             device=device, say=say, on_model=place, pretrained=pretrained, on_final_step=watch)
    result = pipeline.run()
    if not main:
        return None
    model = result.model

    say("evaluating")
    sft = datasets(trial.train.joint_stages[-1], model.num_visual_tokens)
    first = {k: v.to(device) for k, v in collate_train([sft[0]], tokenizer.pad_token_id).items()}
    cost = measure_cost(model, first["images"], first)
    records, eval_s = evaluate_benchmarks(model, tokenizer, data.benchmarks, image_size=trial.data.image_size,
                                          batch_size=trial.eval.batch_size, max_new_tokens=trial.eval.max_new_tokens,
                                          template=trial.data.template)
    summary = summarize(records, trial.eval, seed=trial.seed)

    metrics: dict[str, float] = summary_metrics(summary)
    baseline = prior_records(data.train, data.benchmarks)
    if baseline:  # the answer-prior row of the reports: what always answering the commonest answer scores
        metrics.update({f"prior/{k}": v for k, v in summary_metrics(summarize(baseline, trial.eval,
                                                                              seed=trial.seed)).items()})
    metrics.update({
        **stage_metrics(result.stages),
        "train/workers": float(world.world_size if world is not None else 1),
        "train/fsdp": float(sharded),
        "eval/wall_s": eval_s,
        **cost.as_metrics(),
        **datasets.metrics(),
    })
    metrics["cost/wall_s"] = time.perf_counter() - started
    shutil.rmtree(workspace.scratch_dir / "trials" / trial.key, ignore_errors=True)  # kept only for retries
    return TrialOutcome(objective=summary.objective, metrics=metrics, loss_history=result.stages[-1].losses,
                        predictions=records, stages=result.stages)
