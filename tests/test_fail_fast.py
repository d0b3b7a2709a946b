"""A tracking store that cannot be used stops ``eaglesearch run`` at once: one message saying what is wrong and what
to set, exit code 2, and nothing started (no workspace, no database, no Ray, no trial).

Speed is bounded only by the subprocess timeout (the run used to hang for minutes on an unreachable server)."""

from __future__ import annotations

import http.server
import json
import os
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from eaglesearch.tracking.uri import PROBE_TIMEOUT_S, StoreUnavailable, probe_store
from tests.e2e_helpers import cli, make_project

SPACE = """\
name: fail-fast
recipe: experiments/tiny_test.yaml
strategy:
  kind: grid
  factors:
    experts: [[{name: clip, resolution: 64}]]
"""
TIMEOUT_S = 30  # generous for a 2-core CI box; the probe itself gives up after 5 s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_with_store(root: Path, uri: str):
    make_project(root, {"s": SPACE})
    return cli(root, "run", "search_spaces/s.yaml", "--tracking-uri", uri, "--quiet", timeout=TIMEOUT_S)


def assert_failed_fast(root: Path, proc, *needles: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    message = proc.stderr.strip()
    assert "Traceback" not in message
    assert message.startswith("MLflow tracking store ") and "cannot be used" in message, message
    assert "set --tracking-uri (or MLFLOW_TRACKING_URI)" in message, message
    for needle in needles:
        assert needle in message, message
    assert len(message.splitlines()) == 1, message  # one message, not a log
    assert not (root / ".eaglesearch").exists()  # no workspace, so no Ray experiment and no trial
    assert not (root / "mlflow.db").exists()


def test_unreachable_server(tmp_path: Path) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    proc = run_with_store(tmp_path, uri)
    assert_failed_fast(tmp_path, proc, uri, "nothing answers at that address")


def test_unknown_scheme(tmp_path: Path) -> None:
    proc = run_with_store(tmp_path, "mlfow://typo:5000")
    assert_failed_fast(tmp_path, proc, "'mlfow://' is not a tracking store MLflow knows")


def test_sqlite_below_a_file(tmp_path: Path) -> None:
    """The folder of the database is a file: nothing can be created there, whoever runs it."""
    (tmp_path / "occupied").write_text("a file, not a folder\n")
    proc = run_with_store(tmp_path, f"sqlite:///{tmp_path}/occupied/db/mlflow.db")
    assert_failed_fast(tmp_path, proc, f"{tmp_path / 'occupied'} is not a folder")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_sqlite_in_a_read_only_folder(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        proc = run_with_store(tmp_path, f"sqlite:///{locked}/mlflow.db")
    finally:
        locked.chmod(stat.S_IRWXU)
    assert_failed_fast(tmp_path, proc, f"cannot write in {locked}")


def test_probe_accepts_usable_stores_and_creates_nothing(tmp_path: Path) -> None:
    probe_store(f"sqlite:///{tmp_path}/new/folder/mlflow.db")  # will be created by the run, not by the probe
    assert not (tmp_path / "new").exists()
    existing = tmp_path / "mlflow.db"
    existing.write_bytes(b"")
    probe_store(f"sqlite:///{existing}")
    probe_store("sqlite://")  # in memory
    (tmp_path / "notes.db").write_text("some notes, not a database\n")
    with pytest.raises(StoreUnavailable, match="notes.db is not a SQLite database"):
        probe_store(f"sqlite:///{tmp_path}/notes.db")
    (tmp_path / "notes.db").unlink()
    for uri in (str(tmp_path / "mlruns"), f"file://{tmp_path}/mlruns"):
        with pytest.raises(StoreUnavailable, match="file store"):
            probe_store(uri)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db"]


class _Handler(http.server.BaseHTTPRequestHandler):
    """Answers what MLflow's experiment search expects, or (``hang``) never answers."""

    hang = threading.Event()

    def do_GET(self) -> None:  # the http.server API names
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        if self.hang.is_set():
            time.sleep(PROBE_TIMEOUT_S + 3)
            return
        body = json.dumps({"experiments": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def fake_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        _Handler.hang.clear()
        server.shutdown()


def test_probe_of_a_server_that_answers_and_of_one_that_hangs(fake_server: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "7")
    probe_store(fake_server)
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "7"  # the user's settings are back after the probe
    assert "MLFLOW_HTTP_REQUEST_TIMEOUT" not in os.environ
    _Handler.hang.set()
    with pytest.raises(StoreUnavailable, match=f"no answer within {PROBE_TIMEOUT_S} s"):
        probe_store(fake_server)
