"""Stage artifacts: content-addressed results of a training stage, built once and shared by every trial that needs them.

A stage artifact (e.g. Eagle's pre-aligned vision expert: the expert plus its projector after stage 1) is a folder of
files named by ``<kind>/<key>``, where ``key = artifact_key(payload)`` hashes everything the stage's result depends on.
Trials of one round, later rounds and other searches find it by key instead of training it again.

Layout under the store's root (a local folder, ``file://``, ``memory://``, ``s3://`` ... any fsspec URL)::

    <root>/<kind>/<key>/...             the artifact's files
    <root>/<kind>/<key>/COMPLETE        JSON marker written LAST: an artifact without it is never returned
    <root>/<kind>/<key>.claim           who is building it now (owner, pid, host, heartbeat time, ttl)
    <root>/<kind>/.staging/             local roots only: builds and copies in progress, renamed into place
    <root>/<kind>/.locks/               local roots only: lock files serialising claim takeover/refresh/release
    <root>/<kind>/.takeovers/           remote roots only: one write-if-absent marker per stale claim taken over

Claims (who builds an artifact now) are described in :mod:`eaglesearch.artifacts.claim_files`.

Complete artifacts are immutable: :meth:`ArtifactStore.put` never overwrites one, so a remote artifact downloaded into
the local cache (``~/.cache/eaglesearch/artifacts/<kind>/<key>``) stays valid and is downloaded once per machine.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eaglesearch.artifacts.claim_files import ClaimFiles
from eaglesearch.artifacts.claims import HOST, Claim, WaitState
from eaglesearch.artifacts.files import file_lock, fsync_dir, fsync_tree
from eaglesearch.artifacts.keys import NAME, check_name

log = logging.getLogger(__name__)

MARKER = "COMPLETE"


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class ArtifactStore(ClaimFiles):
    """Stage artifacts under one root: a local folder (default) or any fsspec URL on a cluster.

    ``cache_dir`` is where artifacts of a remote root are downloaded (default ``~/.cache/eaglesearch/artifacts``);
    ``storage_options`` go to fsspec (credentials, endpoint...). A local root is used in place, without a cache.
    """

    # ------------------------------------------------------------------ complete artifacts

    def _read_marker(self, kind: str, key: str) -> dict[str, Any] | None:
        path = self._path(kind, key, MARKER)
        try:
            raw = Path(path).read_bytes() if self.is_local else self.fs.cat_file(path)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        try:
            marker = json.loads(raw)
        except ValueError:
            log.warning("artifact marker %s is not valid JSON; treating %s/%s as incomplete", path, kind, key)
            return None
        return marker if isinstance(marker, dict) else None

    def is_complete(self, kind: str, key: str) -> bool:
        self._artifact_path(kind, key)
        return self._read_marker(kind, key) is not None

    def marker(self, kind: str, key: str) -> dict[str, Any] | None:
        """The ``COMPLETE`` marker of an artifact (created_at, host, pid, key, payload, files), or None."""
        self._artifact_path(kind, key)
        return self._read_marker(kind, key)

    def get(self, kind: str, key: str) -> Path | None:
        """The local folder of a complete artifact, or None if there is none (yet).

        Local roots return the folder in the store; remote ones download it into the cache once per machine.
        """
        target = self._artifact_path(kind, key)
        if self.is_local:
            return Path(target) if self._read_marker(kind, key) is not None else None
        cached = self._cache_path(kind, key)
        if (cached / MARKER).is_file():
            return cached
        marker = self._read_marker(kind, key)
        if marker is None:
            return None
        with file_lock(self.cache_dir / ".locks" / kind / f"{key}.lock"):
            if (cached / MARKER).is_file():
                return cached
            download = cached.parent / f".download-{key}-{uuid.uuid4().hex[:8]}"
            try:
                files = marker.get("files")
                if not isinstance(files, dict):  # a marker without a manifest: list the folder instead
                    found = self.fs.find(target)
                    files = {p[len(target) + 1:]: None for p in found if not p.endswith("/" + MARKER)}
                for rel, size in files.items():
                    local = download / rel
                    local.parent.mkdir(parents=True, exist_ok=True)
                    self.fs.get_file(f"{target}/{rel}", str(local))
                    if size is not None and local.stat().st_size != size:
                        raise OSError(f"downloaded {target}/{rel} has {local.stat().st_size} bytes, "
                                      f"its marker says {size}")
                download.mkdir(parents=True, exist_ok=True)
                (download / MARKER).write_text(json.dumps(marker, sort_keys=True))
                self._install_in_cache(download, cached)
            finally:
                shutil.rmtree(download, ignore_errors=True)
        log.info("downloaded artifact %s/%s from %s to %s", kind, key, self.url, cached)
        return cached

    def _install_in_cache(self, folder: Path, cached: Path) -> None:
        """Rename a finished folder (holding its marker) to the cache path; caller holds the cache lock."""
        if cached.exists():  # a leftover without a marker (we never write the marker last into the cache path)
            shutil.rmtree(cached)
        cached.parent.mkdir(parents=True, exist_ok=True)
        os.rename(folder, cached)

    def put(self, kind: str, key: str, local_dir: Path, payload: Mapping[str, Any]) -> None:
        """Publish ``local_dir``'s files as ``kind/key``: files first, the ``COMPLETE`` marker last.

        Meant for the holder of the artifact's claim (:meth:`obtain` does all of it). A complete artifact is never
        overwritten: putting one that exists keeps the existing one. A partial one (a crashed upload) is replaced.
        """
        self._publish(kind, key, Path(local_dir), payload, move=False)

    def _publish(self, kind: str, key: str, local_dir: Path, payload: Mapping[str, Any], *, move: bool) -> None:
        target = self._artifact_path(kind, key)
        if not local_dir.is_dir():
            raise NotADirectoryError(f"artifact {kind}/{key}: {local_dir} is not a folder")
        if (local_dir / MARKER).exists():
            raise ValueError(f"artifact {kind}/{key}: {local_dir} holds a file named {MARKER!r}, a name the store "
                             "reserves for its completion marker; rename it")
        if self._read_marker(kind, key) is not None:
            log.info("artifact %s/%s is already complete in %s; keeping it", kind, key, self.url)
            return
        files = {p.relative_to(local_dir).as_posix(): p.stat().st_size
                 for p in sorted(local_dir.rglob("*")) if p.is_file()}
        marker = {"kind": kind, "key": key, "created_at": _now_iso(), "host": HOST, "pid": os.getpid(),
                  "payload": json.loads(json.dumps(payload)), "files": files}
        marker_bytes = json.dumps(marker, sort_keys=True, indent=1).encode()
        if self.is_local:
            self._publish_local(local_dir, Path(target), marker_bytes, move=move)
        else:
            if self.fs.exists(target):
                self.fs.rm(target, recursive=True)
            for rel in files:
                self.fs.makedirs(posixpath.dirname(f"{target}/{rel}"), exist_ok=True)
                self.fs.put_file(str(local_dir / rel), f"{target}/{rel}")
            self.fs.pipe_file(f"{target}/{MARKER}", marker_bytes)
        log.info("published artifact %s/%s (%d files) to %s", kind, key, len(files), self.url)

    def _publish_local(self, local_dir: Path, target: Path, marker: bytes, *, move: bool) -> None:
        staging = target.parent / ".staging" / f"publish-{target.name}-{uuid.uuid4().hex[:8]}"
        staging.parent.mkdir(parents=True, exist_ok=True)
        if move:
            try:
                os.rename(local_dir, staging)
            except OSError:  # another filesystem: copy instead
                shutil.copytree(local_dir, staging)
        else:
            shutil.copytree(local_dir, staging)
        try:
            fsync_tree(staging)
            if target.exists():  # a partial artifact left by a crashed publisher; we hold the claim
                shutil.rmtree(target)
            os.rename(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        tmp = target / f".{MARKER}.{uuid.uuid4().hex[:8]}"
        with open(tmp, "wb") as handle:
            handle.write(marker)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target / MARKER)
        fsync_dir(target)

    def list(self, kind: str) -> list[str]:
        """Keys of the complete artifacts of ``kind``, sorted (reads each marker: one small read per artifact)."""
        base = self._path(check_name("kind", kind))
        if self.is_local:
            try:
                entries = list(os.scandir(base))
            except FileNotFoundError:
                return []
            keys = [e.name for e in entries
                    if NAME.match(e.name) and e.is_dir() and os.path.isfile(os.path.join(e.path, MARKER))]
        else:
            keys = [p.rstrip("/").split("/")[-2] for p in self.fs.glob(f"{base}/*/{MARKER}")]
        # The marker must parse too, so that list() agrees with get() on a damaged one.
        return sorted(k for k in keys if NAME.match(k) and self._read_marker(kind, k) is not None)

    def count(self, kind: str) -> int:
        """How many complete artifacts of ``kind`` the store holds (how many were trained)."""
        return len(self.list(kind))

    # ------------------------------------------------------------------ the high-level call

    def obtain(self, kind: str, key: str, payload: Mapping[str, Any], build: Callable[[Path], None], *,
               poll_s: float = 2.0, timeout_s: float | None = None, on_wait: Callable[[WaitState], None] | None = None,
               owner: str | None = None, ttl_s: float = 3600.0) -> Path:
        """The local folder of artifact ``kind/key``, building it with ``build`` if no one has.

        If the artifact is complete, return it. Otherwise claim it: the claimer calls ``build(folder)`` on an empty
        folder (refreshing its claim from a background thread meanwhile), publishes the folder and releases the
        claim. Everyone else polls every ``poll_s`` seconds (calling ``on_wait`` each time) until it is complete,
        takes over if the claim goes stale, or raises :class:`TimeoutError` after ``timeout_s``. If ``build`` raises,
        the claim is released and the error propagates; a waiting process then claims and tries itself.
        """
        self._artifact_path(kind, key)
        owner = owner or f"{HOST}:{os.getpid()}:{threading.current_thread().name}"
        started = time.monotonic()
        announced = False
        while True:
            found = self.get(kind, key)
            if found is not None:
                return found
            claim = self.claim(kind, key, owner, ttl_s)
            if claim is not None:
                built = self._build_claimed(claim, payload, build)
                if built is not None:
                    return built
                continue  # our claim was taken over mid-build: wait for the new holder
            waited = time.monotonic() - started
            holder = self._read_claim(kind, key)
            if timeout_s is not None and waited >= timeout_s:
                who = holder.describe() if holder else "nobody (the claim was just released)"
                raise TimeoutError(f"artifact {kind}/{key} in {self.url} was not complete after {timeout_s:g}s "
                                   f"of waiting; it is claimed by {who}")
            if not announced:
                log.info("waiting for artifact %s/%s, being built by %s", kind, key,
                         holder.describe() if holder else "another process")
                announced = True
            if on_wait is not None:
                on_wait(WaitState(kind=kind, key=key, holder=holder, waited_s=waited))
            pause = poll_s if timeout_s is None else max(0.0, min(poll_s, timeout_s - waited))
            time.sleep(pause)

    def _build_claimed(self, claim: Claim, payload: Mapping[str, Any], build: Callable[[Path], None]) -> Path | None:
        kind, key = claim.kind, claim.key
        with claim:
            found = self.get(kind, key)  # completed between our get and our claim
            if found is not None:
                return found
            staging = self._build_dir(kind, key, claim.token)
            try:
                log.info("building artifact %s/%s in %s", kind, key, staging)
                with claim.keep_alive():
                    build(staging)
                if not claim.held():
                    log.warning("claim on %s/%s was taken over while building; discarding this build and waiting",
                                kind, key)
                    return None
                self._publish(kind, key, staging, payload, move=True)
                if not self.is_local and staging.is_dir():
                    self._seed_cache(kind, key, staging)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        found = self.get(kind, key)
        if found is None:
            raise RuntimeError(f"artifact {kind}/{key} was published to {self.url} but cannot be read back")
        return found

    def _build_dir(self, kind: str, key: str, token: str) -> Path:
        """An empty folder to build in, on the store's filesystem when local (so publishing is a rename)."""
        base = Path(self._path(kind, ".staging")) if self.is_local else self.cache_dir / ".staging" / kind
        base.mkdir(parents=True, exist_ok=True)
        for pattern in (f"build-{key}-*", f"publish-{key}-*"):  # a crashed builder's: we hold the claim
            for leftover in base.glob(pattern):
                shutil.rmtree(leftover, ignore_errors=True)
        folder = base / f"build-{key}-{token[:12]}"
        folder.mkdir()
        return folder

    def _seed_cache(self, kind: str, key: str, built: Path) -> None:
        """After uploading, keep the built folder as this machine's cached copy instead of downloading it again."""
        marker = self._read_marker(kind, key)
        if marker is None:
            return
        cached = self._cache_path(kind, key)
        with file_lock(self.cache_dir / ".locks" / kind / f"{key}.lock"):
            if (cached / MARKER).is_file():
                return
            (built / MARKER).write_text(json.dumps(marker, sort_keys=True))
            try:
                self._install_in_cache(built, cached)
            except OSError:
                shutil.rmtree(cached, ignore_errors=True)


