"""A trial's data: its mixtures read source by source (``data/sources``; synthetic ones generated first), its
benchmarks, its tokenizer, and the training dataset of each stage (drawn from its mixture, ``data/mixture.py``)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset, Subset

from eaglesearch.artifacts import ArtifactStore
from eaglesearch.artifacts.files import file_lock
from eaglesearch.data import (
    Sample,
    TrainDataset,
    training_corpus,
)
from eaglesearch.data.mixture import SourceShare, is_natural, realise
from eaglesearch.data.policy import MAX_EXAMPLES, DataReport, screen_records
from eaglesearch.data.sources import SourceContext, build_source, generated_dataset
from eaglesearch.evaluate.benchmarks import BENCHMARK_KINDS, load_benchmark
from eaglesearch.evaluate.items import BenchmarkItem
from eaglesearch.evaluate.metrics import metric_variants
from eaglesearch.evaluate.run import Benchmark
from eaglesearch.model import load_tokenizer
from eaglesearch.spec import DataSpec, TrialSpec
from eaglesearch.spec.keys import content_key
from eaglesearch.spec.sources import SHARE_FIELDS
from eaglesearch.spec.train import StageSpec
from eaglesearch.train.pretrained import PretrainedComponents
from eaglesearch.trial.aspect import image_policy
from eaglesearch.trial.workspace import Workspace

ProgressFn = Callable[[str], None]


@dataclass(frozen=True)
class PreparedData:
    """A trial's data as read: per mixture and source, the usable samples (an index of records: no pixels), the
    policy's report per mixture, and the benchmarks. ``train``/``captions`` are the ``sft``/``caption`` mixtures'
    samples, every source's in declared order (what the tokenizer corpus and the answer prior read)."""

    train: list[Sample]
    benchmarks: list[Benchmark]
    report: DataReport | None = None  # what the data policy skipped while reading the sft mixture
    captions: list[Sample] | None = None  # image-caption pairs for ``data: caption`` stages (None: not needed)
    caption_report: DataReport | None = None
    mixtures: dict[str, dict[str, list[Sample]]] = field(default_factory=dict)  # mixture -> source -> samples
    reports: dict[str, DataReport] = field(default_factory=dict)  # mixture -> read report (beyond sft/caption)

    def samples(self, mixture: str) -> list[Sample] | None:
        """Every sample of a mixture, sources in declared order; None when it was not read."""
        if mixture in self.mixtures:
            return [s for samples in self.mixtures[mixture].values() for s in samples]
        return {"sft": self.train, "caption": self.captions}.get(mixture)

    def read_report(self, mixture: str) -> DataReport | None:
        return {"sft": self.report, "caption": self.caption_report}.get(mixture, self.reports.get(mixture))


def make_benchmark(name: str, kind: str, items: list[BenchmarkItem], scoring: str | None = None,
                   metric: str | None = None) -> Benchmark:
    """A benchmark scored with its kind's metric (or ``metric``, one of that metric's registered variants), in its
    kind's mode unless ``scoring`` overrides it."""
    spec = BENCHMARK_KINDS[kind]
    items = [item if item.benchmark == name else replace(item, benchmark=name) for item in items]
    mode = scoring or spec.mode
    candidates = {item.id: spec.candidates(item) for item in items} if mode == "likelihood" else {}
    if mode == "likelihood" and not all(candidates.values()):
        raise ValueError(f"benchmark '{name}' ({kind}) has no answer candidates to rank; use scoring: generate")
    return Benchmark(name=name, metric=scoring_metric(name, kind, metric), scoring=mode, items=items,
                     candidates=candidates)


def scoring_metric(name: str, kind: str, metric: str | None) -> str:
    """The metric benchmark ``name`` of ``kind`` is scored with: its kind's, or ``metric`` when that is one of the
    registered variants of the kind's metric (``data.eval.<name>.metric``)."""
    official = BENCHMARK_KINDS[kind].metric
    allowed = metric_variants(official)
    if metric is not None and metric not in allowed:
        raise ValueError(f"data.eval.{name}.metric: {metric!r} cannot score a {kind!r} benchmark; choose one of "
                         f"{', '.join(allowed)} (or leave metric out for {official!r})")
    return metric or official


def _digest(payload: object) -> str:
    return content_key(payload, 12, spaced=True)


