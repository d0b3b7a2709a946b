"""The fault suite: what a search does when training diverges, a worker dies, a checkpoint is damaged, two searches
share one store, or the user presses Ctrl-C. Each case runs the real code path (the CLI in a subprocess for the
end-to-end ones) in a temp project with its own MLflow store."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sqlite3
import time
from pathlib import Path

import pytest
import torch

from eaglesearch.train.checkpoint import CHECKPOINT_NAME, PREVIOUS_NAME, load_checkpoint
from tests import test_checkpoint as ckpt
from tests.e2e_helpers import cli, make_project
from tests.support import warm_cli

# The stage fixtures and runner of the checkpoint tests (a tiny model and dataset built once per module).
samples, tokenizer, dataset, run, Killed = ckpt.samples, ckpt.tokenizer, ckpt.dataset, ckpt.run, ckpt.Killed

CHECKPOINT_LOGGER = "eaglesearch.train.checkpoint"


# ------------------------------------------------------------------------------------------------ checkpoints


def _same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _killed_after_two_checkpoints(tokenizer, dataset, folder: Path) -> None:
    """Checkpoints every 4 steps; killed at step 9: ``last`` holds step 8, ``prev`` step 4."""
    with pytest.raises(Killed):
        run(tokenizer, dataset, folder, kill_at=9)
    last, prev = load_checkpoint(folder / CHECKPOINT_NAME), load_checkpoint(folder / PREVIOUS_NAME)
    assert last is not None and prev is not None and (last.step, prev.step) == (8, 4)


def test_truncated_checkpoint_resumes_from_the_previous_one(tmp_path: Path, tokenizer, dataset,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    plain, plain_weights, plain_log = run(tokenizer, dataset)
    folder = tmp_path / "stage"
    _killed_after_two_checkpoints(tokenizer, dataset, folder)
    last = folder / CHECKPOINT_NAME
    shard = last / "__0_0.distcp"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])  # a torn copy / full disk

    with caplog.at_level(logging.WARNING, logger=CHECKPOINT_LOGGER):
        resumed, weights, logged = run(tokenizer, dataset, folder)
    assert resumed.resumed_from == 4
    assert f"checkpoint {last} is truncated or damaged (__0_0.distcp has" in caplog.text
    assert f"resuming from {folder / PREVIOUS_NAME} (step 4) instead" in caplog.text
    assert resumed.losses == plain.losses and logged == plain_log  # bit-identical to a run that never stopped
    assert _same_weights(weights, plain_weights)


def test_checkpoint_with_altered_contents_is_caught_by_its_checksum(tmp_path: Path, tokenizer, dataset,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    plain, plain_weights, _ = run(tokenizer, dataset)
    folder = tmp_path / "stage"
    _killed_after_two_checkpoints(tokenizer, dataset, folder)
    for name in (CHECKPOINT_NAME, PREVIOUS_NAME):  # flip a byte of the tensor data of both; sizes stay the same
        shard = folder / name / "__0_0.distcp"
        data = bytearray(shard.read_bytes())
        data[len(data) // 2] ^= 0xFF
        shard.write_bytes(bytes(data))

    with caplog.at_level(logging.WARNING, logger=CHECKPOINT_LOGGER):
        resumed, weights, _ = run(tokenizer, dataset, folder)
    assert resumed.resumed_from == 0
    assert "does not match the checksum written with it" in caplog.text and str(folder / PREVIOUS_NAME) in caplog.text
    assert "the stage starts again from step 0" in caplog.text
    assert resumed.losses == plain.losses and _same_weights(weights, plain_weights)


def test_kill_between_the_two_renames_leaves_the_previous_checkpoint(
    tmp_path: Path, tokenizer, dataset, caplog: pytest.LogCaptureFixture
) -> None:
    plain, _, _ = run(tokenizer, dataset)
    folder = tmp_path / "stage"
    _killed_after_two_checkpoints(tokenizer, dataset, folder)
    shutil.rmtree(folder / CHECKPOINT_NAME)  # what a kill after ``last -> prev`` and before ``tmp -> last`` leaves
    with caplog.at_level(logging.WARNING, logger=CHECKPOINT_LOGGER):
        resumed, _, _ = run(tokenizer, dataset, folder)
    assert resumed.resumed_from == 4 and resumed.losses == plain.losses
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # nothing was damaged: no warning


# ------------------------------------------------------------------------------------------------ end to end

GRID_SPACE = """\
name: {name}
recipe: experiments/tiny_test.yaml
strategy:
  kind: grid
  factors:
    experts: [[{{name: clip, resolution: 64}}]]
    train.{factor}: [{values}]
