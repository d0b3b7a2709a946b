"""The benchmark kinds eaglesearch evaluates on, and :func:`load_benchmark`, the one entry point.

Each kind names its loader family, the metric it is scored with (a name in the metrics registry: the
reference-identical rule its published numbers come from, never a ``_lenient`` variant), its default
scoring mode — ``"likelihood"`` (argmax over answer candidates, no answer parsing) for yes/no and multiple-choice
benchmarks, ``"generate"`` (greedy decoding, then the metric) for open answers — and its standard prompt
(``prompts.py``).

Loading is the same for every kind: read the file (``formats.py``), key each record by the file's id field (the
first of the family's id columns present in every record with distinct values, decided on the whole file so ids
never depend on ``limit``; else the record's position), drop records the benchmark leaves out (SEED video
questions), keep the first ``limit`` *scoring units* — a question, or a whole group for benchmarks scored by group
(an MME image's two questions, an MMBench question's circular passes) — and let the family turn each record into
items. Item ids must be unique within a file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal, Protocol

from eaglesearch.evaluate.benchmarks import choice, gqa, mme, ocrbench, pope, prompts, synthetic, vqa
from eaglesearch.evaluate.benchmarks.formats import Record, Table, read_table, records
from eaglesearch.evaluate.benchmarks.images import ImageRef, ImageStore
from eaglesearch.evaluate.benchmarks.prompts import PromptStyle, custom_prompt
from eaglesearch.evaluate.items import BenchmarkItem

ScoringMode = Literal["generate", "likelihood"]
YES_NO = ("yes", "no")


@dataclass(frozen=True)
class LoadContext:
    """What a loader family needs: the kind being loaded, its file, its images and the prompt style in force."""

    kind: str
    table: Table
    images: ImageStore
    prompt: PromptStyle

    def item(self, record: Record, *, question: str, references: Iterable[str], fields: dict[str, str],
             image: ImageRef, choices: Iterable[str] = (), meta: dict[str, str] | None = None,
             item_id: str | None = None) -> BenchmarkItem:
        """A :class:`BenchmarkItem` with the prompt rendered from ``fields`` and the style recorded in meta."""
        return BenchmarkItem(
            benchmark=self.kind, id=record.key if item_id is None else item_id, question=question,
            prompt=self.prompt.render(fields), references=tuple(references), image=image, choices=tuple(choices),
            meta={**(meta or {}), "prompt_style": self.prompt.name},
        )


class BenchmarkLoader(Protocol):
    """A loader family bound to one file (constructed from a :class:`LoadContext`)."""

    id_fields: tuple[str, ...]
    """Columns that may hold the record's id, in order of preference."""

    def keep(self, record: Record) -> bool:
        """Whether the record belongs to the benchmark (e.g. SEED keeps image questions only)."""
        ...

    def group_key(self, record: Record) -> str:
        """The scoring unit the record belongs to (its own key unless the benchmark scores groups)."""
        ...

    def items(self, record: Record) -> list[BenchmarkItem]:
        """The record's items (one, or several for generated MMBench circular passes)."""
        ...


@dataclass(frozen=True)
class BenchmarkKind:
    """One benchmark kind: how it is loaded, prompted and scored."""

    name: str
    metric: str
    mode: ScoringMode
    prompt: PromptStyle
    loader: Callable[[LoadContext], BenchmarkLoader]
    description: str
    required_fields: tuple[str, ...] = ("question",)  # a custom prompt template must use these
    answer_space: tuple[str, ...] = ()  # likelihood candidates shared by every item (yes/no); else the letters

    def candidates(self, item: BenchmarkItem) -> tuple[str, ...]:
        """The answers likelihood scoring ranks for ``item``: yes/no, or the option letters; ``()`` for generate."""
        if self.mode != "likelihood":
            return ()
        return self.answer_space or item.letters


CHOICE_FIELDS = ("question", "options")  # a multiple-choice prompt template must show the options

