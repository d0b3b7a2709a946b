"""The CLI in a fresh process forked from a warm interpreter, for end-to-end tests.

A test that runs ``python -m eaglesearch.cli ...`` pays about 8 CPU-seconds of imports (torch, torchvision, timm,
transformers, mlflow) before the command does anything; the end-to-end tests start some 50 such processes. Here a
helper interpreter per pytest worker imports those libraries once, then forks one child per command. The child is a
real process of its own (its own pid, working directory, environment, stdout/stderr files and exit status; signals
sent to it act on it alone), and it runs the CLI exactly as ``python -m eaglesearch.cli`` would, through ``runpy``:
eaglesearch itself is imported fresh in every child, after the child's environment and working directory are set.

What is shared is only what the listed libraries did at import, which can depend on the environment (cache folders,
offline flags, thread settings). So a warm interpreter serves only commands whose environment equals its own apart
from the variables the libraries read when a command runs (``RUNTIME_PREFIXES``); any other environment gets a warm
interpreter of its own. ``EAGLESEARCH_TEST_WARM_CLI=0`` runs every command as a plain subprocess instead.

The helpers are stopped by pid when the pytest process exits.
"""

from __future__ import annotations

import atexit
import json
import os
import runpy
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PRELOAD = ("numpy", "pandas", "pydantic", "yaml", "PIL.Image", "torch", "torchvision", "timm", "transformers",
           "transformers.modeling_utils", "safetensors.torch", "mlflow")
"""Imported once by the warm interpreter. Ray is not among them: it reads its ``RAY_*`` settings at import."""

RUNTIME_PREFIXES = ("MLFLOW_TRACKING_URI", "EAGLESEARCH_", "RAY_", "TUNE_", "PYTEST_")
"""Environment variables read when a command runs, never at a preloaded library's import: they may differ per
command. Ray is imported by the command itself, after its environment is set."""

NOT_PRELOADED = ("ray", "eaglesearch")

ENABLED = os.environ.get("EAGLESEARCH_TEST_WARM_CLI", "1") != "0"


def _import_signature(env: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in env.items() if not k.startswith(RUNTIME_PREFIXES)))


class _Helper:
    """One warm interpreter (a child of this process) and the Unix socket it listens on."""

    def __init__(self, env: dict[str, str]) -> None:
        self.folder = tempfile.mkdtemp(prefix="eaglesearch-warm-")
        self.address = os.path.join(self.folder, "socket")
        with open(os.path.join(self.folder, "log"), "w") as log:
            self.process = subprocess.Popen([sys.executable, __file__, self.address], env=env,
                                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)

    def connect(self, timeout: float = 120.0) -> socket.socket:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                log = Path(self.folder, "log").read_text()
                raise RuntimeError(f"the warm CLI interpreter exited ({self.process.returncode}):\n{log}")
            try:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(self.address)
                return sock
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


_helpers: dict[tuple[tuple[str, str], ...], _Helper] = {}


@atexit.register
def _stop_helpers() -> None:
    for helper in _helpers.values():
        helper.stop()
    _helpers.clear()


class WarmProcess:
    """A command forked from a warm interpreter: the part of ``subprocess.Popen`` the tests use (pid, poll, wait,
    send_signal, kill, communicate). stdout and stderr go to files, read by ``communicate``."""

    def __init__(self, args: list[str], cwd: Path | str, env: dict[str, str], output: Path | None = None,
                 start_new_session: bool = False) -> None:
        self.args = [sys.executable, "-m", "eaglesearch.cli", *args]
        self.returncode: int | None = None
        self._outputs = [str(output)] * 2 if output is not None else [_scratch_file(".out"), _scratch_file(".err")]
        self._captured = output is None
        signature = _import_signature(env)
        helper = _helpers.get(signature)
        if helper is None or helper.process.poll() is not None:
            helper = _helpers[signature] = _Helper(env)
        self._sock = helper.connect()
        request = {"argv": list(args), "cwd": str(Path(cwd).resolve()), "env": env,
                   "stdout": self._outputs[0], "stderr": self._outputs[1], "new_session": start_new_session}
        self._sock.sendall(json.dumps(request).encode() + b"\n")
        self._reader = self._sock.makefile("r")
        self.pid = int(json.loads(self._reader.readline())["pid"])

    def poll(self) -> int | None:
        if self.returncode is None and select.select([self._sock], [], [], 0)[0]:
            self._read_status()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            if not select.select([self._sock], [], [], timeout)[0]:
                raise subprocess.TimeoutExpired(self.args, timeout)
            self._read_status()
        assert self.returncode is not None
        return self.returncode

    def _read_status(self) -> None:
        line = self._reader.readline()
        if not line:
            raise RuntimeError("the warm CLI interpreter went away before reporting the command's exit status")
        self.returncode = int(json.loads(line)["status"])
        self._reader.close()
        self._sock.close()

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        """Wait, then the captured stdout and stderr (empty strings where the output went to a file)."""
        self.wait(timeout)
        if not self._captured:
            return "", ""
        out, err = (Path(path).read_text(errors="replace") for path in self._outputs)
        for path in self._outputs:
            os.unlink(path)
        self._captured, self._outputs = False, []
        return out, err


