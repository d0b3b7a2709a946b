"""The stage-artifact store: content keys, complete-only reads, exclusive claims, and build-once across processes."""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

from eaglesearch.artifacts import MARKER, ArtifactStore, ClaimLost, WaitState, artifact_key

KIND = "prealigned_expert"
PAYLOAD = {"expert": {"name": "clip", "resolution": 224}, "lm": {"name": "tiny", "hidden": 64},
           "data": {"name": "planted", "n": 128}, "stage": {"steps": 20, "lr": 1e-3}, "seed": 0}


@pytest.fixture(params=["local", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ArtifactStore]:
    if request.param == "local":
        yield ArtifactStore(tmp_path / "artifacts")
        return
    root = f"memory://eaglesearch-test-{uuid.uuid4().hex}"
    yield ArtifactStore(root, cache_dir=tmp_path / "cache")
    with contextlib.suppress(FileNotFoundError):
        fsspec.filesystem("memory").rm(root.removeprefix("memory:/"), recursive=True)


def _artifact_dir(tmp_path: Path, text: str = "weights") -> Path:
    folder = tmp_path / f"built-{uuid.uuid4().hex[:6]}"
    (folder / "sub").mkdir(parents=True)
    (folder / "projector.bin").write_text(text)
    (folder / "sub" / "config.json").write_text('{"a": 1}')
    return folder


# ---------------------------------------------------------------- keys

def test_key_is_stable_and_order_independent() -> None:
    reordered = {k: PAYLOAD[k] for k in reversed(list(PAYLOAD))}
    reordered["expert"] = {"resolution": 224, "name": "clip"}
    key = artifact_key(PAYLOAD)
    assert key == artifact_key(reordered)
    assert len(key) == 20 and all(c in "0123456789abcdef" for c in key)
    # Pinned: a change in canonicalisation would silently orphan every stored artifact.
    assert artifact_key({"a": 1, "b": [1, 2]}) == artifact_key({"b": [1, 2], "a": 1}) == "8baa73198470c7bb4c3c"


@pytest.mark.parametrize("change", [
    ("expert", {"name": "clip", "resolution": 336}),
    ("lm", {"name": "tiny", "hidden": 128}),
    ("data", {"name": "planted", "n": 256}),
    ("stage", {"steps": 20, "lr": 2e-3}),
    ("seed", 1),
])
def test_key_changes_with_every_dependency(change: tuple[str, object]) -> None:
    field, value = change
    assert artifact_key({**PAYLOAD, field: value}) != artifact_key(PAYLOAD)


def test_key_rejects_non_json_payloads() -> None:
    with pytest.raises(TypeError, match="model_dump"):
        artifact_key({"path": Path("/x")})
    with pytest.raises(TypeError):
        artifact_key({"lr": float("nan")})


def test_names_are_validated(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    for bad_kind, bad_key in [("../up", "k"), (KIND, "a/b"), (KIND, ""), (KIND, "x.claim")]:
        with pytest.raises(ValueError, match="not a valid name"):
            store.get(bad_kind, bad_key)


# ---------------------------------------------------------------- put / get

def test_put_get_round_trip(store: ArtifactStore, tmp_path: Path) -> None:
    key = artifact_key(PAYLOAD)
    assert store.get(KIND, key) is None
    store.put(KIND, key, _artifact_dir(tmp_path), PAYLOAD)
    got = store.get(KIND, key)
    assert got is not None and got.is_dir()
    assert (got / "projector.bin").read_text() == "weights"
    assert json.loads((got / "sub" / "config.json").read_text()) == {"a": 1}
    marker = json.loads((got / MARKER).read_text())
    assert marker["key"] == key and marker["payload"] == PAYLOAD and marker["pid"] == os.getpid()
    assert {"created_at", "host"} <= set(marker)
    assert store.list(KIND) == [key] and store.count(KIND) == 1
    assert store.get(KIND, key) == got


def test_put_never_overwrites_a_complete_artifact(store: ArtifactStore, tmp_path: Path) -> None:
    store.put(KIND, "k1", _artifact_dir(tmp_path, "first"), PAYLOAD)
    store.put(KIND, "k1", _artifact_dir(tmp_path, "second"), PAYLOAD)
    assert (store.get(KIND, "k1") / "projector.bin").read_text() == "first"


def test_put_refuses_a_file_named_like_the_marker(store: ArtifactStore, tmp_path: Path) -> None:
    folder = _artifact_dir(tmp_path)
    (folder / MARKER).write_text("mine")
    with pytest.raises(ValueError, match="reserves"):
        store.put(KIND, "k1", folder, PAYLOAD)
    assert store.get(KIND, "k1") is None


def test_remote_artifact_is_downloaded_once(tmp_path: Path) -> None:
    root = f"memory://eaglesearch-test-{uuid.uuid4().hex}"
    store = ArtifactStore(root, cache_dir=tmp_path / "cache")
    store.put(KIND, "k1", _artifact_dir(tmp_path), PAYLOAD)
    first = store.get(KIND, "k1")
    assert first == tmp_path / "cache" / KIND / "k1"
    store.fs.rm(store._path(KIND, "k1", "projector.bin"))  # the cached copy is served without the store
    again = ArtifactStore(root, cache_dir=tmp_path / "cache").get(KIND, "k1")
    assert again == first and (again / "projector.bin").read_text() == "weights"
    store.fs.rm(store.root, recursive=True)


def test_partial_artifact_is_not_returned(store: ArtifactStore, tmp_path: Path) -> None:
    fs = store.fs
    fs.makedirs(store._path(KIND, "k1"), exist_ok=True)
    fs.pipe_file(store._path(KIND, "k1", "projector.bin"), b"half-written")
    assert store.get(KIND, "k1") is None
    assert store.list(KIND) == [] and store.count(KIND) == 0
    store.put(KIND, "k1", _artifact_dir(tmp_path), PAYLOAD)  # a later put replaces the partial one
    assert (store.get(KIND, "k1") / "projector.bin").read_text() == "weights"
    fs.makedirs(store._path(KIND, "k2"), exist_ok=True)
    fs.pipe_file(store._path(KIND, "k2", MARKER), b"{trunc")  # an unparsable marker is not complete either
    assert store.get(KIND, "k2") is None and store.count(KIND) == 1


def test_file_url_root_is_local(tmp_path: Path) -> None:
    store = ArtifactStore(f"file://{tmp_path}/arts")
    assert store.is_local
    store.put(KIND, "k1", _artifact_dir(tmp_path), PAYLOAD)
    assert store.get(KIND, "k1") == tmp_path / "arts" / KIND / "k1"


# ---------------------------------------------------------------- claims

def test_claim_is_exclusive_until_released(store: ArtifactStore) -> None:
    first = store.claim(KIND, "k1", "alice")
    assert first is not None and first.held()
    assert store.claim(KIND, "k1", "bob") is None
    assert store.claim_holder(KIND, "k1").owner == "alice"
    assert store.claim(KIND, "k2", "bob") is not None  # claims are per artifact
    first.refresh()
    first.release()
    first.release()  # idempotent
    assert store.claim_holder(KIND, "k1") is None
    with store.claim(KIND, "k1", "bob") as second:
        assert second is not None and second.held()
    assert store.claim_holder(KIND, "k1") is None


class _Clock:
    """The claims' clock, moved by the test: whether a claim is fresh never depends on how fast this process runs."""

    def __init__(self) -> None:
        self.now = time.time()

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    from eaglesearch.artifacts import claims

    fake = _Clock()
    monkeypatch.setattr(claims, "time", fake)
    return fake


def test_stale_claim_by_ttl_is_taken_over(store: ArtifactStore, caplog: pytest.LogCaptureFixture,
                                          clock: _Clock) -> None:
    old = store.claim(KIND, "k1", "alice", ttl_s=0.2)
    clock.advance(0.1)
    assert store.claim(KIND, "k1", "bob") is None
    clock.advance(0.2)
    with caplog.at_level(logging.WARNING, logger="eaglesearch.artifacts"):
        new = store.claim(KIND, "k1", "bob")
    assert new is not None and store.claim_holder(KIND, "k1").owner == "bob"
    assert "taking over stale claim" in caplog.text and "alice" in caplog.text and "ttl" in caplog.text
    assert not old.held()
    with pytest.raises(ClaimLost, match="bob"):
        old.refresh()
    old.release()  # must not remove bob's claim
    assert store.claim_holder(KIND, "k1").owner == "bob"
    new.release()


def _claim_and_die(root: str, key: str) -> None:
    ArtifactStore(root).claim(KIND, key, "doomed")
    os._exit(0)  # exits holding the claim


def test_claim_of_a_dead_process_is_taken_over(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = str(tmp_path / "artifacts")
    proc = multiprocessing.get_context("spawn").Process(target=_claim_and_die, args=(root, "k1"))
    proc.start()
    proc.join(60)
    store = ArtifactStore(root)
    holder = store.claim_holder(KIND, "k1")
    assert holder is not None and holder.owner == "doomed" and holder.pid == proc.pid
    with caplog.at_level(logging.WARNING, logger="eaglesearch.artifacts"):
        claim = store.claim(KIND, "k1", "heir")  # ttl is an hour: only the dead pid makes it stale
    assert claim is not None
    assert f"process {proc.pid}" in caplog.text and "no longer exists" in caplog.text
    claim.release()


def test_only_one_of_many_threads_takes_over_a_stale_claim(store: ArtifactStore, clock: _Clock) -> None:
    store.claim(KIND, "k1", "alice", ttl_s=0.1)
    clock.advance(0.2)
    won: list[str] = []
    barrier = threading.Barrier(8)

    def contend(i: int) -> None:
        barrier.wait()
        if store.claim(KIND, "k1", f"t{i}") is not None:
            won.append(f"t{i}")

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and store.claim_holder(KIND, "k1").owner == won[0]


# ---------------------------------------------------------------- obtain

def _obtain_in_process(root: str, pid_log: str, barrier, results) -> None:
    store = ArtifactStore(root)

    def build(folder: Path) -> None:
        time.sleep(0.5)
        (folder / "projector.bin").write_text(f"built by {os.getpid()}")
        with open(pid_log, "a") as handle:
            handle.write(f"{os.getpid()}\n")

    barrier.wait()
    path = store.obtain(KIND, artifact_key(PAYLOAD), PAYLOAD, build, poll_s=0.05, timeout_s=60)
    results.put((os.getpid(), str(path), (path / "projector.bin").read_text()))


def test_obtain_builds_once_across_processes(tmp_path: Path) -> None:
    root, pid_log = str(tmp_path / "artifacts"), str(tmp_path / "builders.txt")
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_obtain_in_process, args=(root, pid_log, barrier, results)) for _ in range(4)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=90) for _ in procs]
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    builders = Path(pid_log).read_text().split()
    assert len(builders) == 1
    assert {path for _, path, _ in outcomes} == {str(Path(root) / KIND / artifact_key(PAYLOAD))}
    assert {text for _, _, text in outcomes} == {f"built by {builders[0]}"}
    assert ArtifactStore(root).count(KIND) == 1
    assert ArtifactStore(root).claim_holder(KIND, artifact_key(PAYLOAD)) is None


