"""A search across machines, on a real cluster on this host (``eaglesearch/execution/local_cluster.py``, what
``scripts/cluster.sh up`` starts): PostgreSQL, an MLflow tracking server on it, an S3 server (moto), a Ray head
and two worker nodes in their own mount namespaces, which cannot see the driver's project folder or ``~/.ray``.

The driver is the CLI, run the way the README's "Running on a cluster" section says: ``source env.sh``, then
``eaglesearch run`` from a project folder. Needs root (mount namespaces, PostgreSQL under ``runuser``), Debian's
``postgresql`` and ``moto[server]``; skipped with the reason where they are missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from eaglesearch.train.checkpoint import CHECKPOINT_NAME, MANIFEST
from tests.e2e_helpers import PREALIGN_STAGES, make_project, tiny_recipe
from tests.support import warm_cli

pytestmark = pytest.mark.slow

TWO_TRIALS = """\
name: across-nodes
recipe: experiments/tiny_test.yaml
strategy:
  kind: grid
  factors:
    experts: [[{name: clip, resolution: 64}], [{name: clip, resolution: 64}, {name: convnext, resolution: 64}]]
resources: {cpus_per_trial: 1, max_concurrent_trials: 2, max_failures: 2}
"""
LONG_TRIALS = """\
name: node-loss
recipe: experiments/long.yaml
strategy:
  kind: grid
  factors:
    experts: [[{name: clip, resolution: 64}]]
    train.stages.sft.steps: [STEPS]
resources: {cpus_per_trial: 1, max_concurrent_trials: 1, max_failures: 2}
"""
LONG_STEPS = 40
NODE_LOSS_STEPS = 80  # the kill must land before training ends (and its close() removes the checkpoints)
SHORT_STEPS = 8


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (worker nodes in their own mount namespace, PostgreSQL under runuser)"
    if shutil.which("unshare") is None:
        return "needs unshare (util-linux)"
    from eaglesearch.execution.local_cluster import PG_BIN

    if not (PG_BIN / "initdb").exists():
        return f"needs PostgreSQL ({PG_BIN}/initdb): apt-get install -y postgresql"
    try:
        import boto3  # noqa: F401
        import moto.server  # noqa: F401
        import psycopg2  # noqa: F401
        import s3fs  # noqa: F401
    except ImportError as err:
        return f"needs moto[server], boto3, psycopg2 and s3fs ({err})"
    return None


@pytest.fixture(scope="module")
def cluster() -> Iterator:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    from eaglesearch.execution.local_cluster import down, up

    # Not under pytest's tmp folder: that is private to root, and PostgreSQL runs as the postgres user.
    base = Path(tempfile.mkdtemp(prefix="eaglesearch-cluster-"))
    info = up(base)
    try:
        yield info
    finally:
        stopped = down(base)
        shutil.rmtree(base, ignore_errors=True)
        assert set(stopped) == {"s3", "postgres", "mlflow", "head", "w1", "w2"}


def driver_env(info) -> dict[str, str]:
    """What ``source env.sh`` gives a shell, on top of this one (minus any Ray/MLflow settings of the caller)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_", "AWS_", "EAGLESEARCH_"))}
    return env | info.driver_env() | {"OMP_WAIT_POLICY": "PASSIVE"}


def eaglesearch(info, project: Path, *args: str, timeout: float = 400, **extra: str) -> subprocess.CompletedProcess:
    try:
        return warm_cli.run(list(args), project, driver_env(info) | extra, timeout=timeout)
    except subprocess.TimeoutExpired as err:  # say where it hung: the run's own output and the nodes' logs
        def tail(data: bytes | str | None) -> str:
            return (data.decode(errors="replace") if isinstance(data, bytes) else data or "")[-3000:]

        logs = sorted(Path(info.base).glob("**/*.log"), key=lambda p: p.stat().st_mtime)[-3:]
        pytest.fail(f"`eaglesearch {' '.join(args)}` ran past {timeout} s\nstdout:\n{tail(err.stdout)}\nstderr:\n"
                    f"{tail(err.stderr)}\n" + "".join(f"\n{p}:\n{tail(p.read_text(errors='replace'))}" for p in logs))


