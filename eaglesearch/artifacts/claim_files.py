"""Claim files: the right to build one artifact, taken atomically on the store's filesystem.

Exactly-once building (:meth:`ArtifactStore.obtain`) rests on the claim file:

* **Local filesystem** (a path or ``file://``; also NFS and other POSIX shared mounts): the claim is created with
  ``os.open(O_CREAT | O_EXCL)``, atomic, so exactly one process gets it. Replacing a stale claim, refreshing and
  releasing happen under a lock (``filelock``) on ``.locks/<key>.lock`` and check the claim's token first, so a
  slow former holder can never delete or overwrite the claim of the process that took over.
* **Remote filesystems**: the claim is written with ``fs.open(path, "xb")`` (write-if-absent: s3fs sends a
  conditional ``PutObject`` with ``If-None-Match: *``), then, after :data:`SETTLE_S`, read back to confirm the
  token. How safe that is depends on the server:

  - **AWS S3** (and GCS, MinIO, R2, which implement conditional writes): the conditional PUT is atomic. Of racing
    writers exactly one gets 200; the others get 412 PreconditionFailed (s3fs: ``FileExistsError``) or, while the
    winner's upload is still in flight, 409 ConditionalRequestConflict (s3fs: an ``OSError`` caused by it), which
    counts here as a lost race too. Exactly one process holds the claim.
  - **moto** (the S3 server of ``scripts/cluster.sh`` and the tests, moto 5.2): ``put_object`` checks that the key
    is absent and then stores the object, not under one lock, so two racing PUTs can both succeed; the object is
    then the last writer's. The read-back after :data:`SETTLE_S` is what arbitrates: a writer whose claim was
    overwritten reads the other token and backs off, so both believe they hold it only if one PUT is stalled in
    the server for longer than :data:`SETTLE_S` between its check and its store. Measured here: 200 keys x 8
    concurrent conditional PUTs on one moto server, never two successes for one key (the window is a few Python
    statements under one interpreter lock), and ``tests/test_claims_s3.py`` races claims through it.
  - **Backends without write-if-absent** (no ``"x"`` mode): *check, write, read back*, the same arbitration by
    read-back with a wider window (the check and the write are separate requests): not a guarantee.

  Refresh and release are read-check-write, not atomic: a holder whose claim went stale and was taken over in the
  same instant could overwrite it. Taking over one stale claim is arbitrated by a write-if-absent marker
  ``.takeovers/<key>.<stale token>``, so many waiters that see the same dead holder take over once. These markers
  are a few bytes each and are not cleaned up.

A claim is stale when its heartbeat is older than its ttl (the holder's ``ttl_s``, recorded in the claim) or when it
was made on this machine (same hostname, boot and PID namespace) by a process that no longer exists. A stale claim
is taken over with a warning naming the former holder. Heartbeat times are wall-clock: hosts sharing a store must
keep their clocks within a small fraction of the ttl.
"""

from __future__ import annotations

import contextlib
import logging
import os
import posixpath
import time
from collections.abc import Iterator
from pathlib import Path

from eaglesearch.artifacts.claims import Claim, ClaimInfo
from eaglesearch.artifacts.files import file_lock, parses, write_atomic
from eaglesearch.artifacts.root import StoreRoot

log = logging.getLogger(__name__)

SETTLE_S = 0.2
"""Pause between writing a remote claim and reading it back (see the module docstring: moto's conditional PUT)."""


def _write_conflict(err: OSError) -> bool:
    """S3's 409 ConditionalRequestConflict (s3fs raises it as a plain ``OSError``, the boto error as its cause)."""
    response = getattr(err.__cause__, "response", None) or {}
    return (response.get("Error", {}).get("Code") == "ConditionalRequestConflict"
            or response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 409)


