"""A real trial process SIGKILLed mid-training resumes from its in-trial checkpoint and ends where an uninterrupted
run of the same search ends, to the last bit of the objective."""

from __future__ import annotations

import os
import signal
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from eaglesearch.tracking import TrackingStore
from eaglesearch.train.checkpoint import CheckpointError, load_checkpoint
from tests.e2e_helpers import cli, tiny_recipe
from tests.support import warm_cli

pytestmark = pytest.mark.slow

STEPS = 40
STAGE = f"batch_size: 8, lr: 1.0e-3, log_every: 5, checkpoint_every: 5, steps: {STEPS}"
RECIPE = tiny_recipe("ckpt_test", train=f"{{{STAGE}}}")
SPACE = textwrap.dedent("""\
    name: ckpt-kill
    recipe: experiments/ckpt_test.yaml
    strategy:
      kind: grid
      factors:
        experts: [[{name: clip, resolution: 64}]]
    resources: {cpus_per_trial: 1, max_concurrent_trials: 1}
    """)


def project(root: Path, recipe: str = RECIPE) -> Path:
    (root / "experiments").mkdir(parents=True)
    (root / "experiments" / "ckpt_test.yaml").write_text(recipe)
    (root / "search_spaces").mkdir()
    (root / "search_spaces" / "kill.yaml").write_text(SPACE)
    return root


def the_trial(root: Path) -> pd.Series:
    store = TrackingStore(f"sqlite:///{root}/mlflow.db")
    parent = store.latest_parent("ckpt-kill")
    assert parent is not None
    runs = store.trial_runs(parent)
    assert len(runs) == 1, runs
    return runs.iloc[0]


def checkpointed_step(root: Path, pattern: str = "trials/*/*/last") -> int:
    """The step of the newest in-trial checkpoint under the project's workspace (0 when there is none yet):
    ``trials/<trial key>/<stage>/last`` for the combined model's stages, ``stages/<artifact>/last`` for
    per-expert stages."""
    steps = [0]
    for path in (root / ".eaglesearch" / "scratch").glob(pattern):
        try:
            found = load_checkpoint(path)
        except (CheckpointError, FileNotFoundError):  # removed under us when the trial just finished
            continue
        steps.append(found.step if found is not None else 0)
    return max(steps)


def run_and_kill(root: Path, pattern: str) -> int:
    """Start the search in its own process group and SIGKILL it as soon as a checkpoint matching ``pattern`` holds
    a step strictly inside the stage; the step it was killed after (0: it never got there)."""
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", MLFLOW_TRACKING_URI=f"sqlite:///{root}/mlflow.db",
               EAGLESEARCH_HOME=str(root / ".eaglesearch"))
    proc = warm_cli.popen(["run", "search_spaces/kill.yaml", "--executor", "inline", "--quiet"], root, env,
                          output=root / "run.log", start_new_session=True)
    deadline, killed_after = time.monotonic() + 300, 0
    while time.monotonic() < deadline and proc.poll() is None:
        killed_after = checkpointed_step(root, pattern)
        if 0 < killed_after < STEPS:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait()
    return killed_after


def test_sigkilled_trial_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    ref_root = project(tmp_path / "ref")
    ref = cli(ref_root, "run", "search_spaces/kill.yaml", "--executor", "inline", "--quiet")
    assert ref.returncode == 0, ref.stdout + ref.stderr
    reference = the_trial(ref_root)
    assert reference["train/resumed_from_step"] == 0
    assert not list((ref_root / ".eaglesearch" / "scratch" / "trials").glob("*")), "checkpoints left after success"

    root = project(tmp_path / "kill")
    killed_after = run_and_kill(root, "trials/*/*/last")
    assert 0 < killed_after < STEPS, "the trial finished before it could be interrupted"
    assert checkpointed_step(root) >= killed_after  # the kill left a usable checkpoint behind

    resumed = cli(root, "run", "search_spaces/kill.yaml", "--executor", "inline", "--quiet")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    trial = the_trial(root)
    assert trial["status_tag"] == "finished"
    assert trial["train/resumed_from_step"] >= killed_after > 0
    assert trial["key"] == reference["key"]
    assert trial["objective"] == reference["objective"]  # exact: the resumed stage is bit-identical
    assert trial["train/loss_final"] == reference["train/loss_final"]
    assert TrackingStore(f"sqlite:///{root}/mlflow.db").metric_history(trial["run_id"], "train/loss") == \
        TrackingStore(f"sqlite:///{ref_root}/mlflow.db").metric_history(reference["run_id"], "train/loss")
    assert not list((root / ".eaglesearch" / "scratch" / "trials").glob("*")), "checkpoints left after success"


PREALIGN_RECIPE = tiny_recipe("ckpt_test", train=(
    "\n  stages:\n"
    f"    - {{name: prealign, per_expert: true, trainable: {{experts: all, projector: true, lm: none}}, {STAGE}}}\n"
    "    - {name: sft, steps: 6, batch_size: 8, lr: 1.0e-3, log_every: 1}"))


def test_sigkilled_per_expert_stage_resumes_and_its_claim_is_taken_over(tmp_path: Path) -> None:
    """Killed while building a pre-aligned expert: the rerun takes over the dead process's claim on the artifact,
    resumes the stage from its checkpoint, and ends bit-identical to an uninterrupted run."""
    assert "prealign" in PREALIGN_RECIPE
    ref_root = project(tmp_path / "ref", PREALIGN_RECIPE)
    ref = cli(ref_root, "run", "search_spaces/kill.yaml", "--executor", "inline", "--quiet")
    assert ref.returncode == 0, ref.stdout + ref.stderr
    reference = the_trial(ref_root)

    root = project(tmp_path / "kill", PREALIGN_RECIPE)
    killed_after = run_and_kill(root, "stages/*/last")
    assert 0 < killed_after < STEPS, "the stage finished before it could be interrupted"
    claims = list((root / ".eaglesearch" / "artifacts" / "prealigned_expert").glob("*.claim"))
    assert len(claims) == 1, "the killed builder's claim is still there"

    resumed = cli(root, "run", "search_spaces/kill.yaml", "--executor", "inline", "--quiet")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    trial = the_trial(root)
    assert trial["status_tag"] == "finished" and trial["objective"] == reference["objective"]
    store = TrackingStore(f"sqlite:///{root}/mlflow.db")
    stage = store.stage_runs("ckpt-kill", trial_run_id=trial["run_id"]).set_index("stage").loc["prealign"]
    assert stage["status"] == "trained"
    assert store.get_run(stage["run_id"]).metrics["stage/resumed_from_step"] >= killed_after
    ref_store = TrackingStore(f"sqlite:///{ref_root}/mlflow.db")
    ref_stage = ref_store.stage_runs("ckpt-kill", trial_run_id=reference["run_id"]).set_index("stage").loc["prealign"]
    assert store.metric_history(stage["run_id"], "train/loss") == ref_store.metric_history(ref_stage["run_id"],
                                                                                           "train/loss")
    assert not list((root / ".eaglesearch" / "artifacts" / "prealigned_expert").glob("*.claim"))
