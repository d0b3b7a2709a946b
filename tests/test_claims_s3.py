"""The claim protocol (``eaglesearch/artifacts/claim_files.py``) over an S3 server (moto's, in this process):
racing processes get exactly one claim per artifact, a stale claim is taken over once, and two searches that need
the same artifact build it once. What moto lacks against real S3 (an atomic conditional PUT) is described in
``claim_files.py``. Needs ``moto[server]`` (the ``cluster`` extra)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from eaglesearch.artifacts import ArtifactStore

BUCKET = "claims"


@pytest.fixture(scope="module")
def s3_url() -> Iterator[str]:
    server_mod = pytest.importorskip("moto.server", reason="needs moto[server] (the cluster extra)")
    boto3 = pytest.importorskip("boto3")
    pytest.importorskip("s3fs")
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=url, aws_access_key_id="k", aws_secret_access_key="s",
                 region_name="us-east-1").create_bucket(Bucket=BUCKET)
    try:
        yield url
    finally:
        server.stop()


def stores(url: str, n: int, tmp_path: Path) -> list[ArtifactStore]:
    """``n`` stores on one bucket, each with its own S3 client and download cache, as ``n`` processes have."""
    options = {"endpoint_url": url, "key": "k", "secret": "s", "skip_instance_cache": True}
    return [ArtifactStore(f"s3://{BUCKET}/artifacts", storage_options=options, cache_dir=tmp_path / f"cache{i}")
            for i in range(n)]


def race(stores_: list[ArtifactStore], action) -> list:
    """``action(store)`` in one thread per store, released at once; the results in store order."""
    barrier = threading.Barrier(len(stores_))
    results: list = [None] * len(stores_)

    def go(i: int) -> None:
        barrier.wait()
        results[i] = action(stores_[i])

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(stores_))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_racing_claims_on_s3_give_exactly_one_holder_and_a_stale_one_is_taken_over_once(
        s3_url: str, tmp_path: Path) -> None:
    racers = stores(s3_url, 3, tmp_path)
    for key in ("0" * 16, "1" * 16):
        claims = race(racers, lambda s, key=key: s.claim("prealigned", key, owner="racer", ttl_s=60))
        held = [c for c in claims if c is not None]
        assert len(held) == 1, claims
        assert racers[0].claim_holder("prealigned", key).token == held[0].token
    # A holder that stopped beating (ttl passed): the waiters that see it take it over once, between them.
    dead = racers[0].claim("prealigned", "3" * 16, owner="dead", ttl_s=0.05)
    assert dead is not None
    threading.Event().wait(0.3)
    takeovers = [c for c in race(racers[1:], lambda s: s.claim("prealigned", "3" * 16, owner="w", ttl_s=60)) if c]
    assert len(takeovers) == 1 and not dead.held()
    takeovers[0].release()
    assert racers[0].claim_holder("prealigned", "3" * 16) is None


def test_two_searches_needing_one_artifact_on_s3_build_it_once(s3_url: str, tmp_path: Path) -> None:
    builds: list[int] = []

    def build(folder: Path) -> None:
        builds.append(1)
        (folder / "weights.bin").write_bytes(b"aligned")

    results = race(stores(s3_url, 2, tmp_path),
                   lambda s: s.obtain("prealigned", "4" * 16, {"expert": "clip"}, build, poll_s=0.05))
    assert len(builds) == 1
    assert all((Path(r) / "weights.bin").read_bytes() == b"aligned" for r in results)
