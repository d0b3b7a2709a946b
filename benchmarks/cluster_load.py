"""What the search machinery costs per trial on a cluster, with a stand-in trainer (no model): the same N trials
run (a) over the three nodes of a local cluster (``scripts/cluster.sh``) through the MLflow tracking server on
PostgreSQL and (b) on one local Ray node with a sqlite record, in the same invocation, one after the other.

Printed per leg: per-trial orchestration overhead (search wall time / N: the stand-in's own work is a few
microseconds), MLflow requests per trial (counted in the server's access log; goal <= 10) and the tracking
server's CPU seconds per trial (utime + stime of its processes, from /proc), beside PostgreSQL's.

The stand-in replaces ``run_trial_core`` in every Ray worker process through Ray's ``worker_process_setup_hook``
(this module's :func:`stand_in`), so dispatch, the record lookup, the child run, its params, predictions artifact
and final metrics go through the real code.

    python benchmarks/cluster_load.py [--trials 300] [--cluster DIR]   # DIR: a running `cluster.sh up` folder
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
REPO = Path(__file__).resolve().parents[1]

RECIPE = """\
name: load
scale: tiny
model:
  grid: 4
  lm: {hidden_size: 32, num_layers: 1, num_heads: 2, num_kv_heads: 1, intermediate_size: 64}
  tokenizer: {vocab_size: 300}
data:
  image_size: 64
  max_length: 96
  synthetic: {tasks: [count, color], train_per_task: 16, eval_per_task: 4, image_size: 64}