def test_obtain_returns_a_complete_artifact_without_building(store: ArtifactStore, tmp_path: Path) -> None:
    store.put(KIND, "k1", _artifact_dir(tmp_path), PAYLOAD)

    def build(folder: Path) -> None:
        raise AssertionError("must not build")

    assert (store.obtain(KIND, "k1", PAYLOAD, build) / "projector.bin").read_text() == "weights"


def test_obtain_on_remote_store_builds_and_caches(tmp_path: Path) -> None:
    root = f"memory://eaglesearch-test-{uuid.uuid4().hex}"
    store = ArtifactStore(root, cache_dir=tmp_path / "cache")
    calls: list[Path] = []

    def build(folder: Path) -> None:
        calls.append(folder)
        (folder / "projector.bin").write_text("remote")

    path = store.obtain(KIND, "k1", PAYLOAD, build)
    assert path == tmp_path / "cache" / KIND / "k1" and (path / "projector.bin").read_text() == "remote"
    assert store.fs.cat_file(store._path(KIND, "k1", "projector.bin")) == b"remote"
    assert store.obtain(KIND, "k1", PAYLOAD, build) == path and len(calls) == 1
    assert store.count(KIND) == 1 and store.claim_holder(KIND, "k1") is None
    store.fs.rm(store.root, recursive=True)


