"""A tracking server that does not answer (``eaglesearch/tracking/patience.py``): calls wait a bounded time, one
clear message names the server and what to do, and the final error is a :class:`StoreUnavailable` the CLI prints
without a traceback. Recovery on a real server restarted mid-search: ``tests/test_cluster.py``."""

from __future__ import annotations

import logging
import socket

import pytest

from eaglesearch.tracking import TrackingStore
from eaglesearch.tracking.patience import WAIT_ENV, TrackingUnavailable, call_patiently, unreachable
from eaglesearch.tracking.uri import StoreUnavailable


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_server_is_waited_for_a_bounded_time_with_one_message(
        monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv(WAIT_ENV, "2")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")  # MLflow's own retries at once: a fast test
    url = f"http://127.0.0.1:{_closed_port()}"
    store = TrackingStore(url)
    caplog.set_level(logging.WARNING)
    for _ in range(2):  # the outage goes on: the second call prints nothing new
        with pytest.raises(TrackingUnavailable) as err:
            store.ensure_experiment("nobody-answers")
        assert isinstance(err.value, StoreUnavailable)  # what the CLI prints as a message, not a traceback
        assert url in str(err.value) and "start it again" in str(err.value) and WAIT_ENV in str(err.value)
    stderr = capfd.readouterr().err
    assert stderr.count(f"the MLflow tracking server at {url} does not answer") == 1, stderr
    assert "Traceback" not in stderr and "Retrying (" not in stderr + caplog.text  # no urllib3 retry warnings


def test_an_answer_about_the_request_is_raised_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only an unreachable server is waited for: an error the server answers with is the caller's at once."""
    from mlflow.exceptions import MlflowException

    monkeypatch.setenv(WAIT_ENV, "600")
    calls: list[int] = []

    def refused() -> None:
        calls.append(1)
        raise MlflowException("RESOURCE_DOES_NOT_EXIST: Run '0000' not found")

    with pytest.raises(MlflowException):
        call_patiently("http://127.0.0.1:1", refused)
    assert calls == [1]
    assert call_patiently("http://127.0.0.1:1", lambda: "ok") == "ok"
    assert not unreachable(ValueError("x"))