Process = WarmProcess | subprocess.Popen
"""A started command: forked warm, or a plain subprocess where that is disabled."""


def _scratch_file(suffix: str) -> str:
    fd, path = tempfile.mkstemp(prefix="eaglesearch-cli-", suffix=suffix)
    os.close(fd)
    return path


def popen(args: list[str], cwd: Path | str, env: dict[str, str], output: Path | None = None,
          start_new_session: bool = False) -> Process:
    """Start ``python -m eaglesearch.cli *args`` (forked warm unless disabled). stdout and stderr are captured for
    ``communicate``, or both written to ``output``; ``start_new_session`` as in ``subprocess.Popen`` (a test can then
    signal the command and everything it started with ``os.killpg``). SIGINT is Python's default handler, as for a
    command started from a terminal."""
    if not ENABLED:
        command = [sys.executable, "-m", "eaglesearch.cli", *args]
        # An ignored SIGINT survives exec (an earlier in-process Ray test can leave it ignored); a handler set here
        # while the command starts is reset to the default in it, under which Python installs KeyboardInterrupt.
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            if output is None:
                return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True, start_new_session=start_new_session)
            with open(output, "w") as log:
                return subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=start_new_session)
        finally:
            signal.signal(signal.SIGINT, previous)
    return WarmProcess(args, cwd, env, output, start_new_session)


def run(args: list[str], cwd: Path | str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    """``subprocess.run(capture_output=True, text=True)`` for the CLI: on timeout the command is killed and
    ``subprocess.TimeoutExpired`` carries what it had written."""
    proc = popen(args, cwd, env)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise subprocess.TimeoutExpired(proc.args, timeout, output=out, stderr=err) from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


# ---- the warm interpreter itself (run as a script by _Helper) ----

def _serve(address: str) -> dict | None:
    """Accept requests until the parent goes away; in each forked child, return that child's request."""
    parent = os.getppid()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address)
    listener.listen(16)
    waiting: dict[int, socket.socket] = {}
    while os.getppid() == parent:
        readable, _, _ = select.select([listener], [], [], 0.05)
        if readable:
            conn, _ = listener.accept()
            request = json.loads(conn.makefile("r").readline())
            pid = os.fork()
            if pid == 0:
                listener.close()
                conn.close()
                for other in waiting.values():
                    other.close()
                return request
            conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
            waiting[pid] = conn
        while waiting:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            conn = waiting.pop(pid, None)
            if conn is not None:
                try:
                    conn.sendall(json.dumps({"status": os.waitstatus_to_exitcode(status)}).encode() + b"\n")
                except OSError:
                    pass  # the test went away
                conn.close()
    return None


def _become(request: dict) -> None:
    """In the forked child: take the command's working directory, environment and output files, then run the CLI as
    ``python -m eaglesearch.cli`` does."""
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    opened = {os.devnull: os.open(os.devnull, os.O_RDONLY)}
    for fd, path in ((0, os.devnull), (1, request["stdout"]), (2, request["stderr"])):
        if path not in opened:  # stdout and stderr may be one file
            opened[path] = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(opened[path], fd)
    for target in opened.values():
        os.close(target)
    if request["new_session"]:
        os.setsid()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as Python sets it up in a terminal's process
    import numpy

    numpy.random.seed()  # a fresh process's unseeded numpy state, not the helper's
    sys.path[0] = request["cwd"]  # `python -m` puts the working directory first
    sys.argv = ["-m", *request["argv"]]
    runpy.run_module("eaglesearch.cli", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    early = sorted({m.split(".")[0] for m in sys.modules} & set(NOT_PRELOADED))
    assert not early, f"a preloaded library imported {early}: they would read settings before a command's environment"
    # No Python thread may run at a fork. The libraries' native pools (OpenBLAS, jemalloc) reset themselves in a
    # forked child, as they do in torch's DataLoader workers, which fork after the same imports.
    import threading

    assert threading.active_count() == 1, "preloading started a Python thread: forking would not be safe"
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    child_request = _serve(sys.argv[1])
    if child_request is not None:
        _become(child_request)
