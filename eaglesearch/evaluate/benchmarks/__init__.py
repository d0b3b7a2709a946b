"""Benchmark loaders: benchmark files as harnesses ship them → :class:`~eaglesearch.evaluate.items.BenchmarkItem`.

``load_benchmark(kind, path, image_folder)`` reads any kind in :data:`BENCHMARK_KINDS` from the formats the
harnesses use — LLaVA json/jsonl question files with an image folder, VLMEvalKit tsv with base64 images,
lmms-eval (Hugging Face) parquet with embedded image bytes — and gives every item the benchmark's standard prompt.
Each kind also names the metric it is scored with and its default scoring mode. :func:`open_image` turns an
item's image (a path or encoded bytes) into an RGB PIL image for the evaluator.

Modules: ``formats`` (readers, records), ``images`` (image references), ``prompts`` (standard prompts),
``registry`` (kinds, :func:`load_benchmark`), one module per loader family (``vqa``, ``pope``, ``mme``,
``ocrbench``, ``gqa``, ``choice``, ``synthetic``).
"""

from eaglesearch.evaluate.benchmarks.formats import Record, Table, read_table
from eaglesearch.evaluate.benchmarks.images import ImageRef, open_image
from eaglesearch.evaluate.benchmarks.prompts import PromptStyle
from eaglesearch.evaluate.benchmarks.registry import (
    BENCHMARK_KINDS,
    BenchmarkKind,
    BenchmarkLoader,
    LoadContext,
    ScoringMode,
    load_benchmark,
)

__all__ = [
    "BENCHMARK_KINDS", "BenchmarkKind", "BenchmarkLoader", "ImageRef", "LoadContext", "PromptStyle", "Record",
    "ScoringMode", "Table", "load_benchmark", "open_image", "read_table",
]
