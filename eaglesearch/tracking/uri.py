"""Tracking URIs: always absolute, because Ray trials run in their own working directory; and a probe that says in
seconds whether a store can be used at all, before a search starts anything."""

from __future__ import annotations

import os
import tempfile
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


# ---------------------------------------------------------------- probing a store before anything starts

PROBE_TIMEOUT_S = 5
_SQLITE_HEADER = b"SQLite format 3\x00"
_HTTP_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(PROBE_TIMEOUT_S)}
_FIX = ("set --tracking-uri (or MLFLOW_TRACKING_URI) to a store that works: sqlite:////absolute/path/mlflow.db "
        "for one machine, http://host:port of a running `mlflow server` for a cluster")


class StoreUnavailable(RuntimeError):
    """The tracking store cannot be reached or written; the message says what is wrong and what to set."""

    def __init__(self, uri: str, problem: str, fix: str = _FIX) -> None:
        super().__init__(f"MLflow tracking store {uri} cannot be used: {problem}; {fix}")
        self.uri, self.problem = uri, problem


def probe_store(uri: str) -> None:
    """Fail in seconds, with one clear :class:`StoreUnavailable`, when ``uri`` cannot hold a search's record.

    Why: MLflow's HTTP client retries an unreachable server for minutes before saying anything, a sqlite file in
    a read-only folder only fails at the first write (after Ray has started), and an unknown scheme fails deep
    inside the worker. Checked here: sqlite files can be created or written (without creating anything), every
    other store answers one read through MLflow with retries off and a short timeout.
    """
    uri = absolute_uri(uri)
    db = sqlite_path(uri)
    if db is not None:
        _probe_sqlite(uri, db)
        return
    if uri.startswith("sqlite://"):
        return  # in-memory sqlite: nothing to reach
    scheme = uri.partition("://")[0].lower() if "://" in uri else ""
    if scheme in ("", "file"):
        raise StoreUnavailable(uri, "it is a folder (MLflow's file store, which MLflow 3 no longer writes)")
    saved = {name: os.environ.get(name) for name in _HTTP_ENV}
    os.environ.update(_HTTP_ENV)
    try:
        from mlflow.tracking import MlflowClient

        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except Exception as err:  # noqa: BLE001 - any failure to read one page means the store is unusable
        raise StoreUnavailable(uri, _describe(err, scheme)) from None
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _describe(err: Exception, scheme: str) -> str:
    text = str(err)
    if "unsupported URI" in text or "Supported URI schemes" in text or "Unsupported URI" in text:
        return f"'{scheme}://' is not a tracking store MLflow knows"
    if isinstance(err, ModuleNotFoundError):
        return f"the database driver is not installed ({err}); pip install it"
    for needle, problem in (("Failed to establish a new connection", "nothing answers at that address"),
                            ("Connection refused", "nothing answers at that address"),
                            ("timed out", f"no answer within {PROBE_TIMEOUT_S} s"),
                            ("Read timed out", f"no answer within {PROBE_TIMEOUT_S} s"),
                            ("Name or service not known", "the host name does not resolve")):
        if needle in text:
            return problem
    first = text.strip().splitlines()[0] if text.strip() else type(err).__name__
    return f"{type(err).__name__}: {first[:300]}"


def _probe_sqlite(uri: str, db: Path) -> None:
    """The database file is writable, or its folder (the nearest existing one) lets us create it; creates nothing."""
    fix = (f"set --tracking-uri (or MLFLOW_TRACKING_URI) to a file in a writable folder, e.g. "
           f"sqlite:///{Path.cwd() / DB_NAME}")
    if db.exists():
        if not db.is_file():
            raise StoreUnavailable(uri, f"{db} is not a file", fix)
        if not os.access(db, os.R_OK | os.W_OK):
            raise StoreUnavailable(uri, f"the database file {db} is not writable", fix)
        try:
            with open(db, "rb") as handle:
                header = handle.read(len(_SQLITE_HEADER))
        except OSError as err:
            raise StoreUnavailable(uri, f"the database file {db} cannot be read ({err.strerror or err})", fix) \
                from None
        if header and header != _SQLITE_HEADER:
            raise StoreUnavailable(uri, f"{db} is not a SQLite database", fix)
    folder = db.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise StoreUnavailable(uri, f"{folder} is not a folder, so {db} cannot be created", fix)
    try:  # sqlite writes a journal beside the file, so the folder itself must take new files
        with tempfile.TemporaryFile(dir=folder, prefix=".eaglesearch-probe-"):
            pass
    except OSError as err:
        raise StoreUnavailable(uri, f"cannot write in {folder} ({err.strerror or err})", fix) from None


def create_store_once(uri: str) -> None:
    """Create (or migrate) a sqlite store's schema while holding an exclusive lock beside the file.

    Why: two searches started at once on a new database both run MLflow's schema creation and one of them dies in
    alembic ("expected to match one row when updating ... alembic_version"). Under the lock the first creates the
    tables and the second finds them. Other stores are created by their server or administrator: nothing to do.
    """
    db = sqlite_path(absolute_uri(uri))
    if db is None:
        return
    from filelock import FileLock
    from mlflow.tracking import MlflowClient

    db.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(db.parent / f".{db.name}.lock"):
        MlflowClient(tracking_uri=absolute_uri(uri)).search_experiments(max_results=1)
