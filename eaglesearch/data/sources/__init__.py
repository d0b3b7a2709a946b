"""Training data sources: one module per format behind one interface (``base.py``), registered by format name.

Importing this package registers the built-in formats: ``synthetic`` and ``synthetic_captions`` (the generator),
``llava`` and ``jsonl`` (LLaVA files), ``hf_disk`` and ``parquet`` (tables), ``webdataset`` (tar shards).
"""

from eaglesearch.data.sources import llava, synthetic, tables, webdataset  # noqa: F401 - registers the formats
from eaglesearch.data.sources.base import (
    DataSource,
    Record,
    SourceContext,
    SourceIssue,
    build_source,
    register_source,
    source_class,
    source_formats,
)
from eaglesearch.data.sources.synthetic import generated_dataset

__all__ = ["DataSource", "Record", "SourceContext", "SourceIssue", "build_source", "generated_dataset",
           "register_source", "source_class", "source_formats"]
