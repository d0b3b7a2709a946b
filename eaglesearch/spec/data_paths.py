"""Relative data paths made absolute where they are declared, before a trial leaves the driver.

A trial may run on another machine, in another working directory (a Ray worker node, a Tune trial folder): a
relative ``data/sft/llava.json`` there names a different file, or none. So every data path a recipe or a search
space writes (training, caption and mixture sources: ``path``, ``json_path``, ``image_folder``; benchmarks: ``path``,
``image_folder``) is made absolute when the YAML is loaded, the way a recipe reference is found
(``spec/load.py``): relative to the folder of the file that declared it, then that folder's parent (a project's
``experiments/`` and ``search_spaces/`` sit beside its ``data/``), then the working directory; the first place
where it exists wins. A path that exists in none of them (its files are only on the cluster's nodes) is taken
relative to the working directory, which is what it meant before it was made absolute.

URLs (``s3://...``), ``~`` paths (each node's own home) and absolute paths are left as written. For a shard
pattern (``shards-{000..099}.tar``, ``*.tar``) the folder holding the pattern is what must exist.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eaglesearch.spec.data import BenchmarkSplitSpec, DataSpec, LlavaSplitSpec
from eaglesearch.spec.sources import SourceSpec

_PATTERN_CHARS = frozenset("*?[{")


def declared_roots(yaml_path: str | Path) -> tuple[Path, ...]:
    """Where a relative path written in ``yaml_path`` is looked for: its folder, that folder's parent, the cwd."""
    folder = Path(os.path.abspath(yaml_path)).parent
    return folder, folder.parent, Path.cwd()


def _exists(candidate: Path) -> bool:
    """The path exists; for a shard pattern, the folder above its first pattern part does."""
    parts = candidate.parts
    for i, part in enumerate(parts):
        if _PATTERN_CHARS & set(part):
            return Path(*parts[:i]).is_dir()
    return candidate.exists()


def absolute_path(value: str | None, roots: Sequence[Path]) -> str | None:
    """``value`` made absolute against the first of ``roots`` where it exists (else the working directory);
    None, URLs, ``~`` paths and absolute paths as they are."""
    if value is None or "://" in value or value.startswith("~") or os.path.isabs(value):
        return value
    for root in roots:
        if _exists(Path(root) / value):
            return os.path.abspath(Path(root) / value)
    return os.path.abspath(value)


def _copy(model: Any, roots: Sequence[Path], *fields: str) -> Any:
    """``model`` with each of ``fields`` made absolute; the very same object when nothing changed."""
    update = {f: absolute_path(getattr(model, f), roots) for f in fields}
    update = {f: v for f, v in update.items() if v != getattr(model, f)}
    return model.model_copy(update=update) if update else model


def _source(source: SourceSpec, roots: Sequence[Path]) -> SourceSpec:
    return _copy(source, roots, "path", "image_folder")


def _split(split: LlavaSplitSpec | dict[str, SourceSpec] | None,
           roots: Sequence[Path]) -> LlavaSplitSpec | dict[str, SourceSpec] | None:
    if isinstance(split, LlavaSplitSpec):
        return _copy(split, roots, "json_path", "image_folder")
    if split is None:
        return None
    return {name: _source(source, roots) for name, source in split.items()}


def absolute_data_paths(data: DataSpec, roots: Sequence[Path]) -> DataSpec:
    """``data`` with every relative source and benchmark path made absolute (see the module docstring)."""
    benchmark: dict[str, BenchmarkSplitSpec] = {name: _copy(b, roots, "path", "image_folder")
                                                for name, b in data.eval.items()}
    update: dict[str, Any] = {
        "train": _split(data.train, roots), "caption": _split(data.caption, roots), "eval": benchmark,
        "mixtures": {name: {s: _source(src, roots) for s, src in sources.items()}
                     for name, sources in data.mixtures.items()},
    }
    update = {f: v for f, v in update.items() if v != getattr(data, f)}
    return data.model_copy(update=update) if update else data