def test_failed_build_releases_the_claim_for_a_waiter(store: ArtifactStore) -> None:
    started, fail_now = threading.Event(), threading.Event()
    errors: list[BaseException] = []
    waits: list[WaitState] = []

    def failing(folder: Path) -> None:
        (folder / "half").write_text("x")
        started.set()
        fail_now.wait(10)
        raise RuntimeError("out of memory")

    def first() -> None:
        try:
            store.obtain(KIND, "k1", PAYLOAD, failing, owner="first")
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=first)
    thread.start()
    assert started.wait(10)
    built: list[str] = []

    def on_wait(state: WaitState) -> None:
        waits.append(state)
        fail_now.set()

    def good(folder: Path) -> None:
        built.append("second")
        (folder / "projector.bin").write_text("ok")

    path = store.obtain(KIND, "k1", PAYLOAD, good, poll_s=0.02, timeout_s=20, on_wait=on_wait, owner="second")
    thread.join(10)
    assert [str(e) for e in errors] == ["out of memory"]
    assert built == ["second"] and (path / "projector.bin").read_text() == "ok"
    assert not (path / "half").exists()
    assert waits and waits[0].holder is not None and waits[0].holder.owner == "first"
    assert store.count(KIND) == 1 and store.claim_holder(KIND, "k1") is None