def read_mixture(spec: DataSpec, mixture: str, context: SourceContext,
                 read: dict[str, tuple[list[Sample], DataReport]] | None = None
                 ) -> tuple[dict[str, list[Sample]], DataReport]:
    """Each source of ``mixture`` read through its format (``data/sources``) and screened by the data policy,
    and one report for the mixture (skips counted per kind and per source). ``read`` caches sources by
    declaration, so a source two mixtures share is read once."""
    sources = spec.mixture(mixture)
    assert sources is not None, f"the data has no mixture '{mixture}'"
    label = ", ".join(f"{name} ({src.path or src.format})" for name, src in sources.items())
    report = DataReport(source=label if len(sources) > 1 else next(iter(sources.values())).path or label)
    out: dict[str, list[Sample]] = {}
    for name, src in sources.items():
        key = json.dumps([name, src.model_dump(mode="json", exclude=set(SHARE_FIELDS))], sort_keys=True)
        if read is not None and key in read:
            samples, own = read[key]
        else:
            samples, own = screen_records(build_source(name, src, context).records(), on_problem=spec.on_problem,
                                          report=DataReport(source=name))
            if read is not None:
                read[key] = (samples, own)
        out[name] = samples
        report.total += own.total
        for kind, count in own.skipped.items():
            report.skipped[kind] = report.skipped.get(kind, 0) + count
            report.examples.setdefault(kind, []).extend(own.examples.get(kind, [])[:MAX_EXAMPLES])
        for source, count in own.by_source.items():
            report.by_source[source] = report.by_source.get(source, 0) + count
    return out, report


def prepare_data(spec: DataSpec, workspace: Workspace, captions: bool = False) -> PreparedData:
    """Read every mixture a trial can train on (``sft``, ``caption`` when the data has it, ``data.mixtures``)
    and its benchmarks: the generator's (written first) and ``data.eval``'s. ``captions`` says a stage needs the
    caption pairs, an error when there are none."""
    if captions and spec.mixture("caption") is None:
        raise ValueError("a stage trains on caption pairs but data.caption is not set; give data.caption: "
                         "{json_path, image_folder} (LLaVA pre-training format) or named caption sources")
    context = SourceContext(data=spec, data_dir=workspace.data_dir)
    cache: dict[str, tuple[list[Sample], DataReport]] = {}
    mixtures: dict[str, dict[str, list[Sample]]] = {}
    reports: dict[str, DataReport] = {}
    for name in spec.mixture_names:
        mixtures[name], reports[name] = read_mixture(spec, name, context, cache)
    benchmarks: list[Benchmark] = []
    if spec.synthetic is not None:  # the generator's benchmarks, one per task
        generated = generated_dataset(context)
        benchmarks += [make_benchmark(task, "synthetic", load_benchmark("synthetic", path, generated.image_folder))
                       for task, path in generated.eval_json.items()]
    for name, split in spec.eval.items():  # a wrong metric fails before any benchmark file is read
        if split.kind in BENCHMARK_KINDS:
            scoring_metric(name, split.kind, split.metric)
    benchmarks += [
        make_benchmark(name, split.kind, load_benchmark(
            split.kind, Path(split.path), Path(split.image_folder) if split.image_folder else None,
            limit=split.limit, prompt=split.prompt), split.scoring, split.metric)
        for name, split in spec.eval.items()
    ]
    prepared = PreparedData(train=[], benchmarks=benchmarks, mixtures=mixtures, reports=reports)
    train, caption_samples = prepared.samples("sft") or [], prepared.samples("caption")
    if not train:
        raise ValueError("the training mixture is empty; check data.train's sources or data.synthetic.train_per_task")
    if captions and not caption_samples:
        raise ValueError("the caption mixture is empty; check data.caption's sources")
    return replace(prepared, train=train, captions=caption_samples, report=reports.get("sft"),
                   caption_report=reports.get("caption"))


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
    cache = workspace.tokenizer_dir / _digest({"tok": spec.model_dump(mode="json"), "data": corpus_payload(trial.data)})

    with file_lock(cache.with_suffix(".lock")):
        # Captions (when the data has them) join the corpus whether or not a stage trains on them, so trials with and
        # without a caption stage share one tokenizer.
        mixtures = [m for m in trial.data.mixture_names if m not in ("sft", "caption")]
        corpus = [*data.train, *(data.captions or []), *(s for m in mixtures for s in data.samples(m) or [])]
        return load_tokenizer(spec, corpus=lambda: training_corpus(corpus, template=trial.data.template),
                              cache_dir=cache)


