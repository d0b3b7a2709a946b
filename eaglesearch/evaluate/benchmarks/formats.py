"""Read a benchmark file into records: json, jsonl, VLMEvalKit tsv, HF-datasets parquet.

The four on-disk families the evaluation harnesses ship (reference/codebases.md §D–E):

* ``.json`` — a list of records (LLaVA question/conversation files, ChartQA ``test_human.json``); also a dict whose
  ``"questions"`` or ``"data"`` key holds that list (SEED-Bench.json, TextVQA ``TextVQA_0.5.1_val.json``), or a dict
  mapping id → record (GQA ``testdev_balanced_questions.json``; the key becomes the record's ``"id"`` unless it has
  one).
* ``.jsonl`` — one json object per line (LLaVA question files, POPE ``coco_pope_*.json`` when named ``.jsonl``);
  blank lines are skipped.
* ``.tsv`` — VLMEvalKit: one row per question, every cell read as text (empty cell = missing; "None", "NA" stay
  text). Its ``image`` column holds a base64-encoded image, or, to save space, the ``index`` of another row whose
  image it shares (VLMEvalKit ``ImageBaseDataset``: a value of at most 64 characters is such a reference); those
  references are resolved here, so every row carries its own base64 text. An ``image_path`` column holds a path
  relative to the image folder instead.
* ``.parquet`` — Hugging Face datasets (lmms-eval's ``lmms-lab/*``), read with pyarrow into plain Python values:
  an ``Image`` feature arrives as ``{"bytes": ..., "path": ...}``, a list column as a list. A directory is read as
  the parquet shards directly inside it (``dev-00000-of-00002.parquet`` ...), in name order.

Readers only parse; what a column means is the loaders' business (``vqa.py``, ``choice.py``, ...). They get rows
as :class:`Record` objects, whose accessors raise errors naming the file, the record (position and id) and the fix.
"""

from __future__ import annotations

import ast
import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Format = Literal["json", "jsonl", "tsv", "parquet"]
SUFFIXES: dict[str, Format] = {".json": "json", ".jsonl": "jsonl", ".tsv": "tsv", ".parquet": "parquet"}
TSV_IMAGE_REFERENCE_MAX = 64  # VLMEvalKit: an `image` cell this short is the index of the row holding the image
JSON_LIST_KEYS = ("questions", "data")

Row = dict[str, Any]


@dataclass(frozen=True)
class Table:
    """A benchmark file's rows as plain dicts, with where they came from."""

    path: Path
    format: Format
    rows: tuple[Row, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        """Every key any row has, in first-seen order."""
        seen: dict[str, None] = {}
        for row in self.rows:
            seen.update(dict.fromkeys(row))
        return tuple(seen)


def read_table(path: Path) -> Table:
    """Read ``path`` by its suffix (a directory: parquet shards); errors name the file and what to fix."""
    path = Path(path)
    fmt = detect_format(path)
    reader = {"json": read_json, "jsonl": read_jsonl, "tsv": read_tsv, "parquet": read_parquet}[fmt]
    return Table(path=path, format=fmt, rows=tuple(reader(path)))


def detect_format(path: Path) -> Format:
    if path.is_dir():
        if not parquet_shards(path):
            raise ValueError(f"{path}: a directory, but it holds no .parquet files; pass a .json, .jsonl, .tsv or "
                             ".parquet file, or a directory of parquet shards")
        return "parquet"
    if not path.is_file():
        raise ValueError(f"{path}: file not found; check the benchmark path")
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unknown benchmark file type {path.suffix!r}; supported: "
                         f"{', '.join(sorted(SUFFIXES))} (rename the file if its content is one of these)")
    return fmt


def parquet_shards(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() == ".parquet")


def read_json(path: Path) -> list[Row]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid json ({err}); a .json benchmark file holds a list of records "
                         "(use .jsonl for one object per line)") from None
    if isinstance(data, dict):
        key = next((k for k in JSON_LIST_KEYS if isinstance(data.get(k), list)), None)
        if key is not None:
            data = data[key]
        elif data and all(isinstance(v, dict) for v in data.values()):
            data = [{"id": k, **v} if "id" not in v else v for k, v in data.items()]
        else:
            raise ValueError(f"{path}: the top level is an object without a record list; expected a list of "
                             f"records, an object with a {' or '.join(map(repr, JSON_LIST_KEYS))} list, or an "
                             "object mapping id → record")
    if not isinstance(data, list):
        raise ValueError(f"{path}: the top level is a {type(data).__name__}; expected a list of records")
    for i, row in enumerate(data):
        if not isinstance(row, dict):
            raise ValueError(f"{path}: record {i} is a {type(row).__name__}; every record must be a json object")
    return data


def read_jsonl(path: Path) -> list[Row]:
    rows: list[Row] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err}); a .jsonl file holds one json object per line") from None
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: line {n} (record {len(rows)}) is not valid json ({err}); each line must be "
                             "one json object") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}: line {n} (record {len(rows)}) is a {type(row).__name__}; each line must be "
                             "one json object")
        rows.append(row)
    return rows


def read_tsv(path: Path) -> list[Row]:
    import pandas as pd

    try:
        frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=csv.QUOTE_MINIMAL)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a readable tab-separated file ({err}); VLMEvalKit tsv files have a header "
                         "row and one question per line") from None
    rows: list[Row] = [{k: (v if v != "" else None) for k, v in row.items()} for row in frame.to_dict("records")]
    if "image" in frame.columns:
        _resolve_tsv_image_references(path, rows)
    return rows


