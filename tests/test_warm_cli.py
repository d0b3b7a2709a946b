"""The end-to-end tests' CLI runner (``tests/support/warm_cli.py``) behaves as ``python -m eaglesearch.cli`` does:
same output and exit status, its own working directory, environment and pid, signals that reach the command alone,
and a warm interpreter of its own for an environment the preloaded libraries would read differently."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e_helpers import greedy_space, make_project
from tests.support import warm_cli

forked = pytest.mark.skipif(not warm_cli.ENABLED, reason="EAGLESEARCH_TEST_WARM_CLI=0: plain subprocesses")


def env_for(root: Path, **extra: str) -> dict[str, str]:
    return dict(os.environ, OMP_WAIT_POLICY="PASSIVE", MLFLOW_TRACKING_URI=f"sqlite:///{root}/mlflow.db",
                EAGLESEARCH_HOME=str(root / ".eaglesearch")) | extra


def test_a_command_gives_what_a_fresh_interpreter_gives(tmp_path: Path) -> None:
    root = make_project(tmp_path, {"bad": greedy_space("bad", ["convnext", "nosuchexpert"])})
    args = ["validate", "search_spaces/bad.yaml"]  # a relative path: read from the command's working directory
    cold = subprocess.run([sys.executable, "-m", "eaglesearch.cli", *args], cwd=root, env=env_for(root),
                          capture_output=True, text=True, timeout=120, check=False)
    warm = warm_cli.run(args, root, env_for(root), timeout=120)
    assert cold.returncode == warm.returncode == 2
    assert warm.stdout == cold.stdout
    # the command's own message, line for line (a library's import-time warning, if any, would come first in a cold
    # process and in the warm interpreter's log instead)
    message = cold.stderr[cold.stderr.index("invalid search space"):]
    assert warm.stderr.endswith(message) and "nosuchexpert" in message


@forked
def test_each_command_is_a_process_of_its_own_that_signals_reach(tmp_path: Path) -> None:
    root = make_project(tmp_path, {})
    port = _free_port()
    proc = warm_cli.popen(["ui", "--port", str(port)], root, env_for(root), output=root / "ui.log",
                          start_new_session=True)
    try:
        assert proc.pid not in (os.getpid(), *[h.process.pid for h in warm_cli._helpers.values()])
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline and os.getsid(proc.pid) != proc.pid:
            time.sleep(0.05)
        assert os.getsid(proc.pid) == proc.pid  # its own session, as start_new_session gives
        assert Path(f"/proc/{proc.pid}/cwd").resolve() == root.resolve()
        assert proc.poll() is None, (root / "ui.log").read_text()
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the command and the server it started
        except ProcessLookupError:  # not a session leader after all: the command alone
            proc.kill()
    assert proc.wait(timeout=30) == -signal.SIGKILL
    assert proc.communicate() == ("", "")  # its output went to the file


@forked
def test_an_environment_read_at_import_gets_its_own_warm_interpreter(tmp_path: Path) -> None:
    root = make_project(tmp_path, {})
    assert warm_cli.run(["--help"], root, env_for(root)).returncode == 0
    helpers = len(warm_cli._helpers)
    other_store = env_for(root, MLFLOW_TRACKING_URI=f"sqlite:///{root}/other.db", RAY_ADDRESS="")
    assert warm_cli.run(["--help"], root, other_store).returncode == 0
    assert len(warm_cli._helpers) == helpers  # read when the command runs: the same warm interpreter
    cache = env_for(root, HF_HOME=str(tmp_path / "hf"))
    assert warm_cli.run(["--help"], root, cache).returncode == 0
    assert len(warm_cli._helpers) == helpers + 1  # read by huggingface_hub at import: another one


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
