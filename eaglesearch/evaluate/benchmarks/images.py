"""Where a benchmark item's image comes from, and how the evaluator opens it.

An item's image is a :class:`~pathlib.Path` (a file that exists) or ``bytes`` (an encoded PNG/JPEG/...). What a
record's image cell means depends on the file format, following each harness's convention:

* json / jsonl (LLaVA): ``image`` is a path relative to the image folder;
* tsv (VLMEvalKit): ``image`` is base64 text, ``image_path`` a path relative to the image folder;
* parquet (HF datasets): ``image`` is ``{"bytes": ..., "path": ...}`` (bytes win; a path alone is a file in the
  image folder) or raw bytes; a one-element list of these is accepted (SEED-Bench stores a list of frames).

Records without an image cell name their image by id instead (GQA ``imageId``, TextVQA ``image_id``, ChartQA
``imgname``): the file ``<id>`` or ``<id>.<jpg|jpeg|png|webp>`` in the image folder, or, when the image folder is a
parquet image table (a ``.parquet`` file or a directory of only parquet shards with ``id`` and ``image`` columns,
as lmms-lab/GQA ships ``testdev_balanced_images``), that table's row with this id.

Everything is checked at load time — files exist, base64 decodes, bytes are an image PIL can identify — so a bad
record fails before any model runs, with an error naming the file, the record and the fix.
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from eaglesearch.evaluate.benchmarks.formats import Record, parquet_shards, read_parquet, scalar_text

ImageRef = Path | bytes
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
PATH_COLUMNS = ("image_path", "image_file", "imgname")


def open_image(ref: ImageRef) -> Image.Image:
    """The image as a fully loaded RGB :class:`PIL.Image.Image` (the file is closed on return)."""
    source = f"image file {ref}" if isinstance(ref, Path) else f"encoded image ({len(ref)} bytes)"
    try:
        with Image.open(ref if isinstance(ref, Path) else io.BytesIO(ref)) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError) as err:
        raise ValueError(f"{source} cannot be read as an image ({err}); re-export the benchmark's images") from None


def decode_base64(text: str, where: str) -> bytes:
    """Base64 text (whitespace ignored; a ``data:image/...;base64,`` prefix allowed) → validated image bytes."""
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    try:
        data = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as err:
        raise ValueError(f"{where}: the image is not valid base64 ({err}; starts {text[:24]!r}); the tsv 'image' "
                         "column must hold base64-encoded image bytes (or use an 'image_path' column)") from None
    return check_image_bytes(data, where)


def check_image_bytes(data: bytes, where: str) -> bytes:
    """``data`` if PIL identifies it as an image (reads the header only)."""
    try:
        with Image.open(io.BytesIO(data)):
            pass
    except (OSError, UnidentifiedImageError):
        raise ValueError(f"{where}: the image bytes ({len(data)} bytes, starting {data[:8]!r}) are not an image "
                         "PIL can read; re-export the benchmark's images as PNG/JPEG") from None
    return data


@dataclass
class ImageStore:
    """The image folder of a benchmark: a directory of files, or a parquet table of images keyed by ``id``."""

    root: Path | None
    table: dict[str, Any] | None = field(default=None, repr=False)

    @classmethod
    def at(cls, root: Path | None) -> ImageStore:
        if root is None:
            return cls(None)
        root = Path(root)
        parquet_file = root.is_file() and root.suffix.lower() == ".parquet"
        parquet_dir = root.is_dir() and bool(parquet_shards(root)) and not any(
            p.suffix.lower() in IMAGE_SUFFIXES for p in root.iterdir())
        if parquet_file or parquet_dir:
            rows = read_parquet(root)
            if rows and not {"id", "image"} <= set(rows[0]):
                raise ValueError(f"{root}: a parquet image folder needs 'id' and 'image' columns (lmms-lab/GQA "
                                 f"testdev_balanced_images); it has {sorted(rows[0])}")
            return cls(root, {scalar_text(row["id"]): row["image"] for row in rows})
        if not root.is_dir():
            raise ValueError(f"image folder {root} does not exist (or is not a directory or a parquet image "
                             "table); pass the folder the benchmark's image paths are relative to")
        return cls(root)

    def file(self, name: str, where: str, column: str) -> Path:
        """The image file ``name`` (relative to the folder, or absolute), which must exist."""
        path = Path(name)
        if not path.is_absolute():
            if self.root is None:
                raise ValueError(f"{where}: {column!r} is the relative path {name!r}, but no image folder was "
                                 "given; pass image_folder (the directory these paths are relative to)")
            if self.table is not None:
                raise ValueError(f"{where}: {column!r} is the relative path {name!r}, but the image folder "
                                 f"{self.root} is a parquet table of images by id; pass the directory these paths "
                                 "are relative to")
            path = self.root / path
        if not path.is_file():
            raise ValueError(f"{where}: image file {path} does not exist; fix the record's {column!r} or pass the "
                             f"right image_folder (now {self.root})")
        return path

    def by_id(self, image_id: str, where: str, column: str) -> ImageRef:
        """The image named ``image_id``: a row of the parquet table, or ``<id>[.ext]`` in the folder."""
        if self.root is None:
            raise ValueError(f"{where}: the record names its image only by {column!r} = {image_id!r}; pass "
                             "image_folder (a directory holding <id>.jpg files, or a parquet table of id/image)")
        if self.table is not None:
            if image_id not in self.table:
                raise ValueError(f"{where}: image id {image_id!r} ({column!r}) is not in the image table "
                                 f"{self.root}; pass the image table of the same split")
            return image_value(self.table[image_id], self, where, column, strings="path")
        for suffix in ("", *IMAGE_SUFFIXES):
            candidate = self.root / f"{image_id}{suffix}"
            if candidate.is_file():
                return candidate
        raise ValueError(f"{where}: no image named {image_id!r} ({column!r}) in {self.root} (looked for the name "
                         f"as is and with {', '.join(IMAGE_SUFFIXES)}); pass the folder that holds the images")


def image_value(value: Any, store: ImageStore, where: str, column: str, *, strings: str) -> ImageRef:
    """One image cell → path or bytes. ``strings`` says what a text cell is: ``"path"`` or ``"base64"``."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return check_image_bytes(bytes(value), where)
    if isinstance(value, dict):
        if value.get("bytes") is not None:
            return check_image_bytes(bytes(value["bytes"]), where)
        if value.get("path"):
            return store.file(str(value["path"]), where, column)
        raise ValueError(f"{where}: {column!r} is an image object with neither 'bytes' nor 'path'; re-export the "
                         "dataset with its images embedded")
    if isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise ValueError(f"{where}: {column!r} holds {len(value)} images; a benchmark item has exactly one "
                             "image, so keep single-image questions only")
        return image_value(value[0], store, where, column, strings=strings)
    if isinstance(value, str):
        if strings == "base64":
            if value.lstrip().startswith("["):
                raise ValueError(f"{where}: {column!r} holds a list of images; a benchmark item has exactly one "
                                 "image, so keep single-image questions only")
            return decode_base64(value, where)
        return store.file(value, where, column)
    raise ValueError(f"{where}: {column!r} is a {type(value).__name__}, not an image (expected a path, base64 text "
                     "or image bytes)")


def record_image(record: Record, store: ImageStore, id_columns: Sequence[str] = ()) -> ImageRef:
    """The record's image (see the module docstring for the column conventions); it must have one."""
    fmt = record.table.format
    if record.column("image") is not None:
        return image_value(record.data["image"], store, record.where, "image",
                           strings="base64" if fmt == "tsv" else "path")
    column = record.column(*PATH_COLUMNS)
    if column is not None:
        return store.file(record.text(column), record.where, column)
    column = record.column(*id_columns)
    if column is not None:
        return store.by_id(record.text(column), record.where, column)
    looked = ", ".join(repr(c) for c in ("image", *PATH_COLUMNS, *id_columns))
    raise record.error(f"has no image (looked for {looked}); every benchmark item needs one image — drop "
                       "text-only questions or add the image column")