resources: {{cpus_per_trial: 1, max_concurrent_trials: 1, max_failures: 1}}
"""


def grid_space(name: str, factor: str, *values: str) -> str:
    """Trials run in the order of ``values`` (one at a time, one Ray retry for a crashed trial process)."""
    return GRID_SPACE.format(name=name, factor=factor, values=", ".join(values))


def child_rows(db: Path) -> list[dict[str, str]]:
    """Every trial run in the sqlite store with its MLflow status and tags (straight from the file)."""
    con = sqlite3.connect(db)
    try:
        rows = con.execute("select run_uuid, status from runs").fetchall()
        tags = con.execute("select run_uuid, key, value from tags").fetchall()
    finally:
        con.close()
    by_run: dict[str, dict[str, str]] = {uuid: {"run_id": uuid, "status": status} for uuid, status in rows}
    for uuid, key, value in tags:
        by_run[uuid][key] = value
    return [r for r in by_run.values() if r.get("eaglesearch.kind") == "trial"]


def parent_rows(db: Path) -> list[dict[str, str]]:
    con = sqlite3.connect(db)
    try:
        return [{"run_id": r, "status": s, "search": v} for r, s, v in con.execute(
            "select r.run_uuid, r.status, t.value from runs r join tags k on k.run_uuid = r.run_uuid and "
            "k.key = 'eaglesearch.kind' and k.value = 'search' join tags t on t.run_uuid = r.run_uuid and "
            "t.key = 'eaglesearch.search' order by r.start_time")]
    finally:
        con.close()


def spawn(root: Path, *args: str) -> warm_cli.Process:
    """``eaglesearch run`` in its own session, so a test can signal it and everything it started; SIGINT as a
    terminal's foreground process has it (``tests/support/warm_cli.py``)."""
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", MLFLOW_TRACKING_URI=f"sqlite:///{root}/mlflow.db",
               EAGLESEARCH_HOME=str(root / ".eaglesearch"))
    return warm_cli.popen(["run", *args, "--quiet"], root, env, start_new_session=True)


