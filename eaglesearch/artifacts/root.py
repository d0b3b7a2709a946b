"""Where a store lives (a local folder or any fsspec URL) and the paths of its artifacts, claims and cache."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from eaglesearch.artifacts.keys import check_name

DEFAULT_CACHE_DIR = Path("~/.cache/eaglesearch/artifacts")


class StoreRoot:
    """A store's root: ``cache_dir`` is where artifacts of a remote root are downloaded (default
    ``~/.cache/eaglesearch/artifacts``); ``storage_options`` go to fsspec (credentials, endpoint...). A local root
    is used in place, without a cache."""

    def __init__(self, root: str | os.PathLike[str], *, cache_dir: str | os.PathLike[str] | None = None,
                 storage_options: Mapping[str, Any] | None = None) -> None:
        url = os.fspath(root)
        if "://" not in url and "::" not in url:
            url = str(Path(url).expanduser().absolute())
        self.url = url
        self.fs, self.root = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
        self.root = self.root.rstrip("/") or "/"
        self.is_local = isinstance(self.fs, LocalFileSystem)
        self.cache_dir = Path(cache_dir if cache_dir is not None else DEFAULT_CACHE_DIR).expanduser().absolute()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    # ------------------------------------------------------------------ paths

    def _path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts]) if self.root != "/" else "/" + "/".join(parts)

    def _artifact_path(self, kind: str, key: str) -> str:
        return self._path(check_name("kind", kind), check_name("key", key))

    def _claim_path(self, kind: str, key: str) -> str:
        return self._path(kind, f"{key}.claim")

    def _cache_path(self, kind: str, key: str) -> Path:
        return self.cache_dir / kind / key

