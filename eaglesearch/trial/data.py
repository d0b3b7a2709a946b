"""A trial's data: the LLaVA-format splits (synthetic ones generated first), its benchmarks, its tokenizer, and
the training dataset of each stage."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from eaglesearch.artifacts import ArtifactStore
from eaglesearch.artifacts.files import file_lock
from eaglesearch.data import (
    Sample,
    TrainDataset,
    read_llava_json,
    read_training_samples,
    training_corpus,
    write_synthetic,
)
from eaglesearch.data.policy import DataReport
from eaglesearch.data.synthetic import GENERATOR_VERSION
from eaglesearch.evaluate.benchmarks import BENCHMARK_KINDS, load_benchmark
from eaglesearch.evaluate.items import BenchmarkItem
from eaglesearch.evaluate.run import Benchmark
from eaglesearch.model import load_tokenizer
from eaglesearch.spec import DataSpec, TrialSpec
from eaglesearch.spec.keys import content_key
from eaglesearch.spec.train import StageSpec
from eaglesearch.train.pretrained import PretrainedComponents
from eaglesearch.trial.aspect import image_policy
from eaglesearch.trial.workspace import Workspace

ProgressFn = Callable[[str], None]


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
                                   report=copy.deepcopy(read) if read is not None else None, allow_text_only=True,
                                   policy=image_policy(self.trial))
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


