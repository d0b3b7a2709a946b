"""A real multi-node cluster on one machine: PostgreSQL, an MLflow tracking server on it, an S3-compatible object
store (``local_services.py`` says which servers and why), a Ray head and worker nodes that share no folder with the
driver. For tests (``tests/test_cluster.py``) and for users to copy (``scripts/cluster.sh up|down``); both call
:func:`up` and :func:`down`.

Worker nodes run in their own mount namespace (``unshare --mount``, needs root) where the driver's folder and
``~/.ray`` are covered by empty per-node folders, and with their own ``HOME``: whatever a trial needs from the
driver has to come through the servers, as on real machines. The Python environment stays visible (a venv is
installed on every machine of a real cluster too).

Everything binds to 127.0.0.1 and lives under one folder; ``state.json`` there lists the PID of every process
:func:`up` started, and :func:`down` signals exactly those. Credentials (PostgreSQL password, S3 keys, the Ray
token) are generated, written to ``env.sh`` (mode 600) for the driver, handed to the services through their
environment, and never printed.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from eaglesearch.execution.local_nodes import start_ray_head, start_ray_worker, wait_for_nodes
from eaglesearch.execution.local_services import (
    BUCKET,
    HOST,
    PG_BIN,
    PG_DB,
    PG_USER,
    alive,
    free_port,
    start_mlflow,
    start_postgres,
    start_s3,
)
from eaglesearch.execution.local_services import restart_postgres as restart_postgres_at

__all__ = ["PG_BIN", "ClusterInfo", "down", "kill_node", "restart_node", "restart_postgres", "up"]

WORKERS = ("w1", "w2")
_SAVING = threading.Lock()
STATE_FILE = "state.json"
ENV_FILE = "env.sh"
# Dead-node detection in seconds instead of ~50 s (GCS defaults: a check every 3 s, 5 failures of 10 s each).
# No memory monitor: each node here would measure the whole host and kill its trials for memory that other nodes
# (or anything else on the machine) use.
HEALTH_ENV = {"RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "1000",
              "RAY_health_check_failure_threshold": "3", "RAY_memory_monitor_refresh_ms": "0"}


@dataclass
class ClusterInfo:
    """What :func:`up` started and how a driver reaches it (no secret in here: those are in ``env.sh``)."""

    base: str
    ray_address: str
    tracking_uri: str
    artifacts: str
    s3_endpoint: str
    postgres_port: int
    pids: dict[str, int] = field(default_factory=dict)  # service name -> PID of the process up started
    node_ids: dict[str, str] = field(default_factory=dict)  # head, w1, w2 -> Ray node id
    hidden: list[str] = field(default_factory=list)  # folders the worker nodes cannot see
    cpus_per_worker: int = 1

    @property
    def env_file(self) -> Path:
        return Path(self.base) / ENV_FILE

    def driver_env(self) -> dict[str, str]:
        """The environment a driver needs (credentials included), read from ``env.sh``."""
        env: dict[str, str] = {}
        for line in self.env_file.read_text().splitlines():
            if line.startswith("export "):
                name, _, value = line[len("export "):].partition("=")
                env[name] = value.strip("'")
        return env

    def save(self) -> None:
        with _SAVING:  # services start in parallel threads (:func:`up`)
            (Path(self.base) / STATE_FILE).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, base: str | Path) -> ClusterInfo:
        path = Path(base) / STATE_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: no cluster was started in {base} (`cluster.sh up`)")
        return cls(**json.loads(path.read_text()))


# ---------------------------------------------------------------- up / down


def _credentials(base: Path) -> dict[str, str]:
    return {"PGPASSWORD": secrets.token_urlsafe(18), "AWS_ACCESS_KEY_ID": "es" + secrets.token_hex(8),
            "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(24), "RAY_AUTH_TOKEN_PATH": str(base / "ray_token")}


def up(base: str | Path, *, hide: list[str] | tuple[str, ...] = (), workers: tuple[str, ...] = WORKERS,
       cpus_per_worker: int = 1) -> ClusterInfo:
    """Start every service under ``base`` (created; must be empty of a running cluster) and return how to reach
    them. ``hide``: folders worker nodes must not see (the driver's project and workdir), besides ``base/driver``
    and ``~/.ray``. On any failure what was started is stopped again."""
    base = Path(base).absolute()
    base.mkdir(parents=True, exist_ok=True)
    os.chmod(base, 0o755)  # the postgres user must reach its data folder inside
    if (base / STATE_FILE).exists():
        raise RuntimeError(f"{base} already holds a cluster ({STATE_FILE}); `cluster.sh down {base}` first")
    creds = _credentials(base)
    _write_secret(base / "ray_token", secrets.token_hex(32))
    driver = base / "driver"
    driver.mkdir(exist_ok=True)
    ray_home = Path.home() / ".ray"
    ray_home.mkdir(exist_ok=True)
    hidden = [str(Path(h).absolute()) for h in (str(driver), str(ray_home), *hide)]
    for folder in hidden:
        Path(folder).mkdir(parents=True, exist_ok=True)
    s3_port, pg_port, mlflow_port, ray_port = free_port(), free_port(), free_port(), free_port()
    info = ClusterInfo(base=str(base), ray_address=f"{HOST}:{ray_port}",
                       tracking_uri=f"http://{HOST}:{mlflow_port}", artifacts=f"s3://{BUCKET}/artifacts",
                       s3_endpoint=f"http://{HOST}:{s3_port}", postgres_port=pg_port, hidden=hidden,
                       cpus_per_worker=cpus_per_worker)
    common = {"AWS_ENDPOINT_URL": info.s3_endpoint, "AWS_DEFAULT_REGION": "us-east-1",
              "AWS_ACCESS_KEY_ID": creds["AWS_ACCESS_KEY_ID"], "AWS_SECRET_ACCESS_KEY": creds["AWS_SECRET_ACCESS_KEY"]}
    ray_env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": creds["RAY_AUTH_TOKEN_PATH"],
               "RAY_USAGE_STATS_ENABLED": "0", "OMP_WAIT_POLICY": "PASSIVE", **HEALTH_ENV}
    base_env = _inherited_env()
    _write_env(info, {**common, **ray_env, "RAY_ADDRESS": info.ray_address, "MLFLOW_TRACKING_URI": info.tracking_uri,
                      "EAGLESEARCH_ARTIFACTS": info.artifacts})
    _write_secret(base / "postgres_password", creds["PGPASSWORD"])  # for an administrator's psql
    info.save()

    def started(name: str, pid: int) -> None:
        info.pids[name] = pid
        info.save()  # recorded at once: a failure later stops it too

    def servers() -> None:  # the record: PostgreSQL, then the MLflow server on it
        started("postgres", start_postgres(base, pg_port, creds["PGPASSWORD"]))
        started("mlflow", start_mlflow(base, mlflow_port, _mlflow_env(info)))

    def ray_nodes() -> None:
        node_env = {**base_env, **common, **ray_env}
        started("head", start_ray_head(base, ray_port, node_env))
        def worker(name: str) -> None:
            index = workers.index(name) + 1
            started(name, start_ray_worker(base, name, index, info.ray_address, node_env, hidden, cpus_per_worker))

        for name in workers:
            worker(name)
        wait_for_nodes(info, {**base_env, **info.driver_env()}, 1 + len(workers), restart=worker)

    # The S3 server and the record's servers at once (each mostly waits: for a port, a schema), then the Ray nodes:
    # started beside the MLflow server's imports on a busy machine, a worker node can miss Ray's startup timeout.
    try:
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="cluster-up") as pool:
            chains = [pool.submit(lambda: started("s3", start_s3(base, s3_port, {**base_env, **common}))),
                      pool.submit(servers)]
            for chain in chains:
                chain.result()
        ray_nodes()
    except BaseException:
        down(base)
        raise
    return info


def _inherited_env() -> dict[str, str]:
    """This process's environment without what the cluster sets itself (a caller's Ray, AWS, MLflow, PG)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "AWS_", "MLFLOW_", "PG"))}


