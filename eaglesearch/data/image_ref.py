"""Where a sample's image is: a file, bytes held by a table row, or a member of a tar shard.

Sources (``data/sources``) attach one of these to each record instead of decoding anything, so a record index of
a million samples holds only paths and offsets. :func:`open_image` is the one place an image is opened; the
decode-and-resize entry point (``data.dataset.load_image``) and the image check of the data policy both call it,
and both run wherever the sample is needed (a loader worker, at scale).

Every reference is small and picklable: it crosses into DataLoader worker processes with the record.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageFile


@dataclass(frozen=True)
class ImageBytes:
    """An encoded image (JPEG/PNG/...) carried by the record itself, e.g. an HF ``Image`` column's ``bytes``."""

    data: bytes = field(repr=False)
    name: str = ""  # the row's original file name, when the table kept one (messages only)

    def __str__(self) -> str:
        return f"<{len(self.data)} image bytes{' ' + self.name if self.name else ''}>"


@dataclass(frozen=True)
class TarMember:
    """One member of a tar shard (webdataset layout): its bytes are read at their offset when the sample is used,
    without scanning the shard again."""

    shard: Path
    member: str
    offset: int  # of the member's data in the (uncompressed) tar file
    size: int

    def __str__(self) -> str:
        return f"{self.shard}:{self.member}"


@dataclass(frozen=True)
class TableCell:
    """An image column's cell of a table source, read when the sample is used: ``arrow`` is a folder written by
    ``datasets.save_to_disk`` (memory-mapped), ``parquet`` one parquet file (the row's row group is read). The
    cell holds ``{bytes, path}`` (an HF ``Image`` column) or just encoded bytes."""

    table: Path
    kind: str  # "arrow" or "parquet"
    column: str
    row: int

    def __str__(self) -> str:
        return f"{self.table}[{self.row}].{self.column}"


ImageRef = Path | ImageBytes | TarMember | TableCell


def image_exists(ref: ImageRef) -> bool:
    """Whether the reference points at something (cheap: a stat for files; bytes and tar members were found when
    the record was read)."""
    return Path(ref).is_file() if isinstance(ref, (str, Path)) else True


def open_image(ref: ImageRef | str) -> Image.Image:
    """The referenced image, opened lazily by PIL (use it as a context manager; ``.load()`` or ``.convert()``
    decodes it). Raises ``OSError``/``ValueError`` (PIL's) when it cannot be read."""
    if isinstance(ref, ImageBytes):
        return Image.open(io.BytesIO(ref.data))
    if isinstance(ref, TarMember):
        with open(ref.shard, "rb") as shard:
            shard.seek(ref.offset)
            data = shard.read(ref.size)
        if len(data) != ref.size:
            raise OSError(f"{ref}: the shard ends before the member does (truncated tar)")
        return Image.open(io.BytesIO(data))
    if isinstance(ref, TableCell):
        cell = _arrow_cell(ref) if ref.kind == "arrow" else _parquet_cell(ref)
        if isinstance(cell, dict):
            if cell.get("bytes") is None:
                if cell.get("path") is None:
                    raise OSError(f"{ref}: the image cell is empty")
                return Image.open(cell["path"])
            cell = cell["bytes"]
        if not isinstance(cell, bytes):
            raise OSError(f"{ref}: the image cell holds {type(cell).__name__}, not image bytes")
        return Image.open(io.BytesIO(cell))
    return Image.open(ref)


@functools.lru_cache(maxsize=8)
def _arrow_table(folder: Path) -> Any:  # datasets is imported lazily (an optional dependency)
    from datasets import load_from_disk  # memory-maps the arrow files; per process (each loader worker its own)

    return load_from_disk(str(folder)).data


def _arrow_cell(ref: TableCell) -> object:
    return _arrow_table(ref.table).column(ref.column)[ref.row].as_py()


@functools.lru_cache(maxsize=8)
def _parquet_file(path: Path) -> tuple[Any, list[int]]:
    import pyarrow.parquet as pq

    handle = pq.ParquetFile(path)
    starts = [0]
    for i in range(handle.num_row_groups):
        starts.append(starts[-1] + handle.metadata.row_group(i).num_rows)
    return handle, starts


@functools.lru_cache(maxsize=2)
def _row_group(path: Path, column: str, group: int) -> list[object]:
    handle, _ = _parquet_file(path)
    return handle.read_row_group(group, columns=[column]).column(column).to_pylist()


def _parquet_cell(ref: TableCell) -> object:
    _, starts = _parquet_file(ref.table)
    group = bisect.bisect_right(starts, ref.row) - 1
    return _row_group(ref.table, ref.column, group)[ref.row - starts[group]]


@contextlib.contextmanager
def strict_decoding() -> Iterator[None]:
    """Decode images strictly here, whatever another library set: PIL's process-wide ``LOAD_TRUNCATED_IMAGES``
    (lmms-eval sets it to True on import) would otherwise turn a truncated file into a silently grey image instead
    of the sample's ``unreadable_image`` problem. Decoding runs in this process's main thread or a loader worker."""
    before = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = before


def decode_rgb(ref: ImageRef | str) -> Image.Image:
    """The referenced image decoded (strictly, see :func:`strict_decoding`) to RGB."""
    with strict_decoding(), open_image(ref) as image:
        return image.convert("RGB")