def corpus_payload(data: DataSpec) -> dict[str, Any]:
    """The data settings a tokenizer's corpus depends on: every source's samples, whatever its share (a search over
    ratios shares one tokenizer)."""
    payload = data.model_dump(mode="json")
    for field_name in ("train", "caption"):
        if isinstance(payload.get(field_name), dict) and "json_path" not in payload[field_name]:
            payload[field_name] = _without_shares(payload[field_name])
    if payload.get("mixtures"):
        payload["mixtures"] = {k: _without_shares(v) for k, v in payload["mixtures"].items()}
    return payload


def _without_shares(sources: dict[str, Any]) -> dict[str, Any]:
    return {name: {k: v for k, v in src.items() if k not in SHARE_FIELDS} for name, src in sources.items()}


class StageDatasets:
    """The training dataset of each stage, built once per (mixture, template, visual tokens per image): the
    mixture's samples checked and encoded once (``TrainDataset``), then drawn per the sources' shares
    (``data/mixture.py``; a natural mixture is the dataset itself). Records what each stage drew from each source."""

    def __init__(self, trial: TrialSpec, data: PreparedData, tokenizer: Any, say: ProgressFn) -> None:
        self.trial, self.data, self.tokenizer, self.say = trial, data, tokenizer, say
        self._built: dict[tuple[str, str, int], TrainDataset] = {}
        self._drawn: dict[tuple[str, str, int], tuple[Dataset, list[SourceShare]]] = {}
        self.reports: dict[str, DataReport] = {}  # per mixture, from its latest dataset
        self.shares: dict[str, list[SourceShare]] = {}  # per stage: what each source contributed

    def __call__(self, stage: StageSpec, num_visual_tokens: int) -> Dataset:
        template = stage.template or self.trial.data.template
        key = (stage.data, template, num_visual_tokens)
        if key not in self._built:
            samples, read = self.data.samples(stage.data), self.data.read_report(stage.data)
            assert samples is not None, f"mixture '{stage.data}' was not read; prepare_data reads every mixture"
            dataset = TrainDataset(samples, self.tokenizer, image_size=self.trial.data.image_size,
                                   num_visual_tokens=num_visual_tokens, max_length=self.trial.data.max_length,
                                   template=template, on_problem=self.trial.data.on_problem,
                                   report=copy.deepcopy(read) if read is not None else None, allow_text_only=True,
                                   image_policy=image_policy(self.trial))
            if dataset.report.skipped and stage.data not in self.reports:
                self.say(dataset.report.summary())
            self._built[key] = dataset
            self.reports[stage.data] = dataset.report
            self._drawn[key] = self._draw(stage.data, dataset)
        drawn, self.shares[stage.name] = self._drawn[key]
        return drawn

    def _draw(self, mixture: str, dataset: TrainDataset) -> tuple[Dataset, list[SourceShare]]:
        specs = self.trial.data.mixture(mixture) or {}
        indices, plan = realise(specs, _by_source(dataset, specs), self.trial.seed, mixture)
        if is_natural(specs):
            return dataset, plan  # every sample once: the dataset as it is (and as it was before mixtures)
        self.say(f"mixture {mixture}: " + ", ".join(f"{s.name} {s.samples} ({s.share:.0%})" for s in plan))
        return Subset(dataset, indices), plan

    def metrics(self) -> dict[str, float]:
        """``data/...`` for the SFT data (as before stages existed), ``data/<mixture>/...`` for the others, and per
        stage and source ``data/<stage>/<source>/{samples,available,skipped}``."""
        out: dict[str, float] = {}
        for mixture, report in self.reports.items():
            prefix = "data/" if mixture == "sft" else f"data/{mixture}/"
            out.update({prefix + k.removeprefix("data/"): v for k, v in report.as_metrics().items()})
        for stage, plan in self.shares.items():
            mixture = self.trial.train.stage(stage).data
            skipped = self.reports[mixture].by_source if mixture in self.reports else {}
            for share in plan:
                out[f"data/{stage}/{share.name}/samples"] = float(share.samples)
                out[f"data/{stage}/{share.name}/available"] = float(share.available)
                out[f"data/{stage}/{share.name}/skipped"] = float(skipped.get(share.name, 0))
        return out


def _by_source(dataset: TrainDataset, specs: dict[str, Any]) -> dict[str, list[int]]:
    """Each source's kept samples as indices into the dataset (stored order). A sample read outside any source
    (built by hand, e.g. in tests) counts as the mixture's only source's."""
    only = next(iter(specs)) if len(specs) == 1 else None
    out: dict[str, list[int]] = {name: [] for name in specs}
    for i, sample in enumerate(dataset.samples):
        name = sample.source if sample.source in out else only
        if name is not None:
            out[name].append(i)
    return out