def restart_postgres(info: ClusterInfo) -> None:
    """Restart PostgreSQL on its port (fault tests: what the MLflow server rides out)."""
    info.pids["postgres"] = restart_postgres_at(Path(info.base), info.postgres_port)
    info.save()


def _mlflow_env(info: ClusterInfo) -> dict[str, str]:
    """The tracking server's environment: S3 credentials (from ``env.sh``), the database URI without its password,
    the password in ``PGPASSWORD`` (libpq reads it; ``ps`` never shows it)."""
    driver = info.driver_env()
    return {**_inherited_env(), **{k: v for k, v in driver.items() if k.startswith("AWS_")},
            "PGPASSWORD": (Path(info.base) / "postgres_password").read_text(),
            "MLFLOW_BACKEND_STORE_URI": f"postgresql+psycopg2://{PG_USER}@{HOST}:{info.postgres_port}/{PG_DB}",
            # No job runner (seven huey processes for MLflow's GenAI jobs, which eaglesearch never submits).
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def stop_mlflow(info: ClusterInfo) -> None:
    """Stop the tracking server (fault tests: clients must wait for it, not lose or half-write a trial)."""
    stop_pid(info.pids["mlflow"])


def start_mlflow_again(info: ClusterInfo) -> None:
    """Start the tracking server again on its port, on the same database."""
    port = int(info.tracking_uri.rsplit(":", 1)[1])
    info.pids["mlflow"] = start_mlflow(Path(info.base), port, _mlflow_env(info))
    info.save()


def restart_node(info: ClusterInfo, name: str) -> None:
    """Start worker node ``name`` again (after :func:`kill_node`) and wait until it is back in the cluster."""
    index = sorted(n for n in info.node_ids if n != "head").index(name) + 1
    env = {**_inherited_env(), **info.driver_env()}
    info.pids[name] = start_ray_worker(Path(info.base), name, index, info.ray_address, env, info.hidden,
                                       info.cpus_per_worker)
    info.save()
    wait_for_nodes(info, env, len(info.node_ids))


def _write_secret(path: Path, value: str) -> None:
    path.touch(mode=0o600)
    os.chmod(path, 0o600)
    path.write_text(value)


def _write_env(info: ClusterInfo, env: dict[str, str]) -> None:
    _write_secret(info.env_file, "".join(f"export {k}='{v}'\n" for k, v in env.items()))


def stop_pid(pid: int, group: bool = True, grace: float = 5.0) -> None:
    """SIGTERM the process (its process group when it leads one: a service started by ``up``), then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        if not alive(pid):
            return
        try:
            if group and os.getpgid(pid) == pid:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        except OSError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and alive(pid):
            time.sleep(0.2)


def kill_node(info: ClusterInfo, name: str) -> None:
    """SIGKILL a worker node's whole process group at once (its ``ray start``, raylet, object store and the trial
    processes in it), as a machine that loses power: nothing is flushed or announced."""
    pid = info.pids[name]
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass


def _kill_group(pid: int) -> None:
    """SIGKILL a service's whole process group and wait (briefly) until its leader is gone."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        return
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and alive(pid):
        time.sleep(0.05)