train: {steps: 4, batch_size: 8}
eval: {batch_size: 8, max_new_tokens: 2}
"""


def space(trials: int, concurrent: int) -> str:
    seeds = ", ".join(str(i) for i in range(trials))  # N distinct trials
    return textwrap.dedent(f"""\
    name: load
    recipe: experiments/load.yaml
    strategy:
      kind: grid
      factors:
        experts: [[{{name: clip, resolution: 64}}]]
        seed: [{seeds}]
    resources: {{cpus_per_trial: 1, max_concurrent_trials: {concurrent}, max_failures: 0}}
    """)


def stand_in() -> None:
    """Ray worker setup hook: trials return a made-up outcome at once (the search machinery is what is timed)."""
    from eaglesearch.execution import worker
    from eaglesearch.trial.outcome import TrialOutcome

    def run_trial_core(trial, workspace, threads, progress=None, **_settings):
        value = (int(trial.key[:8], 16) % 1000) / 1000
        return TrialOutcome(objective=value, metrics={"objective": value, "score/count": value, "cost/wall_s": 0.0})

    worker.run_trial_core = run_trial_core


def _cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes and all their descendants alive now (clock ticks -> s)."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, todo, seen = 0.0, list(pids), set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
        todo.extend(children.get(pid, []))
    return total


def leg(kind: str, trials: int, cluster: str | None) -> dict:
    """One leg in this process (``--leg``): run the search, measure, return the numbers."""
    import ray

    from eaglesearch.execution.controller import run_search
    from eaglesearch.execution.ray_runner import THREAD_TIMEOUT_S
    from eaglesearch.model.validate import load_checked_search

    project = Path(tempfile.mkdtemp(prefix=f"load-{kind}-", dir=(Path(cluster) / "driver") if cluster else None))
    (project / "experiments").mkdir()
    (project / "experiments" / "load.yaml").write_text(RECIPE)
    concurrent = 2 if kind == "cluster" else 1
    (project / "load.yaml").write_text(space(trials, concurrent))
    os.chdir(project)
    uri = os.environ["MLFLOW_TRACKING_URI"] if kind == "cluster" else f"sqlite:///{project}/mlflow.db"
    env = {"OMP_WAIT_POLICY": "PASSIVE", "TOKENIZERS_PARALLELISM": "false", "MLFLOW_TRACKING_URI": uri,
           "RAY_CHDIR_TO_TRIAL_DIR": "0", "TUNE_FUNCTION_THREAD_TIMEOUT_S": THREAD_TIMEOUT_S,
           "PYTHONPATH": str(REPO)}  # every node's workers import the stand-in from this checkout
    runtime_env = {"env_vars": env, "worker_process_setup_hook": "benchmarks.cluster_load.stand_in"}
    address = os.environ.get("RAY_ADDRESS") if kind == "cluster" else None
    ray.init(address=address, num_cpus=None if address else 1, include_dashboard=False, log_to_driver=False,
             runtime_env=runtime_env)
    loaded = load_checked_search(project / "load.yaml")
    info = json.loads((Path(cluster) / "state.json").read_text()) if cluster else None
    log = Path(cluster) / "mlflow.log" if cluster else None
    lines_before = len(log.read_text().splitlines()) if log else 0
    cpu_before = {s: _cpu_seconds([info["pids"][s]]) for s in ("mlflow", "postgres")} if info else {}
    started = time.perf_counter()
    outcome = run_search(loaded, tracking_uri=uri, address=address, show_progress=False,  # no report: not per trial
                         artifacts=os.environ.get("EAGLESEARCH_ARTIFACTS") if kind == "cluster" else None)
    wall = time.perf_counter() - started
    ray.shutdown()
    from eaglesearch.tracking import TrackingStore

    runs = TrackingStore(uri).trial_runs(outcome.parent_id)
    finished = int((runs["status_tag"] == "finished").sum()) if len(runs) else 0
    if not outcome.complete or finished != trials:  # numbers of a search whose trials failed would be meaningless
        errors = runs["error"].dropna().unique()[:3] if "error" in runs else []
        raise SystemExit(f"{kind} leg: {finished} of {trials} trials finished (complete: {outcome.complete}); "
                         f"errors: {list(errors)}")
    result = {"trials": float(trials), "wall_s": wall, "overhead_s_per_trial": wall / trials,
              "complete": float(outcome.complete), "finished": float(finished)}
    if log is not None and info is not None:
        requests = [line for line in log.read_text().splitlines()[lines_before:] if '"POST /api' in line
                    or '"GET /api' in line or '"PUT /' in line or '"GET /ajax-api' in line]
        result["mlflow_requests_per_trial"] = len(requests) / trials
        endpoints: dict[str, int] = {}
        for line in requests:  # '... "POST /api/2.0/mlflow/runs/create HTTP/1.1" 200' -> POST runs/create
            method, path = line.split('"', 2)[1].split()[:2]
            name = f"{method} {path.split('?')[0].split('/mlflow/')[-1].split('/artifacts/')[0]}"
            endpoints[name] = endpoints.get(name, 0) + 1
        result["by_endpoint"] = {k: v / trials for k, v in sorted(endpoints.items(), key=lambda kv: -kv[1])}
        for service in ("mlflow", "postgres"):
            result[f"{service}_cpu_s_per_trial"] = (_cpu_seconds([info["pids"][service]]) - cpu_before[service]) \
                / trials
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--cluster", help="folder of a running `scripts/cluster.sh up` (default: start one)")
    parser.add_argument("--leg", choices=["cluster", "local"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.leg:
        print(json.dumps(leg(args.leg, args.trials, args.cluster)))
        return
    from eaglesearch.execution import local_cluster

    base = Path(args.cluster) if args.cluster else Path(tempfile.mkdtemp(prefix="eaglesearch-load-"))
    started_here = args.cluster is None
    if started_here:
        local_cluster.up(base)
    try:
        info = local_cluster.ClusterInfo.load(base)
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_", "AWS_"))}
        results = {}
        for kind in ("cluster", "local"):
            env = inherited | {"PYTHONPATH": f"{REPO}:{os.environ.get('PYTHONPATH', '')}"}
            if kind == "cluster":
                env |= info.driver_env()
            done = subprocess.run([sys.executable, __file__, "--leg", kind, "--trials", str(args.trials),
                                   *(["--cluster", str(base)] if kind == "cluster" else [])],
                                  env=env, capture_output=True, text=True, check=False)
            if done.returncode:
                raise SystemExit(f"{kind} leg failed:\n{done.stderr[-3000:]}")
            results[kind] = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        if started_here:
            local_cluster.down(base)
            shutil.rmtree(base, ignore_errors=True)
    print(f"{args.trials} stand-in trials (no model)")
    print(f"{'':38s} {'3 nodes + MLflow server/PostgreSQL':>36s} {'1 node + sqlite':>18s}")
    for name, key in (("orchestration overhead (s/trial)", "overhead_s_per_trial"), ("wall (s)", "wall_s"),
                      ("MLflow requests per trial", "mlflow_requests_per_trial"),
                      ("MLflow server CPU s per trial", "mlflow_cpu_s_per_trial"),
                      ("PostgreSQL CPU s per trial", "postgres_cpu_s_per_trial")):
        cells = [f"{results[k][key]:.3f}" if key in results[k] else "-" for k in ("cluster", "local")]
        print(f"{name:38s} {cells[0]:>36s} {cells[1]:>18s}")
    print("MLflow requests per trial by endpoint (cluster leg): " + ", ".join(
        f"{name} {count:.2f}" for name, count in results["cluster"].get("by_endpoint", {}).items()))


if __name__ == "__main__":
    main()
