"""Table sources: a Hugging Face ``datasets`` folder written by ``save_to_disk`` (``hf_disk``: Arrow files,
memory-mapped by ``load_from_disk``) and parquet files (``parquet``: one file, or a folder of ``*.parquet`` shards
read in name order).

A row is ``{id, conversations, image}`` (other names through the source's ``columns``):

* ``conversations``: the LLaVA list of ``{from, value}`` turns, or that list as a json string;
* ``id`` (optional, default the row number);
* ``image`` (optional: no column means text-only rows): an HF ``Image`` column (``{bytes, path}``), raw bytes, or a
  path string relative to ``image_folder``.

Only the id and conversation columns are read up front (the record index); an image stays in the table as a
:class:`~eaglesearch.data.image_ref.TableCell` until a loader worker decodes it, so indexing a source costs no
image memory. The needed columns are checked before anything trains (:meth:`check_more`).
"""

from __future__ import annotations

import json
from abc import abstractmethod
from pathlib import Path
from typing import Any

from eaglesearch.data.image_ref import ImageRef, TableCell
from eaglesearch.data.llava import DataProblem, Sample, parse_turns
from eaglesearch.data.sources.base import DataSource, Record, SourceIssue, register_source

DEFAULT_COLUMNS = {"id": "id", "conversations": "conversations", "image": "image"}


class _TableSource(DataSource):
    kind: str  # TableCell.kind

    def column(self, role: str) -> str:
        return self.spec.columns.get(role, DEFAULT_COLUMNS[role])  # type: ignore[call-overload]

    @abstractmethod
    def _tables(self) -> list[tuple[Path, Any]]:
        """``(file, pyarrow table)`` per stored part, in order; the image column is never materialised."""

    @abstractmethod
    def _schema_names(self) -> list[str]:
        """The column names of the stored table."""

    def check_more(self) -> list[SourceIssue]:
        try:
            names = self._schema_names()
        except (OSError, ValueError, FileNotFoundError) as err:
            return [SourceIssue("path", f"source '{self.name}' ({self.format}): cannot open '{self.path}': {err}")]
        issues = []
        for role in ("conversations", "id", "image"):
            column = self.column(role)
            required = role == "conversations" or role in self.spec.columns
            if required and column not in names:
                field = "columns" if role in self.spec.columns else "path"
                issues.append(SourceIssue(field, f"source '{self.name}' ({self.format}): '{self.path}' has no "
                                          f"'{column}' column (the {role}); columns: {', '.join(names)}; name yours "
                                          f"with columns: {{{role}: <column>}}"))
        return issues

    def records(self) -> list[Record]:
        issues = self.check_more()
        if issues:
            raise ValueError(issues[0].message)
        out: list[Record] = []
        offset = 0
        for file, table in self._tables():
            names = table.column_names
            convs = table.column(self.column("conversations")).to_pylist()
            ids = table.column(self.column("id")).to_pylist() if self.column("id") in names else None
            image_col = self.column("image") if self.column("image") in names else None
            paths = None
            if image_col is not None and _is_string(table.schema.field(image_col).type):
                paths = table.column(image_col).to_pylist()
            for row, conversations in enumerate(convs):
                sample_id = str(ids[row]) if ids is not None else str(offset + row)
                where = f"{file}: row {row} (id {sample_id!r})"
                image: ImageRef | None = None
                if paths is not None:
                    image = Path(self.spec.image_folder or ".") / paths[row] if paths[row] else None
                elif image_col is not None:
                    image = TableCell(table=file, kind=self.kind, column=image_col, row=row)
                try:
                    turns = parse_turns(_decoded(conversations), sample_id, where)
                except DataProblem as problem:
                    problem.source = self.name
                    out.append(problem)
                    continue
                out.append(Sample(id=sample_id, image=image, turns=turns, origin=where, source=self.name))
            offset += len(convs)
        return out


def _is_string(dtype: Any) -> bool:
    import pyarrow as pa

    return pa.types.is_string(dtype) or pa.types.is_large_string(dtype)


def _decoded(conversations: Any) -> Any:
    if isinstance(conversations, str):
        try:
            return json.loads(conversations)
        except json.JSONDecodeError:
            return None  # parse_turns names the record as malformed
    return conversations


@register_source
class HFDiskSource(_TableSource):
    """A ``datasets.Dataset`` saved with ``save_to_disk`` (one split: point ``path`` at its folder)."""

    format = "hf_disk"
    kind = "arrow"

    def _dataset(self) -> Any:
        try:
            from datasets import Dataset, load_from_disk
        except ImportError as err:  # an optional dependency: pip install 'eaglesearch[data]'
            raise ValueError(f"format hf_disk needs the datasets package ({err}); pip install 'eaglesearch[data]'"
                             ) from None
        dataset = load_from_disk(str(self.path))
        if not isinstance(dataset, Dataset):
            splits = ", ".join(dataset)
            raise ValueError(
                f"it holds several splits ({splits}); point path at one split's folder, "
                f"e.g. {self.path / next(iter(dataset))}")
        return dataset

    def _schema_names(self) -> list[str]:
        return list(self._dataset().column_names)

    def _tables(self) -> list[tuple[Path, Any]]:
        dataset = self._dataset()
        keep = [c for c in dataset.column_names if c in {self.column(r) for r in DEFAULT_COLUMNS}]
        return [(self.path, dataset.data.table.select(keep))]

    def count(self) -> int | None:
        if self.spec.path is None or not self.path.is_dir():
            return None
        try:
            return len(self._dataset())
        except (OSError, ValueError):
            return None


@register_source
class ParquetSource(_TableSource):
    """Parquet files: ``path`` is one file or a folder whose ``*.parquet`` files are read in name order."""

    format = "parquet"
    kind = "parquet"

    def _files(self) -> list[Path]:
        files = sorted(self.path.glob("*.parquet")) if self.path.is_dir() else [self.path]
        if not files:
            raise ValueError("the folder holds no *.parquet files")
        return files

    def _schema_names(self) -> list[str]:
        import pyarrow.parquet as pq

        return list(pq.read_schema(self._files()[0]).names)

    def _tables(self) -> list[tuple[Path, Any]]:
        import pyarrow.parquet as pq

        out = []
        for file in self._files():
            names = pq.read_schema(file).names
            wanted = [self.column(r) for r in ("id", "conversations") if self.column(r) in names]
            table = pq.read_table(file, columns=wanted)
            image = self.column("image")
            if image in names and _is_string(pq.read_schema(file).field(image).type):
                table = pq.read_table(file, columns=[*wanted, image])  # paths are small: read them with the rest
            elif image in names:
                table = table.append_column(image, _placeholder(len(table)))
            out.append((file, table))
        return out

    def count(self) -> int | None:
        import pyarrow.parquet as pq

        if self.spec.path is None or not self.path.exists():
            return None
        return sum(pq.ParquetFile(f).metadata.num_rows for f in self._files())


def _placeholder(rows: int) -> Any:
    """A stand-in for an image column that stays on disk: the records only need to know it is there."""
    import pyarrow as pa

    return pa.array([None] * rows, type=pa.binary())