def wait_for(condition, timeout: float, proc: warm_cli.Process | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except sqlite3.OperationalError:  # the store is being created or is locked for a moment
            pass
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the search ended (rc {proc.returncode}) before the condition held\n{out}\n{err}")
        time.sleep(0.2)
    pytest.fail(f"condition not met within {timeout:.0f} s")


def stop(proc: warm_cli.Process) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.slow
def test_nan_loss_fails_the_trial_with_the_step_and_the_search_goes_on(tmp_path: Path) -> None:
    root = make_project(tmp_path, {"nan": grid_space("nan-loss", "lr", "1.0e+30", "5.0e-4")})
    proc = cli(root, "run", "search_spaces/nan.yaml", "--executor", "inline", "--quiet", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = {r["eaglesearch.label"]: r for r in child_rows(root / "mlflow.db")}
    assert len(runs) == 2, runs
    diverged = next(r for label, r in runs.items() if "1e+30" in label or "1.0e+30" in label)
    healthy = next(r for r in runs.values() if r is not diverged)
    assert diverged["status"] == "FAILED" and diverged["eaglesearch.status"] == "failed"
    error = diverged["eaglesearch.error"]
    assert error.startswith("FloatingPointError: loss became") and " at step " in error and "lower lr" in error
    assert healthy["status"] == "FINISHED" and healthy["eaglesearch.status"] == "finished"


def _descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (Linux /proc), to find the Ray worker running a trial."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _trial_workers(pid: int) -> list[int]:
    found = []
    for child in _descendants(pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "ImplicitFunc" in cmdline:  # Ray's process title for a function trainable's actor
            found.append(child)
    return found


@pytest.mark.slow
def test_worker_killed_mid_trial_is_retried_then_failed(tmp_path: Path) -> None:
    """max_failures: 1 → the trial process is killed twice (first attempt and its retry), then the trial is FAILED
    and the search goes on to the next one."""
    # The first trial is long (it is killed long before it ends), the second short.
    root = make_project(tmp_path, {"kill": grid_space("worker-kill", "steps", "400", "4")})
    db = root / "mlflow.db"
    proc = spawn(root, "search_spaces/kill.yaml")
    killed: list[int] = []
    try:
        while len(killed) < 2:
            # Kill each attempt once it is inside the trial: its MLflow run has started.
            wait_for(lambda: len(child_rows(db)) > len(killed) and
                     any(p not in killed for p in _trial_workers(proc.pid)), 240, proc)
            victim = next(p for p in _trial_workers(proc.pid) if p not in killed)
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)
        out, err = proc.communicate(timeout=300)
    finally:
        stop(proc)
    assert proc.returncode == 0, out + err
    runs = child_rows(db)
    by_key: dict[str, list[dict[str, str]]] = {}
    for r in runs:
        by_key.setdefault(r["eaglesearch.key"], []).append(r)
    assert len(by_key) == 2, by_key
    attempts = max(by_key.values(), key=len)
    # The first attempt and one retry (max_failures: 1): the retry marks the attempt it replaces KILLED, and the
    # last one is FAILED with the reason once Ray gives up.
    assert sorted(r["status"] for r in attempts) == ["FAILED", "KILLED"], attempts
    (failed,) = [r for r in attempts if r["status"] == "FAILED"]
    assert failed["eaglesearch.status"] == "failed" and "failed repeatedly" in failed["eaglesearch.error"]
    (other,) = [rs for rs in by_key.values() if rs is not attempts]
    assert [r["status"] for r in other] == ["FINISHED"]


@pytest.mark.slow
def test_two_searches_on_one_store_at_once(tmp_path: Path) -> None:
    """Both complete; each parent holds only its own trials (one trial is common to both: trained by one and
    served to the other, or trained by both, but recorded under each parent once)."""
    spaces = {"a": grid_space("store-a", "lr", "5.0e-4", "1.0e-3"), "b": grid_space("store-b", "lr", "5.0e-4", "2.0e-3")}
    root = make_project(tmp_path, spaces)
    procs = {name: spawn(root, f"search_spaces/{name}.yaml", "--executor", "inline") for name in spaces}
    try:
        outputs = {name: p.communicate(timeout=300) for name, p in procs.items()}
    finally:
        for p in procs.values():
            stop(p)
    for name, p in procs.items():
        assert p.returncode == 0, outputs[name]
    parents = parent_rows(root / "mlflow.db")
    assert sorted(p["search"] for p in parents) == ["store-a", "store-b"]
    assert all(p["status"] == "FINISHED" for p in parents)
    children = child_rows(root / "mlflow.db")
    for parent in parents:
        mine = [c for c in children if c["mlflow.parentRunId"] == parent["run_id"]]
        assert len(mine) == 2 and {c["eaglesearch.search"] for c in mine} == {parent["search"]}, mine
        assert all(c["status"] == "FINISHED" for c in mine)
    assert len(children) == 4


@pytest.mark.slow
def test_ctrl_c_marks_the_parent_killed_and_a_rerun_completes(tmp_path: Path) -> None:
    # The second trial trains 400 steps (~10 s here), so the interrupt lands while it runs.
    root = make_project(tmp_path, {"g": grid_space("ctrl-c", "steps", "4", "400")})
    db = root / "mlflow.db"
    proc = spawn(root, "search_spaces/g.yaml")
    try:
        # Interrupt while the second trial trains, the first one finished.
        wait_for(lambda: sum(c["status"] == "FINISHED" for c in child_rows(db)) == 1 and len(child_rows(db)) == 2,
                 240, proc)
        proc.send_signal(signal.SIGINT)  # the eaglesearch process only, as a terminal's Ctrl-C would reach it
        out, err = proc.communicate(timeout=60)
    finally:
        stop(proc)
    assert proc.returncode == 130, out + err
    assert "interrupted" in err and "KILLED" in err and "Traceback" not in err
    (parent,) = parent_rows(db)
    assert parent["status"] == "KILLED"
    first = child_rows(db)
    finished = [c for c in first if c["status"] == "FINISHED"]
    assert len(finished) == 1 and all(c["status"] in ("FINISHED", "KILLED") for c in first), first

    # The rerun needs no Ray: the inline executor serves and trains the same keys.
    rerun = cli(root, "run", "search_spaces/g.yaml", "--quiet", "--executor", "inline", timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    parents = parent_rows(db)
    assert [p["status"] for p in parents] == ["KILLED", "FINISHED"]
    again = [c for c in child_rows(db) if c["mlflow.parentRunId"] == parents[1]["run_id"]]
    assert sorted(c["eaglesearch.status"] for c in again) == ["cached", "finished"]
    cached = next(c for c in again if c["eaglesearch.status"] == "cached")
    assert cached["eaglesearch.cached_from"] == finished[0]["run_id"]  # served from the record, not retrained
    assert not [c for c in child_rows(db) if c["status"] == "RUNNING"]

