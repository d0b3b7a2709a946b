"""Tracking URIs: always absolute, because Ray trials run in their own working directory."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "MLFLOW_TRACKING_URI"
DB_NAME = "mlflow.db"
_SQLITE = "sqlite:///"


def default_tracking_uri(root: Path | None = None) -> str:
    """``$MLFLOW_TRACKING_URI`` if set (made absolute), else ``sqlite:///<abs root or cwd>/mlflow.db``."""
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return absolute_uri(env)
    base = Path(root) if root is not None else Path.cwd()
    return f"{_SQLITE}{Path(os.path.abspath(base)) / DB_NAME}"


def absolute_uri(uri: str) -> str:
    """Turn ``sqlite:///relative/x.db`` into ``sqlite:////abs/relative/x.db``; leave every other URI alone.

    In-memory sqlite (``sqlite://``, ``sqlite:///:memory:``), absolute sqlite paths, servers
    (``http://``), databases (``postgresql://``) and anything else are returned unchanged.
    """
    if not uri.startswith(_SQLITE):
        return uri
    rest = uri[len(_SQLITE):]
    path, sep, query = rest.partition("?")
    if not path or path == ":memory:" or path.startswith("/"):
        return uri
    return f"{_SQLITE}{os.path.abspath(os.path.expanduser(path))}{sep}{query}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of an absolute sqlite URI, or None for any other kind of store."""
    if not uri.startswith(_SQLITE):
        return None
    path = uri[len(_SQLITE):].partition("?")[0]
    if not path.startswith("/"):
        return None
    return Path(path)