def test_failed_build_then_a_later_call_builds(store: ArtifactStore) -> None:
    def failing(folder: Path) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        store.obtain(KIND, "k1", PAYLOAD, failing)
    assert store.claim_holder(KIND, "k1") is None and store.count(KIND) == 0
    path = store.obtain(KIND, "k1", PAYLOAD, lambda folder: (folder / "w").write_text("ok"))
    assert (path / "w").read_text() == "ok"


def test_obtain_times_out_naming_artifact_and_holder(store: ArtifactStore) -> None:
    claim = store.claim(KIND, "k1", "slow-trainer")
    with pytest.raises(TimeoutError, match=r"prealigned_expert/k1.*slow-trainer"):
        store.obtain(KIND, "k1", PAYLOAD, lambda folder: None, poll_s=0.02, timeout_s=0.2)
    claim.release()


def test_obtain_takes_over_when_the_builder_goes_stale(store: ArtifactStore) -> None:
    store.claim(KIND, "k1", "vanished", ttl_s=0.2)  # never refreshed, never released
    path = store.obtain(KIND, "k1", PAYLOAD, lambda folder: (folder / "w").write_text("ok"), poll_s=0.05,
                        timeout_s=10)
    assert (path / "w").read_text() == "ok"


def test_count_counts_complete_artifacts_per_kind(store: ArtifactStore, tmp_path: Path) -> None:
    assert store.count(KIND) == 0
    for i in range(3):
        store.put(KIND, f"k{i}", _artifact_dir(tmp_path), {**PAYLOAD, "seed": i})
    store.put("other_kind", "k0", _artifact_dir(tmp_path), PAYLOAD)
    held = store.claim(KIND, "k9", "someone")  # a claim is not an artifact
    assert store.count(KIND) == 3 and store.list(KIND) == ["k0", "k1", "k2"]
    assert store.count("other_kind") == 1
    held.release()
