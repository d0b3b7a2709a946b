"""What a multi-node run needs from its stores, without a cluster: which stores are refused (and the fix each
message names), and the checkpoint mirror that lets a trial retried on another node resume (an in-memory fsspec
store stands in for S3)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import fsspec
import pytest

from eaglesearch.execution.shared_storage import NodeLocalStore, node_local_problems, shared_workdir_declared
from eaglesearch.trial.scratch_mirror import SWEEP_AGE_S, ScratchMirror
from eaglesearch.trial.workspace import PER_TRIAL, Workspace, is_remote_url


def test_a_sqlite_record_and_a_local_artifact_folder_are_each_refused_with_their_fix() -> None:
    problems = node_local_problems("sqlite:////home/me/mlflow.db", "/home/me/.eaglesearch/artifacts", False)
    assert len(problems) == 2
    assert "sqlite:////home/me/mlflow.db is a file on this machine" in problems[0]
    assert "mlflow server --backend-store-uri postgresql://" in problems[0] and "--tracking-uri http" in problems[0]
    assert "/home/me/.eaglesearch/artifacts is a folder on this machine" in problems[1]
    assert "--artifacts s3://" in problems[1] and "--shared-workdir" in problems[1]


def test_a_tracking_server_and_an_s3_artifact_root_pass() -> None:
    assert node_local_problems("http://127.0.0.1:5001", "s3://bucket/artifacts", False) == []
    assert node_local_problems("postgresql://u@db:5432/mlflow", "gs://b/a", False) == []
    assert node_local_problems("http://tracking:5000", PER_TRIAL, False) == []


def test_a_declared_shared_mount_accepts_local_artifacts_but_never_sqlite() -> None:
    assert node_local_problems("http://tracking:5000", "/mnt/shared/artifacts", True) == []
    problems = node_local_problems("sqlite:////mnt/shared/mlflow.db", "/mnt/shared/artifacts", True)
    assert len(problems) == 1 and "SQLite's locks do not work across machines" in problems[0]


def test_file_urls_are_local_and_chained_urls_remote() -> None:
    assert not is_remote_url("file:///tmp/a") and not is_remote_url("/tmp/a")
    assert is_remote_url("s3://b/p") and is_remote_url("simplecache::s3://b/p")


def test_the_shared_workdir_declaration_comes_from_the_flag_or_the_environment(monkeypatch) -> None:
    monkeypatch.delenv("EAGLESEARCH_SHARED_WORKDIR", raising=False)
    assert not shared_workdir_declared(False) and shared_workdir_declared(True)
    monkeypatch.setenv("EAGLESEARCH_SHARED_WORKDIR", "1")
    assert shared_workdir_declared(False)


def test_the_refusal_is_a_cluster_error_the_cli_prints_without_a_traceback() -> None:
    from eaglesearch.execution.cluster import ClusterUnavailable

    assert issubclass(NodeLocalStore, ClusterUnavailable)


def test_the_artifact_root_is_resolved_without_creating_the_workdir(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("EAGLESEARCH_ARTIFACTS", raising=False)
    root = Workspace.root_path(tmp_path / "w")
    assert Workspace.artifacts_url(root) == str(tmp_path / "w" / "artifacts") and not root.exists()
    assert Workspace.artifacts_url(root, "s3://b/a") == "s3://b/a"
    assert Workspace.at(root, "s3://b/a").scratch_mirror() is not None
    assert Workspace.at(root).scratch_mirror() is None


@pytest.fixture
def remote() -> str:
    url = f"memory://mirror-{time.monotonic_ns()}"
    yield url
    fs = fsspec.filesystem("memory")
    if fs.exists(url):
        fs.rm(url, recursive=True)


def test_a_checkpoint_pushed_on_one_node_is_pulled_on_another(tmp_path: Path, remote: str) -> None:
    node_a, node_b = tmp_path / "a" / "scratch", tmp_path / "b" / "scratch"
    stage = node_a / "trials" / "k1" / "sft"
    stage.mkdir(parents=True)
    (stage / "last.pt").write_bytes(b"step 2")
    (stage / ".last.pt.tmp").write_bytes(b"half written")  # an atomic save's temp file: never uploaded
    mirror_a = ScratchMirror(node_a, remote)
    assert mirror_a.push(stage) == 1
    assert mirror_a.push(stage) == 0  # unchanged: nothing uploaded again
    (stage / "last.pt").write_bytes(b"step 4")
    os.utime(stage / "last.pt", ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    assert mirror_a.push(stage) == 1

    mirror_b = ScratchMirror(node_b, remote)
    target = node_b / "trials" / "k1" / "sft"
    assert mirror_b.pull(target) == 1
    assert (target / "last.pt").read_bytes() == b"step 4" and not (target / ".last.pt.tmp").exists()
    assert mirror_b.pull(target) == 0  # what the node already has is kept

    mirror_b.remove(node_b / "trials" / "k1")
    assert ScratchMirror(tmp_path / "c", remote).pull(tmp_path / "c" / "trials" / "k1" / "sft") == 0


def test_a_checkpoint_folder_travels_whole_and_one_being_written_stays(tmp_path: Path, remote: str) -> None:
    """The checkpoint folder format (train/checkpoint.py): DCP's ``.metadata`` belongs to the checkpoint and is
    uploaded; the temp folder of a checkpoint still being written is not."""
    stage = tmp_path / "a" / "scratch" / "trials" / "k1" / "sft"
    (stage / "last").mkdir(parents=True)
    for name in (".metadata", "__0_0.distcp", "state.pt", "manifest.json"):
        (stage / "last" / name).write_bytes(name.encode())
    (stage / ".last.step00000008.tmp").mkdir()
    (stage / ".last.step00000008.tmp" / "__0_0.distcp").write_bytes(b"half written")
    assert ScratchMirror(tmp_path / "a" / "scratch", remote).push(stage) == 4
    target = tmp_path / "b" / "scratch" / "trials" / "k1" / "sft"
    assert ScratchMirror(tmp_path / "b" / "scratch", remote).pull(target) == 4
    assert sorted(p.name for p in (target / "last").iterdir()) == [".metadata", "__0_0.distcp", "manifest.json",
                                                                    "state.pt"]
    assert not any(target.glob(".last.*"))


def test_closing_deletes_the_trial_and_the_finished_stage_folders_but_not_a_live_one(tmp_path: Path,
                                                                                     remote: str) -> None:
    scratch = tmp_path / "scratch"
    live, built, trial = (scratch / "stages" / "prealigned-live", scratch / "stages" / "prealigned-built",
                          scratch / "trials" / "k1" / "sft")
    mirror = ScratchMirror(scratch, remote)
    for folder in (live, built, trial):
        folder.mkdir(parents=True)
        (folder / "last.pt").write_bytes(b"x")
        mirror.push(folder)
    shutil.rmtree(built)  # what the stage pipeline and the trial delete locally when they are done
    shutil.rmtree(trial.parent)
    mirror.close(scratch / "trials" / "k1")
    other = tmp_path / "other"
    assert ScratchMirror(other, remote).pull(other / "stages" / "prealigned-live") == 1
    assert ScratchMirror(other, remote).pull(other / "stages" / "prealigned-built") == 0
    assert ScratchMirror(other, remote).pull(other / "trials" / "k1" / "sft") == 0


def test_pulling_a_folder_nobody_pushed_downloads_nothing(tmp_path: Path, remote: str) -> None:
    assert ScratchMirror(tmp_path, remote).pull(tmp_path / "trials" / "none" / "sft") == 0
    assert ScratchMirror(tmp_path, remote).push(tmp_path / "missing") == 0


def test_ray_train_keeps_a_multi_worker_trial_in_the_remote_store_when_there_is_one(tmp_path: Path) -> None:
    from pyarrow.fs import PyFileSystem

    from eaglesearch.execution.multi_worker import train_storage

    local = train_storage(Workspace.at(tmp_path / "w"))
    assert local == {"storage_path": str(tmp_path / "w" / "scratch" / "ray_train")}
    remote = train_storage(Workspace.at(tmp_path / "w", "memory://bucket/artifacts"))
    assert remote["storage_path"] == "/bucket/artifacts/ray_train"  # no scheme: the filesystem object carries it
    assert isinstance(remote["storage_filesystem"], PyFileSystem)


def test_a_released_rung_is_deleted_on_the_node_that_trained_it_and_a_later_claim_keeps_it(
        tmp_path: Path, remote: str) -> None:
    """The driver releases a discontinued candidate's checkpoints (workspace.remove_trial_scratch); the node that
    trained its rung deletes its own copy at its next trial start; a trial that claims the key keeps its folder."""
    node, driver = tmp_path / "node" / "scratch", tmp_path / "driver" / "scratch"
    rung, kept = node / "trials" / "loser" / "sft", node / "trials" / "winner" / "sft"
    on_node = ScratchMirror(node, remote)
    for folder in (rung, kept):
        folder.mkdir(parents=True)
        (folder / "last.pt").write_bytes(b"rung checkpoint")
        on_node.push(folder)
    old = time.time() - 2 * SWEEP_AGE_S
    for folder in (rung.parent, kept.parent):
        os.utime(folder, (old, old))
    ScratchMirror(driver, remote).release(driver / "trials" / "loser")  # the driver holds no copy itself
    assert ScratchMirror(tmp_path / "c", remote).pull(tmp_path / "c" / "trials" / "loser" / "sft") == 0

    assert on_node.sweep(node / "trials") == [rung.parent]
    assert not rung.parent.exists() and (kept / "last.pt").is_file()

    rung.mkdir(parents=True)  # a later search runs the same candidate on this node: it claims the key first
    os.utime(rung.parent, (old, old))
    on_node.claim(rung.parent)
    assert on_node.sweep(node / "trials") == [] and rung.is_dir()  # no marker any more
    ScratchMirror(driver, remote).release(driver / "trials" / "loser")
    os.utime(rung.parent)  # a trial wrote into it just now
    assert on_node.sweep(node / "trials") == [] and rung.is_dir()  # changed within SWEEP_AGE_S: left alone
