"""Riding out a tracking server that does not answer: a bounded wait and one clear message, not a stack of retry
warnings and then a traceback.

A search on a cluster logs every trial through an MLflow server; the server (or the database behind it) may be
restarted while trials train. Every call eaglesearch makes into MLflow goes through :class:`PatientClient`: when
the server cannot be reached (connection refused or reset, a timeout, or 5xx answers past MLflow's own few
retries), the call is tried again with a growing pause, for up to ``$EAGLESEARCH_TRACKING_WAIT_S`` seconds
(default :data:`DEFAULT_WAIT_S`) from the first failure. The first failure of an outage prints one message to
stderr naming the server and what to do; a call that is still failing at the deadline raises
:class:`TrackingUnavailable` with the same advice (and no traceback from the CLI). Errors the server *answers*
with (a bad request, a missing run) are raised at once, as before.

MLflow retries a failed request itself (7 times over about four minutes by default), each retry a urllib3
warning. eaglesearch's own wait replaces that: MLflow is asked for 2 quick retries (what a database restart needs:
its requests in flight fail with 500 and succeed a second later) unless ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` is
set, and urllib3's "Retrying ..." warnings for MLflow's API paths are dropped.

A call replayed after the server committed it but could not answer may repeat its effect: a metric or tag
write is the same write again, an upload the same file, but ``create_run`` makes a second run (mlflow#8238). That
run stays RUNNING without a finished status, so it is never served as a result, and the trial's next attempt
marks it KILLED (``TrackingStore.start_trial``).
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import requests

from eaglesearch.tracking.uri import StoreUnavailable

WAIT_ENV = "EAGLESEARCH_TRACKING_WAIT_S"
DEFAULT_WAIT_S = 900.0
MLFLOW_RETRIES_ENV = "MLFLOW_HTTP_REQUEST_MAX_RETRIES"
MLFLOW_RETRIES = "2"
_MAX_PAUSE_S = 15.0
_MLFLOW_PATHS = ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow", "/api/3.0/mlflow")
_SERVER_DOWN = (requests.exceptions.ConnectionError, requests.exceptions.Timeout, requests.exceptions.RetryError)

T = TypeVar("T")
_outages: dict[str, float] = {}  # tracking URI -> when this process first found it unreachable (once per outage)
_outages_lock = threading.Lock()


class TrackingUnavailable(StoreUnavailable):
    """The tracking server did not answer within the wait; the message names it and what to do (the CLI prints it
    without a traceback, as every :class:`StoreUnavailable`)."""


def wait_s() -> float:
    """How long a call waits for an unreachable tracking server: ``$EAGLESEARCH_TRACKING_WAIT_S`` or the default."""
    raw = os.environ.get(WAIT_ENV, "").strip()
    if not raw:
        return DEFAULT_WAIT_S
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{WAIT_ENV}={raw!r} is not a number of seconds; unset it or give e.g. 600") from None
    if value < 0:
        raise ValueError(f"{WAIT_ENV}={raw!r} is negative; give the seconds to wait, e.g. 600 (0: do not wait)")
    return value


def unreachable(err: BaseException) -> bool:
    """Whether ``err`` says the server could not be reached or kept failing (not an answer about the request).

    MLflow wraps the requests error in an ``MlflowException`` (as its context or cause); walk the chain."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, _SERVER_DOWN):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


_WHAT_TO_DO = ("start it again (or check that --tracking-uri / MLFLOW_TRACKING_URI names it and that its database "
               "is up)")


def advice(uri: str) -> str:
    """The one message of an outage."""
    return (f"the MLflow tracking server at {uri} does not answer: {_WHAT_TO_DO}. Trials keep their results and log "
            f"them once it answers; waiting up to {wait_s():.0f} s ({WAIT_ENV}).")


def _announce(uri: str) -> float:
    """Note the outage of ``uri`` (printing the one message when it is new); when it began."""
    with _outages_lock:
        began = _outages.get(uri)
        if began is None:
            began = _outages[uri] = time.monotonic()
            print(f"eaglesearch: {advice(uri)}", file=sys.stderr, flush=True)
        return began


def _recovered(uri: str) -> None:
    if uri in _outages:
        with _outages_lock:
            _outages.pop(uri, None)


def call_patiently(uri: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``, waiting out an unreachable tracking server at ``uri`` (see the module docstring)."""
    pause = 1.0
    while True:
        try:
            result = fn(*args, **kwargs)
        except Exception as err:
            if not unreachable(err):
                raise
            began = _announce(uri)
            left = began + wait_s() - time.monotonic()
            if left <= 0:
                raise TrackingUnavailable(
                    uri, f"the server did not answer for {wait_s():.0f} s ({WAIT_ENV}); last error: "
                    f"{str(err)[:300]}", f"{_WHAT_TO_DO}, then run the same command again: finished trials are "
                    "served from the record") from None
            time.sleep(min(pause, left))
            pause = min(pause * 2, _MAX_PAUSE_S)
            continue
        _recovered(uri)
        return result


class PatientClient:
    """An ``MlflowClient`` (or artifact repository) whose every method waits out an unreachable server."""

    def __init__(self, client: Any, uri: str) -> None:
        self._client = client
        self._uri = uri

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def patient(*args: Any, **kwargs: Any) -> Any:
            return call_patiently(self._uri, attr, *args, **kwargs)

        return patient


class _DropMlflowRetries(logging.Filter):
    """urllib3's per-retry warnings for MLflow's API paths: the outage message says it once instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("Retrying ("):
            return True
        return not any(str(arg).startswith(_MLFLOW_PATHS) for arg in record.args or ())


_FILTER = _DropMlflowRetries()


def install() -> None:
    """Ask MLflow for few retries of its own (unless the user set how many) and drop its retry warnings; once per
    process, idempotent."""
    os.environ.setdefault(MLFLOW_RETRIES_ENV, MLFLOW_RETRIES)
    pool = logging.getLogger("urllib3.connectionpool")
    if _FILTER not in pool.filters:
        pool.addFilter(_FILTER)
