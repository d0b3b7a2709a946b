"""LLaVA-format files: a json list of records (``llava``) or one record per line (``jsonl``, Cambrian's format).

Both hold ``{id, image, conversations}`` with ``image`` relative to the source's ``image_folder``
(``data/llava.py`` parses and validates them).
"""

from __future__ import annotations

from pathlib import Path

from eaglesearch.data.llava import read_llava_records
from eaglesearch.data.sources.base import DataSource, Record, SourceIssue, register_source


class _LlavaFile(DataSource):
    def check_more(self) -> list[SourceIssue]:
        if not self.path.is_file():
            return [SourceIssue("path", f"source '{self.name}' ({self.format}): '{self.path}' is not a file")]
        return []

    def records(self) -> list[Record]:
        return read_llava_records(self.path, Path(self.spec.image_folder or "."), source=self.name)


@register_source
class LlavaJsonSource(_LlavaFile):
    format = "llava"


@register_source
class LlavaJsonlSource(_LlavaFile):
    format = "jsonl"

    def check_more(self) -> list[SourceIssue]:
        if self.path.suffix != ".jsonl":  # the reader picks the line format by suffix
            return [SourceIssue("path", f"source '{self.name}' (jsonl): '{self.path}' must end in .jsonl (or use "
                                "format: llava for a json list)")]
        return super().check_more()
