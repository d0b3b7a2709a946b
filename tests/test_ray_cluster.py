"""``--address`` against a real token-authenticated Ray head (``ray start --head`` on 127.0.0.1, in its own session,
temp dir and HOME, stopped by killing exactly that session): with the token a 1-trial search completes on the
cluster, reading its data through paths relative to the project (the head's workers start in another folder);
without the token the run stops in seconds with a message saying what to set."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from eaglesearch.data import write_synthetic
from eaglesearch.execution.local_nodes import ray_ports
from eaglesearch.spec import SyntheticDataSpec
from tests.e2e_helpers import make_project

pytestmark = pytest.mark.slow

SPACE = """\
name: on-cluster
recipe: experiments/relative.yaml
strategy:
  kind: grid
  factors:
    experts: [[{name: clip, resolution: 64}]]
resources: {cpus_per_trial: 1, max_concurrent_trials: 1}
"""
# The data as a user keeps it in a project: files under data/, named relative to the project folder.
RELATIVE_RECIPE = """\
name: relative
scale: tiny_random
model:
  grid: 4
  lm: {kind: tiny_llama, hidden_size: 32, num_layers: 1, num_heads: 2, num_kv_heads: 1, intermediate_size: 64}
  tokenizer: {kind: offline_bpe, vocab_size: 300}
data:
  source: llava
  image_size: 64
  max_length: 96
  train: {json_path: data/syn/train.json, image_folder: data/syn/images}
  eval:
    color: {kind: llava, path: data/syn/eval/color.json, image_folder: data/syn/images}
train: {steps: 2, batch_size: 8}
eval: {batch_size: 12, max_new_tokens: 3}
"""
AUTH_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in AUTH_VARS}
    env["HOME"] = str(home)
    return env


def session_pids(sid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == sid:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def stop_session(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL, every process of the head's own session (never any other Ray on this machine)."""
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        for pid in session_pids(proc.pid):
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and [p for p in session_pids(proc.pid) if _alive(p)]:
            time.sleep(0.2)
    if proc.poll() is None:
        proc.wait(timeout=5)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def token_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    """A 1-CPU Ray head with token authentication: (address, token, its temp dir)."""
    base = tmp_path_factory.mktemp("ray_head")
    token = secrets.token_hex(32)
    port = free_port()
    ray = shutil.which("ray", path=str(Path(sys.executable).parent)) or "ray"
    env = clean_env(base / "head_home") | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token,
                                          "RAY_USAGE_STATS_ENABLED": "0", "OMP_WAIT_POLICY": "PASSIVE"}
    log = base / "head.log"
    # Ray's session sockets live under --temp-dir and a Unix socket path has at most 107 bytes: pytest's (and
    # pytest-xdist's) temp paths are too long, so the session goes under a short folder of its own.
    session = Path(tempfile.mkdtemp(prefix="es-ray-"))
    with log.open("w") as sink:  # its own ports: another Ray on this machine (a parallel test) keeps the defaults
        proc = subprocess.Popen([ray, "start", "--head", "--block", "--port", str(port), "--node-ip-address",
                                 "127.0.0.1", "--num-cpus", "1", "--include-dashboard", "false",
                                 "--temp-dir", str(session), *ray_ports(8)], cwd=base, env=env, stdout=sink,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"ray start --head exited:\n{log.read_text()[-3000:]}"
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("the Ray head did not listen within 120 s")
        yield f"127.0.0.1:{port}", token, base
    finally:
        stop_session(proc)
        shutil.rmtree(session, ignore_errors=True)


def run_cli(root: Path, home: Path, *args: str, timeout: float, **extra: str) -> subprocess.CompletedProcess:
    env = clean_env(home) | {"OMP_WAIT_POLICY": "PASSIVE", "MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db",
                             "EAGLESEARCH_HOME": str(root / ".eaglesearch")} | extra
    return subprocess.run([sys.executable, "-m", "eaglesearch.cli", *args], cwd=root, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def test_with_the_token_file_a_search_runs_on_the_cluster(tmp_path: Path, token_head) -> None:
    address, token, _ = token_head
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text(token)  # what `ray get-auth-token` users keep; RAY_AUTH_MODE unset
    root = make_project(tmp_path / "project", {"s": SPACE})
    (root / "experiments" / "relative.yaml").write_text(RELATIVE_RECIPE)
    write_synthetic(SyntheticDataSpec(tasks=("color",), train_per_task=12, eval_per_task=4, image_size=64),
                    root / "data" / "syn")
    proc = run_cli(root, home, "run", "search_spaces/s.yaml", "--address", address, "--quiet", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Authentication token is missing" not in proc.stderr
    board = [line for line in (root / "reports" / "on-cluster" / "leaderboard.csv").read_text().splitlines()
             if ",answer prior," not in line]
    assert len(board) == 2 and ",finished," in board[1], board


def test_without_a_token_the_run_stops_at_once_and_says_what_to_set(tmp_path: Path, token_head) -> None:
    address, _, _ = token_head
    root = make_project(tmp_path / "project", {"s": SPACE.replace("relative.yaml", "tiny_test.yaml")})
    proc = run_cli(root, tmp_path / "empty_home", "run", "search_spaces/s.yaml", "--address", address, "--quiet",
                   timeout=30)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"the Ray cluster at {address} rejected this process" in proc.stderr
    assert "no token was found" in proc.stderr and "RAY_AUTH_TOKEN" in proc.stderr and "auth_token" in proc.stderr
    assert not (root / ".eaglesearch").exists() and not (root / "mlflow.db").exists()


PROBE = """
import sys
from eaglesearch.execution.cluster import ClusterUnavailable, prepare_cluster
try:
    prepare_cluster(sys.argv[1])
except ClusterUnavailable as err:
    print(err)
else:
    print("joined")
"""


def test_wrong_token_bad_address_and_nobody_listening_are_named(tmp_path: Path, token_head) -> None:
    """In a fresh process each: token mode, once on, stays on in a process."""
    address, token, _ = token_head

    def probe(target: str, **extra: str) -> str:
        env = clean_env(tmp_path) | extra
        done = subprocess.run([sys.executable, "-c", PROBE, target], env=env, capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert probe(address, RAY_AUTH_TOKEN=token) == "joined"
    assert "rejected the token from $RAY_AUTH_TOKEN" in probe(address, RAY_AUTH_TOKEN="not-the-token")
    assert "RAY_AUTH_MODE=disabled" in probe(address, RAY_AUTH_TOKEN=token, RAY_AUTH_MODE="disabled")
    assert f"no Ray cluster answers at 127.0.0.1:{(port := free_port())}" in probe(f"127.0.0.1:{port}")
    assert "is not host:port" in probe("localhost")
