"""Ray nodes on one host for ``local_cluster.py``: a head, and worker nodes that each run in their own mount
namespace (``unshare --mount``, needs root) where the folders they must not see are covered by empty ones; every
node with its own ports (Ray's defaults collide on one host) and its own session folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from eaglesearch.execution.local_services import (
    HOST,
    START_TIMEOUT_S,
    alive,
    console_script,
    free_port,
    spawn,
    wait_port,
)

if TYPE_CHECKING:
    from eaglesearch.execution.local_cluster import ClusterInfo


def ray_ports(index: int) -> list[str]:
    """Ports every Ray node on one host must not share (defaults collide: the dashboard agent's 52365, the
    worker range 10002-19999)."""
    low = 20000 + 200 * index
    return ["--min-worker-port", str(low), "--max-worker-port", str(low + 150),
            "--node-manager-port", str(free_port()), "--object-manager-port", str(free_port()),
            "--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
            "--metrics-export-port", str(free_port()), "--runtime-env-agent-port", str(free_port())]


def start_ray_head(base: Path, port: int, env: dict[str, str]) -> int:
    """The head holds no CPU: trials run on the worker nodes only, the way the driver's machine of a lab cluster
    is not where the GPUs are."""
    log = base / "ray-head.log"
    cmd = [console_script("ray"), "start", "--head", "--block", "--port", str(port), "--node-ip-address", HOST,
           "--num-cpus", "0", "--include-dashboard", "false", "--object-store-memory", str(100 * 2**20),
           "--temp-dir", str(base / "ray" / "head"), "--resources", '{"eaglesearch_head": 1}', *ray_ports(0)]
    proc = spawn(cmd, env, log, base)
    wait_port(port, proc, "the Ray head", log)
    return proc.pid


def start_ray_worker(base: Path, name: str, index: int, address: str, env: dict[str, str],
                     hidden: list[str], cpus: int) -> int:
    """A worker node in its own mount namespace: each folder of ``hidden`` is covered by an empty folder of this
    node, and HOME is the node's own. ``unshare`` execs the shell, which execs ``ray start``: the PID returned is
    the node's ``ray start --block`` (which takes its raylet and workers down with it)."""
    node = base / "nodes" / name
    home = node / "home"
    home.mkdir(parents=True, exist_ok=True)
    mounts = []
    for i, folder in enumerate(hidden):
        cover = node / "hidden" / str(i)
        cover.mkdir(parents=True, exist_ok=True)
        mounts.append(f"mount --bind {cover} {folder}")
    temp = base / "ray" / name
    for attempt in range(1, 100):  # a restarted node gets a fresh session folder (the old one holds dead sockets)
        if not temp.exists():
            break
        temp = base / "ray" / f"{name}.{attempt}"
    ray = [console_script("ray"), "start", "--address", address, "--block", "--node-ip-address", HOST, "--num-cpus",
           str(cpus), "--object-store-memory", str(100 * 2**20), "--temp-dir", str(temp),
           "--resources", json.dumps({f"eaglesearch_{name}": 1}), *ray_ports(index)]
    script = " && ".join([*mounts, "exec " + " ".join(_quote(a) for a in ray)])
    if os.geteuid() != 0:
        raise RuntimeError("worker nodes need their own mount namespace (`unshare --mount`), which needs root")
    cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]
    proc = spawn(cmd, {**env, "HOME": str(home)}, node / "ray.log", node)
    time.sleep(0.5)
    if proc.poll() is not None:
        raise RuntimeError(f"worker node {name} exited with {proc.returncode} at start; see {node / 'ray.log'}")
    return proc.pid


def _quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\\''") + "'"


_NODES_LINE = "NODES "
_NODE_RESTARTS = 2


def wait_for_nodes(info: ClusterInfo, env: dict[str, str], count: int, timeout: float = START_TIMEOUT_S,
                   restart: Callable[[str], None] | None = None) -> None:
    """Wait until ``count`` nodes are alive and note each one's node id (head, w1, w2), read in a short driver
    process (``ray.init`` in this one would tie it to the cluster). Meanwhile a worker node whose ``ray start``
    gave up (Ray allows a raylet 30 s to register, which a busy machine can exceed) is started again with
    ``restart``, at most twice."""
    probe = ("import json, ray, time\n"
             f"ray.init(address={info.ray_address!r}, logging_level=40, log_to_driver=False)\n"
             f"deadline = time.monotonic() + {timeout}\n"
             "while True:\n"
             "    alive = [n for n in ray.nodes() if n['Alive']]\n"
             f"    if len(alive) >= {count} or time.monotonic() > deadline: break\n"
             "    time.sleep(0.5)\n"
             f"print({_NODES_LINE!r} + json.dumps({{r[len('eaglesearch_'):]: n['NodeID'] for n in alive"
             " for r in n['Resources'] if r.startswith('eaglesearch_')}), flush=True)\n")
    proc = subprocess.Popen([sys.executable, "-c", probe], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    restarts = dict.fromkeys((n for n in info.pids if n.startswith("w")), 0)
    while proc.poll() is None:
        for name in restarts:
            if restart is not None and not alive(info.pids[name]) and restarts[name] < _NODE_RESTARTS:
                restarts[name] += 1
                restart(name)
        time.sleep(0.5)
    out, err = proc.communicate()
    found = [line[len(_NODES_LINE):] for line in out.splitlines() if line.startswith(_NODES_LINE)]
    if proc.returncode or not found:
        raise RuntimeError(f"could not read the cluster's nodes: {err.strip()[-800:]}")
    info.node_ids = json.loads(found[-1])
    if len(info.node_ids) < count:
        raise RuntimeError(f"only {sorted(info.node_ids)} of {count} Ray nodes came up within {timeout:.0f} s; "
                           f"see the logs in {info.base}")
    info.save()