def trial_runs(info, search: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(info.tracking_uri)
    exp = client.get_experiment_by_name(search)
    return client.search_runs([exp.experiment_id], "tags.`eaglesearch.kind` = 'trial'")


def s3(info):
    import s3fs

    env = info.driver_env()
    return s3fs.S3FileSystem(endpoint_url=info.s3_endpoint, key=env["AWS_ACCESS_KEY_ID"],
                             secret=env["AWS_SECRET_ACCESS_KEY"])


def board(project: Path, search: str) -> dict[str, dict[str, str]]:
    import csv

    with open(project / "reports" / search / "leaderboard.csv") as fh:
        return {row["candidate"]: row for row in csv.DictReader(fh) if row["status"] != "baseline"}


def test_a_node_local_store_is_refused_in_seconds_naming_the_fix(cluster) -> None:
    project = make_project(Path(cluster.base) / "driver" / "refused", {"s": TWO_TRIALS})
    started = time.monotonic()
    proc = eaglesearch(cluster, project, "run", "search_spaces/s.yaml", "--quiet", "--tracking-uri",
                       f"sqlite:///{project}/mlflow.db", "--artifacts", str(project / "artifacts"), timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert time.monotonic() - started < 60
    assert "has 3 nodes" in proc.stderr and "Traceback" not in proc.stderr
    assert "--tracking-uri http://HOST:PORT" in proc.stderr and "--artifacts s3://" in proc.stderr
    assert "--shared-workdir" in proc.stderr
    assert not (project / ".eaglesearch").exists() and not (project / "mlflow.db").exists()


def test_a_search_runs_on_both_worker_nodes_through_the_servers(cluster, tmp_path: Path) -> None:
    project = make_project(Path(cluster.base) / "driver" / "across", {"s": TWO_TRIALS})
    (project / "experiments" / "tiny_test.yaml").write_text(tiny_recipe(train=PREALIGN_STAGES, max_length=160))
    proc = eaglesearch(cluster, project, "run", "search_spaces/s.yaml", "--quiet")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    env = cluster.driver_env()
    assert env["AWS_SECRET_ACCESS_KEY"] not in proc.stdout + proc.stderr

    runs = trial_runs(cluster, "across-nodes")
    assert len(runs) == 2 and {r.data.tags["eaglesearch.status"] for r in runs} == {"finished"}
    workers = {cluster.node_ids["w1"], cluster.node_ids["w2"]}
    assert {r.data.tags["eaglesearch.node"] for r in runs} == workers  # one trial on each worker node
    for run in runs:  # credentials never become params
        assert not any(env["AWS_SECRET_ACCESS_KEY"] in v for v in run.data.params.values())

    # The record is in PostgreSQL (behind the server): the same runs, read with psql.
    password = (Path(cluster.base) / "postgres_password").read_text()
    from eaglesearch.execution.local_cluster import PG_BIN

    rows = subprocess.run([str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p", str(cluster.postgres_port), "-U", "mlflow",
                           "-d", "mlflow", "-tAc", ("SELECT run_uuid FROM tags WHERE key='eaglesearch.kind' AND "
                                                    "value='trial'")], env={"PGPASSWORD": password, "PATH": os.environ["PATH"]},
                          capture_output=True, text=True, check=True).stdout.split()
    assert set(rows) >= {r.info.run_id for r in runs}

    # Artifacts went through the servers into S3: pre-aligned experts (one per expert), predictions of each trial.
    # Both trials need CLIP's pre-alignment at once, on two machines: one builds it, the other waits on its claim
    # in S3 and reuses it.
    fs = s3(cluster)
    built = [p for p in fs.find("eaglesearch/artifacts/prealigned_expert") if p.endswith("/COMPLETE")]
    assert len(built) == 2
    from eaglesearch.tracking import TrackingStore

    stages = TrackingStore(cluster.tracking_uri).stage_runs("across-nodes")
    prealign = stages[stages["stage"] == "prealign"]
    assert len(prealign) == 3 and sorted(prealign[prealign["status"] == "trained"]["expert"]) == ["clip", "convnext"]
    for run in runs:
        assert fs.exists(f"eaglesearch/mlflow/{run.info.experiment_id}/{run.info.run_id}/artifacts/predictions.jsonl")
    assert not fs.exists("eaglesearch/artifacts/scratch/trials")  # finished trials leave no checkpoints behind
    # The kept winner (keep_best 1): its weights went through the tracking server into S3, on the run the
    # leaderboard ranks first, and the driver exports it back through the server.
    kept = [r for r in runs if r.data.tags.get("eaglesearch.weights") == "stored"]
    assert len(kept) == 1
    stored = fs.find(f"eaglesearch/mlflow/{kept[0].info.experiment_id}/{kept[0].info.run_id}/artifacts/model")
    assert any(p.endswith(".safetensors") for p in stored), stored
    exported = eaglesearch(cluster, project, "export", "across-nodes", str(project / "winner"), timeout=120)
    assert exported.returncode == 0, exported.stdout + exported.stderr
    record = json.loads((project / "winner" / "record.json").read_text())
    assert (record["run_id"], record["key"]) == (kept[0].info.run_id, kept[0].data.tags["eaglesearch.key"])
    # Nothing was written where only the driver could read it, and each node worked in its own folders.
    assert not (project / ".eaglesearch" / "artifacts").exists()
    for name in ("w1", "w2"):
        assert (Path(cluster.base) / "nodes" / name / "hidden" / "0" / "across" / ".eaglesearch" / "data").is_dir()

    # The same table as on one machine (inline executor, sqlite): same candidates, same objectives.
    local = make_project(tmp_path / "local", {"s": TWO_TRIALS})
    shutil.copy(project / "experiments" / "tiny_test.yaml", local / "experiments" / "tiny_test.yaml")
    alone = warm_cli.run(["run", "search_spaces/s.yaml", "--quiet", "--executor", "inline"], local,
                         driver_env(cluster) | {"MLFLOW_TRACKING_URI": f"sqlite:///{local}/mlflow.db",
                                                "EAGLESEARCH_ARTIFACTS": str(local / "artifacts"), "RAY_ADDRESS": ""},
                         timeout=400)
    assert alone.returncode == 0, alone.stderr[-3000:]
    on_cluster, on_one = board(project, "across-nodes"), board(local, "across-nodes")
    assert on_cluster.keys() == on_one.keys()
    for candidate, row in on_cluster.items():
        assert float(row["objective"]) == pytest.approx(float(on_one[candidate]["objective"]), abs=1e-9)


def long_search(cluster, name: str, seed: int, steps: tuple[int, ...] = (LONG_STEPS,)) -> Path:
    """A project whose trials (one per entry of ``steps``, run one after the other) checkpoint every 5 steps, the
    first long enough to be hit mid-training; each test its own ``seed``, so no test's trial is served from
    another's record."""
    space = LONG_TRIALS.replace("node-loss", name).replace("STEPS", ", ".join(map(str, steps)))
    project = make_project(Path(cluster.base) / "driver" / name, {"s": space})
    train = f"{{steps: {LONG_STEPS}, batch_size: 8, lr: 5.0e-4, log_every: 5, checkpoint_every: 5}}"
    (project / "experiments" / "long.yaml").write_text(tiny_recipe("long", train=train).replace("seed: 0\n",
                                                                                                f"seed: {seed}\n", 1))
    return project


def start_run(cluster, project: Path) -> warm_cli.Process:
    return warm_cli.popen(["run", "search_spaces/s.yaml", "--quiet"], project, driver_env(cluster),
                          output=project / "run.log")


def checkpoints_in_store(fs) -> list[str]:
    fs.invalidate_cache()
    return [p for p in fs.find("eaglesearch/artifacts/scratch/trials") if p.endswith(f"/{CHECKPOINT_NAME}/{MANIFEST}")]


def wait_for(condition, proc: warm_cli.Process, project: Path, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the run ended before {what}: " + (project / "run.log").read_text()[-2000:]
        assert time.monotonic() < deadline, f"no {what} within {timeout:.0f} s"
        time.sleep(0.5)


def outage_messages(cluster, project: Path) -> dict[str, str]:
    """Every log that may hold the tracking-outage message: the trial workers' (on the nodes) and the driver's."""
    logs = [p for p in Path(cluster.base, "ray").glob("w*/session_*/logs/worker-*") if "session_latest" not in p.parts]
    return {str(path): path.read_text(errors="replace") for path in [*logs, project / "run.log"] if path.is_file()}


def test_the_database_and_the_tracking_server_restarted_mid_search_lose_nothing(cluster) -> None:
    """PostgreSQL restarts while the trial trains; then the MLflow server goes down and stays down until the trial
    has finished training, so the trial's whole record is written through the wait for the server, which says so
    once, naming the server and what to do, with no retry warnings or traceback."""
    from eaglesearch.execution.local_cluster import restart_postgres, start_mlflow_again, stop_mlflow

    project = long_search(cluster, "restarts", seed=2)
    proc = start_run(cluster, project)
    fs = s3(cluster)
    try:
        wait_for(lambda: checkpoints_in_store(fs), proc, project, "checkpoint in the shared store")
        restart_postgres(cluster)
        stop_mlflow(cluster)
        wait_for(lambda: not checkpoints_in_store(fs), proc, project, "end of training")  # the trial's close()
        start_mlflow_again(cluster)
        assert proc.wait(timeout=400) == 0, (project / "run.log").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    runs = trial_runs(cluster, "restarts")
    finished = [r for r in runs if r.data.tags["eaglesearch.status"] == "finished"]
    assert len(finished) == 1 and len(runs) == 1, [(r.info.status, r.data.tags["eaglesearch.status"]) for r in runs]
    assert finished[0].info.status == "FINISHED" and "objective" in finished[0].data.metrics
    assert len(board(project, "restarts")) == 1

    message = f"the MLflow tracking server at {cluster.tracking_uri} does not answer: start it again"
    logs = outage_messages(cluster, project)
    said = {path: text.count(message) for path, text in logs.items() if message in text}
    assert said and set(said.values()) == {1}, said  # once per process that waited, in the trial's log
    for path in said:
        assert "Retrying (" not in logs[path] and "TrackingUnavailable" not in logs[path], logs[path][-2000:]


def test_a_node_killed_mid_trial_then_the_driver_killed_lose_and_repeat_nothing(cluster) -> None:
    """One search of two trials, run one after the other. The node training the first is killed after its first
    checkpoint: the trial is retried on the other node and resumes from that checkpoint in the shared store. Once it
    has finished, the driver is killed (no Ctrl-C, no cleanup); the same ``run`` again serves it from the record
    and trains only the second. Last in the module: the killed node is not started again."""
    import signal

    from mlflow.tracking import MlflowClient

    from eaglesearch.execution.local_cluster import kill_node

    project = long_search(cluster, "node-loss", seed=1, steps=(NODE_LOSS_STEPS, SHORT_STEPS))
    fs = s3(cluster)

    def finished_keys() -> list[str]:
        try:
            runs = trial_runs(cluster, "node-loss")
        except AttributeError:  # the experiment does not exist yet
            return []
        return [r.data.tags["eaglesearch.key"] for r in runs if r.data.tags["eaglesearch.status"] == "finished"]

    proc = start_run(cluster, project)
    try:
        wait_for(lambda: checkpoints_in_store(fs), proc, project, "checkpoint in the shared store")
        (first,) = trial_runs(cluster, "node-loss")
        long_key, victim_id = first.data.tags["eaglesearch.key"], first.data.tags["eaglesearch.node"]
        victim = next(name for name, node in cluster.node_ids.items() if node == victim_id)
        kill_node(cluster, victim)
        wait_for(lambda: finished_keys(), proc, project, "finished trial")
        proc.send_signal(signal.SIGKILL)  # the driver's machine went away
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()

    runs = [r for r in trial_runs(cluster, "node-loss") if r.data.tags["eaglesearch.key"] == long_key]
    finished = [r for r in runs if r.data.tags["eaglesearch.status"] == "finished"]
    assert len(finished) == 1 and finished[0].data.tags["eaglesearch.node"] != victim_id
    assert {r.info.status for r in runs if r is not finished[0]} <= {"KILLED"}  # the lost attempt, not FAILED
    stages = MlflowClient(cluster.tracking_uri).search_runs(
        [finished[0].info.experiment_id], f"tags.`mlflow.parentRunId` = '{finished[0].info.run_id}'")
    resumed = [s.data.metrics.get("stage/resumed_from_step", 0) for s in stages]
    assert max(resumed) >= 5, resumed  # from the checkpoint in the shared store, not from step 0

    before = finished_keys()
    assert long_key in before
    again = eaglesearch(cluster, project, "run", "search_spaces/s.yaml", "--quiet")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    after = finished_keys()
    assert len(board(project, "node-loss")) == 2  # the full table, each trial counted once
    assert len(after) == len(set(after)) == 2 and set(before) <= set(after)  # nothing trained twice