def _resolve_tsv_image_references(path: Path, rows: list[Row]) -> None:
    """Replace every short ``image`` cell (the index of the row holding the image) by that row's base64 text."""
    by_index = {row.get("index"): row.get("image") for row in rows if row.get("index") is not None}
    for i, row in enumerate(rows):
        value = row.get("image")
        if value is None or len(value) > TSV_IMAGE_REFERENCE_MAX:
            continue
        target = by_index.get(value)
        if target is None or len(target) <= TSV_IMAGE_REFERENCE_MAX:
            where = f"{path}: record {i}" + (f" (index {row['index']!r})" if row.get("index") is not None else "")
            raise ValueError(f"{where}: image {value!r} is too short to be base64 and names no row (by 'index') "
                             "that holds an image; put the base64-encoded image in the 'image' cell, or the "
                             "index of a row that has one")
        row["image"] = target


def read_parquet(path: Path) -> list[Row]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows: list[Row] = []
    for shard in parquet_shards(path) if path.is_dir() else [path]:
        try:
            rows += pq.read_table(shard).to_pylist()
        except (pa.ArrowException, OSError) as err:
            raise ValueError(f"{shard}: not a readable parquet file ({err}); pass a Hugging Face datasets parquet "
                             "file (or its directory of shards)") from None
    return rows


# ---------------------------------------------------------------------------------------------------------------
# records


def scalar_text(value: Any) -> str:
    """A scalar cell as text: ints as digits (``7.0`` → ``"7"``, as json/pandas may widen them), others ``str``."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def choose_id_field(rows: Sequence[Mapping[str, Any]], candidates: Sequence[str]) -> str | None:
    """The first candidate column that every row has and whose values are all distinct; ``None`` if none is.

    Decided on the whole file (never on a ``limit``-ed prefix), so an item's id does not depend on the limit.
    """
    for name in candidates:
        values = [row.get(name) for row in rows]
        if values and all(v is not None and v != "" for v in values):
            texts = [scalar_text(v) for v in values]
            if len(set(texts)) == len(texts):
                return name
    return None


@dataclass(frozen=True)
class Record:
    """One row of a :class:`Table`: its position, its id, and accessors whose errors say where and how to fix."""

    table: Table
    position: int
    key: str  # the row's id (the file's id field, else its position)
    data: Mapping[str, Any]

    @property
    def where(self) -> str:
        return f"{self.table.path}: record {self.position} (id {self.key!r})"

    def error(self, problem: str) -> ValueError:
        return ValueError(f"{self.where}: {problem}")

    def column(self, *names: str) -> str | None:
        """The first of ``names`` this record has a value for (not missing, ``None`` or an empty string)."""
        return next((n for n in names if self.data.get(n) is not None and self.data.get(n) != ""), None)

    def get(self, *names: str) -> Any:
        name = self.column(*names)
        return None if name is None else self.data[name]

    def require(self, *names: str, fix: str = "") -> Any:
        name = self.column(*names)
        if name is None:
            also = f" (or {', '.join(map(repr, names[1:]))})" if len(names) > 1 else ""
            present = ", ".join(map(repr, self.data)) or "none"
            raise self.error(f"no {names[0]!r} value{also}; columns present: {present}"
                             + (f"; {fix}" if fix else ""))
        return self.data[name]

    def text(self, *names: str, fix: str = "") -> str:
        """A required scalar column as text."""
        value = self.require(*names, fix=fix)
        if isinstance(value, (dict, list, tuple, bytes)):
            raise self.error(f"{self.column(*names)!r} must be a single text value, got a {type(value).__name__}")
        return scalar_text(value)

    def optional_text(self, *names: str) -> str | None:
        value = self.get(*names)
        return None if value is None or isinstance(value, (dict, list, tuple, bytes)) else scalar_text(value)

    def text_list(self, *names: str, fix: str = "") -> list[str]:
        """A required list-of-text column: a list (its dict elements' ``"answer"``, as in VQAv2's answer dicts), a
        python/json list literal (VLMEvalKit writes ``str(list)`` into tsv cells), or a single text value."""
        name = self.column(*names)
        value = self.require(*names, fix=fix)
        if isinstance(value, str) and value.lstrip().startswith("["):
            try:
                value = ast.literal_eval(value.strip())
            except (ValueError, SyntaxError):
                raise self.error(f"{name!r} looks like a list but does not parse ({value[:80]!r}); write it as a "
                                 "json or python list of strings") from None
        if not isinstance(value, (list, tuple)):
            return [scalar_text(value)]
        out = []
        for element in value:
            if isinstance(element, dict):
                if "answer" not in element:
                    raise self.error(f"{name!r} holds an object without an 'answer' key ({element!r})")
                element = element["answer"]
            if element is None or isinstance(element, (dict, list, tuple, bytes)):
                raise self.error(f"{name!r} must hold text values, got {element!r}")
            out.append(scalar_text(element))
        if not out:
            raise self.error(f"{name!r} is an empty list" + (f"; {fix}" if fix else ""))
        return out


def records(table: Table, id_fields: Sequence[str]) -> list[Record]:
    """The table's rows as records, keyed by the first usable id field (see :func:`choose_id_field`)."""
    field = choose_id_field(table.rows, id_fields)
    return [Record(table, i, scalar_text(row[field]) if field else str(i), row) for i, row in enumerate(table.rows)]


def split_from_file_name(path: Path, splits: tuple[str, ...]) -> str | None:
    """The one split name that occurs in the file's name (e.g. ``coco_pope_adversarial.jsonl``), else None."""
    name = path.name.lower()
    found = [split for split in splits if split in name]
    return found[0] if len(found) == 1 else None
