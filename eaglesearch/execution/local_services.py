"""The servers behind a local cluster (``local_cluster.py``): PostgreSQL, an S3-compatible store, MLflow's
tracking server; each started in its own session, bound to 127.0.0.1, its data and log under the cluster's folder.

Why these servers:

- **PostgreSQL**: Debian's ``postgresql`` package (the server a lab's tracking database runs on). Its binaries
  refuse to run as root, so they run as the ``postgres`` user (``runuser``) on a data folder under the cluster's
  folder, listening on 127.0.0.1 only, with password authentication over TCP.
- **S3**: moto's server mode (``moto[server]`` from PyPI, offline, no binary download). Against real S3 it lacks
  persistence (every bucket is in memory and lost when it stops: keep it up for the whole cluster's life), real
  authentication (any key is accepted), and atomic conditional writes under concurrency (``If-None-Match`` is
  checked, then written, without a lock).
- **MLflow** ``server --serve-artifacts``: trials log predictions and reports through it (no S3 credentials on
  the client side for those); the database password travels in ``PGPASSWORD``, never on a command line.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

HOST = "127.0.0.1"
BUCKET = "eaglesearch"
START_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def console_script(name: str) -> str:
    """A console script of this Python environment (ray, mlflow, moto_server), else from PATH."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else (shutil.which(name) or name)


def wait_port(port: int, proc: subprocess.Popen | None, what: str, log: Path, timeout: float = START_TIMEOUT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} while starting; see {log}")
        try:
            with socket.create_connection((HOST, port), timeout=1):
                return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{what} did not listen on {HOST}:{port} within {timeout:.0f} s; see {log}")


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (exited, not yet reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def spawn(cmd: list[str], env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen:
    """A service in its own session (so ``down`` can signal its whole process group by the PID recorded here)."""
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


# ---------------------------------------------------------------- PostgreSQL


PG_BIN = Path(os.environ.get("EAGLESEARCH_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "mlflow"
PG_DB = "mlflow"


def _as_postgres(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    cmd = ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args
    return subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, timeout=START_TIMEOUT_S)


def start_postgres(base: Path, port: int, password: str) -> int:
    """initdb (first time) and start; returns the postmaster's PID. Why runuser: PostgreSQL refuses root."""
    if not (PG_BIN / "initdb").exists():
        raise RuntimeError(f"PostgreSQL is not installed ({PG_BIN}/initdb is missing): apt-get install -y "
                           "postgresql, or set EAGLESEARCH_PG_BIN to its bin folder")
    folder = base / "postgres"
    data = folder / "data"
    blocked = [p for p in (base, *base.parents) if os.geteuid() == 0 and not os.stat(p).st_mode & 0o001]
    if blocked:
        raise RuntimeError(f"PostgreSQL runs as the postgres user, who cannot enter {blocked[0]} (mode "
                           f"{oct(os.stat(blocked[0]).st_mode & 0o777)}): put the cluster folder where every user "
                           "may pass through its parents, e.g. under /tmp")
    if not data.exists():
        folder.mkdir(parents=True, exist_ok=True)
        pwfile = folder / "pw"
        pwfile.write_text(password)
        if os.geteuid() == 0:
            shutil.chown(folder, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
        os.chmod(pwfile, 0o600)
        done = _as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-U", PG_USER, f"--pwfile={pwfile}",
                             "--auth-host=scram-sha-256", "--auth-local=peer", "-E", "UTF8"])
        pwfile.unlink()
        if done.returncode:
            raise RuntimeError(f"initdb failed: {done.stderr.strip()[-500:]}")
    log = folder / "postgres.log"
    options = f"-p {port} -k {folder} -c listen_addresses={HOST}"
    done = _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-o", options, "start"])
    if done.returncode:
        raise RuntimeError(f"PostgreSQL did not start: {done.stdout.strip()[-300:]} {done.stderr.strip()[-300:]}; "
                           f"see {log}")
    pid = int((data / "postmaster.pid").read_text().split()[0])
    env = {**os.environ, "PGPASSWORD": password}
    psql = [str(PG_BIN / "psql"), "-h", HOST, "-p", str(port), "-U", PG_USER, "-d", "postgres", "-tAc"]
    exists = subprocess.run([*psql, f"SELECT 1 FROM pg_database WHERE datname='{PG_DB}'"], env=env,
                            capture_output=True, text=True, check=False)
    if exists.returncode:
        raise RuntimeError(f"cannot connect to PostgreSQL on {HOST}:{port}: {exists.stderr.strip()}")
    if exists.stdout.strip() != "1":
        subprocess.run([*psql, f"CREATE DATABASE {PG_DB}"], env=env, capture_output=True, check=True)
    return pid


def restart_postgres(base: Path, port: int) -> int:
    """Stop PostgreSQL (fast: open connections are cut) and start it again on the same port; the new PID."""
    data = base / "postgres" / "data"
    done = _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-w", "-m", "fast", "restart", "-o",
                         f"-p {port} -k {data.parent} -c listen_addresses={HOST}", "-l", str(data.parent / "postgres.log")])
    if done.returncode:
        raise RuntimeError(f"PostgreSQL restart failed: {done.stderr.strip()[-300:]}")
    return int((data / "postmaster.pid").read_text().split()[0])


# ---------------------------------------------------------------- S3 (moto) and MLflow


def start_s3(base: Path, port: int, env: dict[str, str]) -> int:
    log = base / "s3.log"
    proc = spawn([console_script("moto_server"), "-H", HOST, "-p", str(port)], env, log, base)
    wait_port(port, proc, "the S3 server (moto)", log)
    import boto3

    boto3.client("s3", endpoint_url=f"http://{HOST}:{port}", aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                 aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1",
                 ).create_bucket(Bucket=BUCKET)
    return proc.pid


def start_mlflow(base: Path, port: int, env: dict[str, str]) -> int:
    """``mlflow server`` on PostgreSQL, artifacts proxied to S3 (clients need no S3 credentials for them). The
    database URI travels in ``MLFLOW_BACKEND_STORE_URI`` and the password in ``PGPASSWORD``: neither shows up in
    ``ps``."""
    log = base / "mlflow.log"
    cmd = [console_script("mlflow"), "server", "--serve-artifacts", "--artifacts-destination", f"s3://{BUCKET}/mlflow",
           "--host", HOST, "--port", str(port), "--workers", "1"]
    proc = spawn(cmd, env, log, base)
    wait_port(port, proc, "the MLflow server", log)
    _first_request(f"http://{HOST}:{port}", log)
    return proc.pid


def _first_request(url: str, log: Path, timeout: float = START_TIMEOUT_S) -> None:
    """One read through the server: it opens its database (and creates the schema) on the first request, which
    can take longer than a client's preflight probe allows; ``up`` returns a server that answers at once."""
    import urllib.request

    request = urllib.request.Request(f"{url}/api/2.0/mlflow/experiments/search", data=b'{"max_results": 1}',
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    except OSError as err:
        raise RuntimeError(f"the MLflow server at {url} did not answer its first request ({err}); see {log}") \
            from None