class ClaimFiles(StoreRoot):
    """The claim side of a store: take, read, refresh and release the claim file of ``kind/key``."""

    def claim_holder(self, kind: str, key: str) -> ClaimInfo | None:
        """Who holds the claim on ``kind/key`` now, if anyone."""
        self._artifact_path(kind, key)
        return self._read_claim(kind, key)

    def claim(self, kind: str, key: str, owner: str, ttl_s: float = 3600) -> Claim | None:
        """Claim the right to build ``kind/key``: a :class:`Claim`, or None while another live process holds it.

        A stale claim (heartbeat older than its ttl, or its process gone on this machine) is taken over.
        """
        self._artifact_path(kind, key)
        if ttl_s <= 0:
            raise ValueError(f"claim ttl_s must be positive, got {ttl_s}")
        info = ClaimInfo.new(owner, ttl_s)
        if self.is_local:
            return self._claim_local(kind, key, info, ttl_s)
        return self._claim_remote(kind, key, info, ttl_s)

    def _log_takeover(self, kind: str, key: str, old: ClaimInfo, reason: str, owner: str) -> None:
        holder = f"{old.owner} (pid {old.pid} on {old.host})" if old.readable else "an unreadable claim"
        log.warning("taking over stale claim on artifact %s/%s held by %s: %s; %s builds it now",
                    kind, key, holder, reason, owner)

    # local: O_EXCL create; takeover, refresh and release under a file lock

    def _lock_path(self, kind: str, key: str) -> Path:
        return Path(self._path(kind, ".locks", f"{key}.lock"))

    def _claim_local(self, kind: str, key: str, info: ClaimInfo, ttl_s: float) -> Claim | None:
        path = self._claim_path(kind, key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if self._create_local(path, info):
            return Claim(self, kind, key, info)
        with file_lock(self._lock_path(kind, key)):
            current = self._read_claim(kind, key)
            if current is None:  # released since our attempt
                return Claim(self, kind, key, info) if self._create_local(path, info) else None
            reason = current.stale_reason(ttl_s)
            if reason is None:
                return None
            self._log_takeover(kind, key, current, reason, info.owner)
            write_atomic(Path(path), info.to_bytes())
            return Claim(self, kind, key, info)

    @staticmethod
    def _create_local(path: str, info: ClaimInfo) -> bool:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as handle:
            handle.write(info.to_bytes())
            handle.flush()
            os.fsync(handle.fileno())
        return True

    # remote: write-if-absent plus read-back

    def _claim_remote(self, kind: str, key: str, info: ClaimInfo, ttl_s: float) -> Claim | None:
        path = self._claim_path(kind, key)
        if self._create_remote(path, info.to_bytes(), info.token):
            return Claim(self, kind, key, info)
        current = self._read_claim(kind, key)
        if current is None:  # released in between: one more plain attempt
            return Claim(self, kind, key, info) if self._create_remote(path, info.to_bytes(), info.token) else None
        reason = current.stale_reason(ttl_s)
        if reason is None:
            return None
        # Only the waiter that creates this stale claim's takeover marker may remove the claim.
        takeover = self._path(kind, ".takeovers", f"{key}.{current.token}")
        if not self._create_remote(takeover, info.to_bytes(), info.token):
            return None
        again = self._read_claim(kind, key)
        if again is not None and again.token != current.token:
            return None
        self._log_takeover(kind, key, current, reason, info.owner)
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(path)
        return Claim(self, kind, key, info) if self._create_remote(path, info.to_bytes(), info.token) else None

    def _create_remote(self, path: str, data: bytes, token: str) -> bool:
        self.fs.makedirs(posixpath.dirname(path), exist_ok=True)
        try:
            with self.fs.open(path, "xb") as handle:
                handle.write(data)
        except FileExistsError:
            return False
        except (NotImplementedError, ValueError):
            # No write-if-absent here: check, write, read back (weaker; see the module docstring).
            if self.fs.exists(path):
                return False
            self.fs.pipe_file(path, data)
        except OSError as err:
            if not _write_conflict(err):
                raise
            return False  # another writer is finishing its conditional write of this key
        time.sleep(SETTLE_S)
        try:
            back = self.fs.cat_file(path)
        except FileNotFoundError:
            return False
        return ClaimInfo.parse(back, None).token == token

    # shared claim I/O

    def _read_claim(self, kind: str, key: str) -> ClaimInfo | None:
        path = self._claim_path(kind, key)
        try:
            if self.is_local:
                with open(path, "rb") as handle:
                    raw = handle.read()
                    mtime = os.fstat(handle.fileno()).st_mtime
            else:
                raw = self.fs.cat_file(path)
                mtime = None
                if not parses(raw):  # being written or damaged: age it by its modification time
                    with contextlib.suppress(Exception):
                        mtime = self.fs.modified(path).timestamp()
        except FileNotFoundError:
            return None
        return ClaimInfo.parse(raw, mtime)

    @contextlib.contextmanager
    def _if_ours(self, kind: str, key: str, token: str) -> Iterator[bool]:
        """Whether the claim on ``key`` is still ``token``'s, held under the claim's lock (local stores) while the
        caller acts on it."""
        guard = file_lock(self._lock_path(kind, key)) if self.is_local else contextlib.nullcontext()
        with guard:
            current = self._read_claim(kind, key)
            yield current is not None and current.token == token

    def _replace_claim_if_ours(self, kind: str, key: str, token: str, info: ClaimInfo) -> bool:
        path = self._claim_path(kind, key)
        with self._if_ours(kind, key, token) as ours:
            if ours:
                if self.is_local:
                    write_atomic(Path(path), info.to_bytes())
                else:
                    self.fs.pipe_file(path, info.to_bytes())
            return ours

    def _remove_claim_if_ours(self, kind: str, key: str, token: str) -> bool:
        path = self._claim_path(kind, key)
        with self._if_ours(kind, key, token) as ours, contextlib.suppress(FileNotFoundError):
            if ours:
                if self.is_local:
                    os.unlink(path)
                else:
                    self.fs.rm_file(path)
        return ours