def down(base: str | Path) -> list[str]:
    """Stop what :func:`up` started in ``base``, by the PIDs it recorded; returns their names.

    Fast, and by PID only: the Ray nodes and the S3 server hold nothing that outlives the cluster (moto keeps its
    objects in memory), so their process groups are killed at once (what ``ray stop --force`` does, but for these
    nodes only); PostgreSQL gets its fast shutdown (SIGINT: a clean checkpoint, open connections cut) and the MLflow
    server a SIGTERM, all at the same time."""
    info = ClusterInfo.load(base)
    stopped = []
    postmaster = info.pids.get("postgres")
    if postmaster is not None and alive(postmaster):
        os.kill(postmaster, signal.SIGINT)
    mlflow = info.pids.get("mlflow")
    if mlflow is not None and alive(mlflow):
        with contextlib.suppress(OSError):
            os.killpg(mlflow, signal.SIGTERM)
    for name, pid in info.pids.items():
        if name not in ("postgres", "mlflow"):
            _kill_group(pid)
            stopped.append(name)
    for name in ("mlflow", "postgres"):
        pid = info.pids.get(name)
        if pid is not None:
            stop_pid(pid, group=name == "mlflow", grace=30.0 if name == "postgres" else 5.0)
            stopped.append(name)
    (Path(base) / STATE_FILE).rename(Path(base) / f"{STATE_FILE}.down")
    return stopped


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="cluster.sh", description="a multi-node eaglesearch cluster on this host")
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("up", help="start PostgreSQL, MLflow, S3 (moto), a Ray head and worker nodes")
    start.add_argument("base", type=Path, help="folder for every service's data, logs and state")
    start.add_argument("--hide", action="append", default=[], help="a folder worker nodes must not see (repeat)")
    start.add_argument("--cpus-per-worker", type=int, default=1)
    stop = sub.add_parser("down", help="stop exactly what `up` started in that folder")
    stop.add_argument("base", type=Path)
    args = parser.parse_args(argv)
    try:
        return _command(args)
    except (FileNotFoundError, RuntimeError) as err:  # what to fix, without a traceback
        print(f"cluster.sh {args.command}: {err}", file=sys.stderr)
        return 2


def _command(args) -> int:
    if args.command == "up":
        info = up(args.base, hide=args.hide, cpus_per_worker=args.cpus_per_worker)
        print(f"Ray        {info.ray_address}  (nodes: {', '.join(sorted(info.node_ids))})")
        print(f"MLflow     {info.tracking_uri}  (PostgreSQL on {HOST}:{info.postgres_port})")
        print(f"artifacts  {info.artifacts}  (S3 endpoint {info.s3_endpoint})")
        print(f"run searches from {Path(info.base) / 'driver'} after: source {info.env_file}")
    else:
        print("stopped: " + ", ".join(down(args.base)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
