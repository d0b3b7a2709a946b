"""A Ray Train worker group that loses a rank (``eaglesearch/execution/multi_worker.py``): the trial is retried
under Ray Train's ``FailureConfig``, the new group resumes from the stage checkpoint instead of step 0, and the
trial's result is recorded once. Local Ray, two CPU workers; one rank's process is killed once, after the first
checkpoint."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from eaglesearch.spec import TrialSpec
from eaglesearch.train.checkpoint import CHECKPOINT_NAME, MANIFEST

pytestmark = pytest.mark.slow

TRIAL = {
    "model": {"experts": [{"name": "clip", "preset": "tiny_random", "resolution": 64}], "grid": 4,
              "lm": {"kind": "tiny_llama", "hidden_size": 32, "num_layers": 1, "num_heads": 2, "num_kv_heads": 1,
                     "intermediate_size": 64},
              "tokenizer": {"kind": "offline_bpe", "vocab_size": 300}},
    "data": {"image_size": 64, "max_length": 96,
             "synthetic": {"tasks": ["count"], "train_per_task": 16, "eval_per_task": 2, "image_size": 64}},
    # Long enough past the first checkpoint (step 10) that the killer, polling every 0.2 s, finds a rank long before
    # the trial ends.
    "train": {"steps": 120, "batch_size": 4, "lr": 5.0e-4, "log_every": 10, "checkpoint_every": 10},
    "eval": {"batch_size": 4, "max_new_tokens": 2},
    "seed": 5,
}


def kill_one_rank_after_first_checkpoint(workdir: Path, killed: list[int], stop: threading.Event) -> None:
    """Wait for a stage checkpoint under ``workdir``, then SIGKILL one Ray Train worker process of this test's own
    Ray (a descendant of this process: never another session's)."""
    import psutil

    while not stop.is_set():
        if any(workdir.rglob(f"{CHECKPOINT_NAME}/{MANIFEST}")):
            break
        time.sleep(0.2)
    while not stop.is_set() and not killed:
        for proc in psutil.Process(os.getpid()).children(recursive=True):
            try:
                title = " ".join(proc.cmdline())
            except psutil.Error:
                continue
            if "RayTrainWorker" in title:
                os.kill(proc.pid, signal.SIGKILL)
                killed.append(proc.pid)
                return
        time.sleep(0.2)


def lose_a_rank(tmp: str) -> tuple[int, str, str | None, list[str], float] | str:
    """One two-worker trial on a fresh local Ray, one rank SIGKILLed after the first checkpoint: (ranks killed,
    trial status, error, status tags of the trial's runs, largest resumed-from step), or why Ray cannot start here."""
    import ray

    from eaglesearch.execution.request import TrialRequest
    from eaglesearch.execution.worker import execute_trial
    from eaglesearch.tracking import TrackingStore

    tmp_path = Path(tmp)
    trial = TrialSpec.model_validate(TRIAL)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    store = TrackingStore(uri)
    experiment = store.ensure_experiment("rank-loss")
    parent, _ = store.open_parent("rank-loss", "f", "rank-loss-f", "name: rank-loss\n", {})
    request = TrialRequest(trial=trial, key=trial.key, search="rank-loss", strategy="grid", round=0, role="grid",
                           added=None, label=trial.label, parent_id=parent, experiment_id=experiment,
                           tracking_uri=uri, workdir=str(tmp_path / "work"), artifacts=str(tmp_path / "artifacts"),
                           threads=1, workers=2, max_failures=1)
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    except Exception as err:  # noqa: BLE001
        return f"Ray cannot start here: {err}"
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=kill_one_rank_after_first_checkpoint, args=(tmp_path / "work", killed, stop),
                              daemon=True)
    killer.start()
    try:
        result = execute_trial(request)
    finally:
        stop.set()
        killer.join(timeout=10)
        ray.shutdown()
    runs = store.trial_runs(parent)
    stages = store.stage_runs("rank-loss")
    return (len(killed), result.status, result.error, list(runs["status_tag"]),
            float(stages["stage/resumed_from_step"].max()))


def test_a_worker_group_losing_a_rank_resumes_from_its_checkpoint_and_records_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ray")
    pytest.importorskip("ray.train.torch")
    # Ray's memory monitor kills workers when the *machine* is near full (a shared CI box): the only rank lost
    # here must be the one this test kills.
    monkeypatch.setenv("RAY_memory_monitor_refresh_ms", "0")
    for name in ("RAY_AIR_NEW_OUTPUT", "RAY_CHDIR_TO_TRIAL_DIR", "TUNE_DISABLE_SIGINT_HANDLER"):
        monkeypatch.delenv(name, raising=False)  # set in this process by an earlier Tune search (run_with_ray)
    outcome = lose_a_rank(str(tmp_path))
    if isinstance(outcome, str):
        pytest.skip(outcome)
    killed, status, error, tags, resumed_from = outcome
    assert killed == 1, "no Ray Train worker was killed: the trial finished before its first checkpoint"
    assert status == "finished", error
    assert tags == ["finished"]  # recorded once
    assert resumed_from > 0  # the new group resumed from the checkpoint