# fmt: off
_KINDS = (
    BenchmarkKind("vqav2", "vqa_accuracy", "generate", prompts.VQAV2, partial(vqa.VQALoader, answers=10),
                  "VQAv2 (val): open answers, 10 human answers each"),
    BenchmarkKind("textvqa", "vqa_accuracy_evalai", "generate", prompts.TEXTVQA, partial(vqa.VQALoader, answers=10),
                  "TextVQA (val) without OCR tokens in the prompt (lmms-eval default)"),
    BenchmarkKind("textvqa_ocr", "vqa_accuracy_evalai", "generate", prompts.TEXTVQA_OCR,
                  partial(vqa.VQALoader, answers=10, ocr=True),
                  "TextVQA (val) with 'Reference OCR token: ...' in the prompt (Eagle's and LLaVA's setting)"),
    BenchmarkKind("vizwiz", "vqa_accuracy_evalai", "generate", prompts.VIZWIZ, partial(vqa.VQALoader, answers=10),
                  "VizWiz-VQA (val): open answers or 'unanswerable', 10 human answers each"),
    BenchmarkKind("docvqa", "anls", "generate", prompts.DOCVQA, partial(vqa.VQALoader, answers=None),
                  "DocVQA (val): answers on document images, ANLS over the answer list"),
    BenchmarkKind("infovqa", "anls", "generate", prompts.INFOVQA, partial(vqa.VQALoader, answers=None),
                  "InfographicVQA (val): answers on infographics, ANLS over the answer list"),
    BenchmarkKind("chartqa", "relaxed_accuracy", "generate", prompts.CHARTQA, vqa.ChartQALoader,
                  "ChartQA (test): human and augmented splits in meta['category'] (and meta['split'])"),
    BenchmarkKind("pope", "pope", "likelihood", prompts.POPE, pope.POPELoader,
                  "POPE: yes/no object hallucination; random/popular/adversarial in meta['category']",
                  answer_space=YES_NO),
    BenchmarkKind("mme", "mme", "likelihood", prompts.MME, mme.MMELoader,
                  "MME: yes/no, two questions per image; subtask in meta['category'], image in meta['image']",
                  answer_space=YES_NO),
    BenchmarkKind("ocrbench", "ocrbench", "generate", prompts.OCRBENCH, ocrbench.OCRBenchLoader,
                  "OCRBench (v1, 1000 items): question type in meta['category'], source dataset in meta['dataset']"),
    BenchmarkKind("gqa", "gqa_exact_match", "generate", prompts.GQA, gqa.GQALoader,
                  "GQA (testdev-balanced): one answer, structural type in meta['category']"),
    BenchmarkKind("seed", "choice_accuracy", "likelihood", prompts.SEED, partial(choice.ChoiceLoader, images_only=True),
                  "SEED-Bench image questions (SEED-IMG); video questions are left out", required_fields=CHOICE_FIELDS),
    BenchmarkKind("scienceqa", "choice_accuracy", "likelihood", prompts.SCIENCEQA, choice.ChoiceLoader,
                  "ScienceQA-IMG (test): options from a list, index answers, optional context hint",
                  required_fields=CHOICE_FIELDS),
    BenchmarkKind("ai2d", "choice_accuracy", "likelihood", prompts.AI2D, choice.ChoiceLoader,
                  "AI2D (test): diagram questions, options from a list, index answers", required_fields=CHOICE_FIELDS),
    BenchmarkKind("mmbench", "mmbench_circular", "likelihood", prompts.MMBENCH,
                  partial(choice.ChoiceLoader, circular=True),
                  "MMBench (dev): circular evaluation; passes share meta['group']", required_fields=CHOICE_FIELDS),
    BenchmarkKind("llava", "exact_match", "generate", prompts.AS_WRITTEN, synthetic.ConversationLoader,
                  "LLaVA conversation json: the last assistant turn is the reference"),
    BenchmarkKind("synthetic", "exact_match", "generate", prompts.AS_WRITTEN, synthetic.ConversationLoader,
                  "eaglesearch's synthetic benchmark (LLaVA conversation json written by data.write_synthetic)"),
)
# fmt: on
BENCHMARK_KINDS: dict[str, BenchmarkKind] = {kind.name: kind for kind in _KINDS}


def load_benchmark(kind: str, path: Path, image_folder: Path | None, *, limit: int | None = None,
                   prompt: str | None = None) -> list[BenchmarkItem]:
    """The items of the benchmark file ``path`` read as ``kind`` (see :data:`BENCHMARK_KINDS`).

    ``image_folder``: what relative image paths (or image ids) refer to — a directory, or a parquet table of
    images by id; ``None`` when the file embeds its images (tsv base64, parquet bytes). ``limit``: keep the first
    ``limit`` scoring units (questions; whole groups for MME and MMBench). ``prompt``: a :meth:`str.format`
    template replacing the standard prompt (fields per kind in ``prompts.py``; recorded as style ``"custom"``).
    """
    spec = BENCHMARK_KINDS.get(kind)
    if spec is None:
        raise ValueError(f"unknown benchmark kind {kind!r}; known kinds: {', '.join(sorted(BENCHMARK_KINDS))}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    style = spec.prompt if prompt is None else custom_prompt(prompt, kind, spec.prompt.fields, spec.required_fields)
    table = read_table(Path(path))
    if not table.rows:
        raise ValueError(f"{table.path}: the file holds no records; check that it is the right split")
    context = LoadContext(kind=kind, table=table, images=ImageStore.at(image_folder), prompt=style)
    loader = spec.loader(context)
    kept = [record for record in records(table, loader.id_fields) if loader.keep(record)]
    if not kept:
        raise ValueError(f"{table.path}: none of its {len(table.rows)} records belongs to {kind!r} "
                         f"({spec.description}); check the kind and the file")
    items = [item for record in _first_units(kept, loader.group_key, limit) for item in loader.items(record)]
    _check_unique_ids(items, table.path)
    return items


def _first_units(kept: list[Record], group_key: Callable[[Record], str], limit: int | None) -> list[Record]:
    """Records of the first ``limit`` groups (in order of first appearance), in file order; all if no limit."""
    if limit is None:
        return kept
    keys = [group_key(record) for record in kept]
    chosen = set(list(dict.fromkeys(keys))[:limit])
    return [record for record, key in zip(kept, keys, strict=True) if key in chosen]


def _check_unique_ids(items: list[BenchmarkItem], path: Path) -> None:
    seen: dict[str, int] = {}
    for n, item in enumerate(items):
        if item.id in seen:
            raise ValueError(f"{path}: item id {item.id!r} occurs twice (items {seen[item.id]} and {n}); ids come "
                             "from the file's id column — make its values unique")
        seen[item.id] = n
