"""Stage artifacts: content-addressed results of a training stage, built once and shared by every trial that needs them.

A stage artifact (e.g. Eagle's pre-aligned vision expert: the expert plus its projector after stage 1) is a folder of
files named by ``<kind>/<key>``, where ``key = artifact_key(payload)`` hashes everything the stage's result depends on.
Trials of one round, later rounds and other searches find it by key instead of training it again.

Layout under the store's root (a local folder, ``file://``, ``memory://``, ``s3://`` ... any fsspec URL)::

    <root>/<kind>/<key>/...             the artifact's files
    <root>/<kind>/<key>/COMPLETE        JSON marker written LAST: an artifact without it is never returned
    <root>/<kind>/<key>.claim           who is building it now (owner, pid, host, heartbeat time, ttl)
    <root>/<kind>/.staging/             local roots only: builds and copies in progress, renamed into place
    <root>/<kind>/.locks/               local roots only: flock files serialising claim takeover/refresh/release
    <root>/<kind>/.takeovers/           remote roots only: one write-if-absent marker per stale claim taken over

Exactly-once building (:meth:`ArtifactStore.obtain`) rests on the claim file:

* **Local filesystem** (a path or ``file://``; also NFS and other POSIX shared mounts): the claim is created with
  ``os.open(O_CREAT | O_EXCL)``, atomic, so exactly one process gets it. Replacing a stale claim, refreshing and
  releasing happen under an ``flock`` on ``.locks/<key>.lock`` and check the claim's token first, so a slow former
  holder can never delete or overwrite the claim of the process that took over.
* **Remote filesystems**: the claim is written with ``fs.open(path, "xb")`` (write-if-absent; atomic on S3 with
  conditional writes, GCS, and most object stores that implement it) and read back to confirm the token. Where the
  backend has no ``"x"`` mode, it falls back to *check, write, read back*: two processes that both see no claim and
  write within the read-back window may both believe they hold it (last writer wins on read-back, so usually one
  backs off, but this is not a guarantee). Refresh and release are read-check-write, not atomic: a holder whose claim
  went stale and was taken over in the same instant could overwrite it. Taking over one stale claim is arbitrated by
  a write-if-absent marker ``.takeovers/<key>.<stale token>``, so many waiters that see the same dead holder take over
  once. These markers are a few bytes each and are not cleaned up.

A claim is stale when its heartbeat is older than its ttl (the holder's ``ttl_s``, recorded in the claim) or when it
was made on this machine (same hostname, boot and PID namespace) by a process that no longer exists. A stale claim
is taken over with a warning naming the former holder. Heartbeat times are wall-clock: hosts sharing a store must
keep their clocks within a small fraction of the ttl.

Complete artifacts are immutable: :meth:`ArtifactStore.put` never overwrites one, so a remote artifact downloaded into
the local cache (``~/.cache/eaglesearch/artifacts/<kind>/<key>``) stays valid and is downloaded once per machine.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import posixpath
import re
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from eaglesearch.spec.keys import content_key
from eaglesearch.trial.workspace import file_lock

__all__ = [
    "MARKER",
    "ArtifactStore",
    "Claim",
    "ClaimInfo",
    "ClaimLost",
    "WaitState",
    "artifact_key",
]

log = logging.getLogger(__name__)

MARKER = "COMPLETE"
DEFAULT_CACHE_DIR = Path("~/.cache/eaglesearch/artifacts")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")


def artifact_key(payload: Mapping[str, Any]) -> str:
    """The key of a stage artifact: sha256 of ``payload`` as sorted, compact JSON, first 20 hex characters.

    ``payload`` must hold everything the stage's result depends on, and nothing else:

    * the expert spec (encoder name, pretrained weights, input resolution, tiling: whatever changes its features),
    * the LM spec (the projector maps into the LM's embedding space: its name and hidden size),
    * the data spec (dataset, its size and generation seed, preprocessing),
    * the stage's hyperparameters (steps, learning rate, batch size, schedule, which parameters train),
    * the seed,
    * a recipe version string, bumped whenever a code change alters the stage's result (old artifacts are then
      simply not found, instead of being reused wrongly).

    Leave out what does not change the result (logging cadence, output paths, device, worker counts), or equal
    artifacts get different keys. Values must be JSON types; dump pydantic specs with ``model_dump(mode="json")``
    first. Numbers are hashed as written, so ``1`` and ``1.0`` differ: pass values through the spec models so they
    are normalised the same way every time.
    """
    try:
        return content_key(dict(payload), 20)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"artifact payload must be plain JSON (dicts, lists, str, finite numbers, bool, None): {exc}; "
            "dump specs with model_dump(mode='json') first"
        ) from exc


def _check_name(what: str, value: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValueError(
            f"artifact {what} {value!r} is not a valid name: use 1-128 letters, digits, '_' or '-', "
            "starting with a letter or digit"
        )
    return value


def _host_id() -> str:
    """Identifies the process namespace this process lives in: hostname, boot, PID namespace.

    Containers sharing a hostname (host networking) have different PID namespaces, so a pid seen in a claim is only
    checked for liveness when all three match.
    """
    parts = [socket.gethostname()]
    with contextlib.suppress(OSError):
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
    with contextlib.suppress(OSError):
        parts.append(os.readlink("/proc/self/ns/pid"))
    return "|".join(parts)


_HOST = socket.gethostname()
_HOST_ID = _host_id()


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):  # a zombie (exited, not yet reaped) is dead too
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ClaimInfo:
    """What a claim file says: who is building an artifact, and since when they last said so."""

    owner: str
    pid: int
    host: str
    host_id: str
    token: str
    created_at: float
    refreshed_at: float
    ttl_s: float | None
    readable: bool = True

    @classmethod
    def new(cls, owner: str, ttl_s: float) -> ClaimInfo:
        now = time.time()
        return cls(owner=owner, pid=os.getpid(), host=_HOST, host_id=_HOST_ID, token=uuid.uuid4().hex,
                   created_at=now, refreshed_at=now, ttl_s=float(ttl_s))

    @classmethod
    def parse(cls, raw: bytes, mtime: float | None) -> ClaimInfo:
        """A claim file's contents; one being written or damaged reads as an unknown holder aged by its mtime."""
        try:
            data = json.loads(raw)
            return cls(owner=str(data["owner"]), pid=int(data["pid"]), host=str(data["host"]),
                       host_id=str(data.get("host_id", "")), token=str(data["token"]),
                       created_at=float(data["created_at"]), refreshed_at=float(data["refreshed_at"]),
                       ttl_s=None if data.get("ttl_s") is None else float(data["ttl_s"]))
        except (ValueError, KeyError, TypeError):
            stamp = time.time() if mtime is None else mtime
            token = "unreadable-" + content_key(raw + repr(mtime).encode(), 16)
            return cls(owner="<unreadable claim>", pid=0, host="?", host_id="", token=token,
                       created_at=stamp, refreshed_at=stamp, ttl_s=None, readable=False)

    def to_bytes(self) -> bytes:
        data = asdict(self)
        data.pop("readable")
        return json.dumps(data, sort_keys=True).encode()

    def age_s(self) -> float:
        return max(0.0, time.time() - self.refreshed_at)

    def stale_reason(self, fallback_ttl_s: float) -> str | None:
        """Why this claim may be taken over, or None while its holder may still be working."""
        ttl = self.ttl_s if self.ttl_s is not None else fallback_ttl_s
        age = self.age_s()
        if age > ttl:
            return f"its last heartbeat was {age:.1f}s ago, past its ttl of {ttl:g}s"
        if self.readable and self.host_id == _HOST_ID and not _pid_alive(self.pid):
            return f"its process {self.pid} on {self.host} no longer exists"
        return None

    def describe(self) -> str:
        if not self.readable:
            return f"an unreadable claim (last written {self.age_s():.0f}s ago)"
        return f"{self.owner} (pid {self.pid} on {self.host}, last heartbeat {self.age_s():.0f}s ago)"


class ClaimLost(RuntimeError):
    """This process's claim was taken over by another (its heartbeat went stale) or removed."""


@dataclass(frozen=True)
class WaitState:
    """Passed to ``obtain(on_wait=...)`` each time a waiter polls: what it waits for, and who is building it."""

    kind: str
    key: str
    holder: ClaimInfo | None
    waited_s: float


class Claim:
    """The right to build one artifact, held until :meth:`release` (or the end of a ``with`` block).

    Call :meth:`refresh` more often than ``ttl_s`` (or use :meth:`keep_alive`) while building, or other processes
    will consider the claim stale and take it over.
    """

    def __init__(self, store: ArtifactStore, kind: str, key: str, info: ClaimInfo) -> None:
        self.store = store
        self.kind = kind
        self.key = key
        self.info = info
        self.released = False

    @property
    def token(self) -> str:
        return self.info.token

    def __repr__(self) -> str:
        return f"Claim({self.kind}/{self.key}, owner={self.info.owner!r}, released={self.released})"

    def held(self) -> bool:
        """Whether the claim file still carries this claim's token."""
        if self.released:
            return False
        current = self.store._read_claim(self.kind, self.key)
        return current is not None and current.token == self.token

    def refresh(self) -> None:
        """Rewrite the heartbeat time; raise :class:`ClaimLost` if another process has taken the claim."""
        if self.released:
            raise ClaimLost(f"claim on {self.kind}/{self.key} was already released")
        updated = ClaimInfo(**{**asdict(self.info), "refreshed_at": time.time()})
        if not self.store._replace_claim_if_ours(self.kind, self.key, self.token, updated):
            holder = self.store._read_claim(self.kind, self.key)
            raise ClaimLost(
                f"claim on {self.kind}/{self.key} by {self.info.owner} was taken over by "
                f"{holder.describe() if holder else 'nobody (it was removed)'}"
            )
        self.info = updated

    def release(self) -> None:
        """Remove the claim if it is still ours; a no-op when already released or taken over."""
        if self.released:
            return
        self.released = True
        if not self.store._remove_claim_if_ours(self.kind, self.key, self.token):
            log.warning("claim on %s/%s by %s had been taken over before release; left the new holder's claim",
                        self.kind, self.key, self.info.owner)

    @contextlib.contextmanager
    def keep_alive(self, interval_s: float | None = None) -> Iterator[None]:
        """Refresh the claim from a background thread for the ``with`` block (default every ttl/4, at most 60 s)."""
        ttl = self.info.ttl_s or 3600.0
        interval = interval_s if interval_s is not None else min(max(ttl / 4, 0.05), 60.0)
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(interval):
                try:
                    self.refresh()
                except ClaimLost as exc:
                    log.warning("%s; the build goes on but its result will not be published", exc)
                    return
                except Exception:  # a flaky remote store must not kill the build; the next beat retries
                    log.warning("could not refresh claim on %s/%s", self.kind, self.key, exc_info=True)

        thread = threading.Thread(target=beat, name=f"claim-heartbeat-{self.key}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class ArtifactStore:
    """Stage artifacts under one root: a local folder (default) or any fsspec URL on a cluster.

    ``cache_dir`` is where artifacts of a remote root are downloaded (default ``~/.cache/eaglesearch/artifacts``);
    ``storage_options`` go to fsspec (credentials, endpoint...). A local root is used in place, without a cache.
    """

    def __init__(self, root: str | os.PathLike[str], *, cache_dir: str | os.PathLike[str] | None = None,
                 storage_options: Mapping[str, Any] | None = None) -> None:
        url = os.fspath(root)
        if "://" not in url and "::" not in url:
            url = str(Path(url).expanduser().absolute())
        self.url = url
        self.fs, self.root = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
        self.root = self.root.rstrip("/") or "/"
        self.is_local = isinstance(self.fs, LocalFileSystem)
        self.cache_dir = Path(cache_dir if cache_dir is not None else DEFAULT_CACHE_DIR).expanduser().absolute()

    def __repr__(self) -> str:
        return f"ArtifactStore({self.url!r})"

    # ------------------------------------------------------------------ paths

    def _path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts]) if self.root != "/" else "/" + "/".join(parts)

    def _artifact_path(self, kind: str, key: str) -> str:
        return self._path(_check_name("kind", kind), _check_name("key", key))

    def _claim_path(self, kind: str, key: str) -> str:
        return self._path(kind, f"{key}.claim")

    def _cache_path(self, kind: str, key: str) -> Path:
        return self.cache_dir / kind / key

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
        marker = {"kind": kind, "key": key, "created_at": _now_iso(), "host": _HOST, "pid": os.getpid(),
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
            _fsync_tree(staging)
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
        _fsync_dir(target)

    def list(self, kind: str) -> list[str]:
        """Keys of the complete artifacts of ``kind``, sorted (reads each marker: one small read per artifact)."""
        base = self._path(_check_name("kind", kind))
        if self.is_local:
            try:
                entries = list(os.scandir(base))
            except FileNotFoundError:
                return []
            keys = [e.name for e in entries
                    if _NAME.match(e.name) and e.is_dir() and os.path.isfile(os.path.join(e.path, MARKER))]
        else:
            keys = [p.rstrip("/").split("/")[-2] for p in self.fs.glob(f"{base}/*/{MARKER}")]
        # The marker must parse too, so that list() agrees with get() on a damaged one.
        return sorted(k for k in keys if _NAME.match(k) and self._read_marker(kind, k) is not None)

    def count(self, kind: str) -> int:
        """How many complete artifacts of ``kind`` the store holds (how many were trained)."""
        return len(self.list(kind))

    # ------------------------------------------------------------------ claims

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

    # local: O_EXCL create; takeover, refresh and release under an flock

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
            _write_atomic(Path(path), info.to_bytes())
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
            time.sleep(0.05)
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
                if not _parses(raw):  # being written or damaged: age it by its modification time
                    with contextlib.suppress(Exception):
                        mtime = self.fs.modified(path).timestamp()
        except FileNotFoundError:
            return None
        return ClaimInfo.parse(raw, mtime)

    def _replace_claim_if_ours(self, kind: str, key: str, token: str, info: ClaimInfo) -> bool:
        path = self._claim_path(kind, key)
        guard = file_lock(self._lock_path(kind, key)) if self.is_local else contextlib.nullcontext()
        with guard:
            current = self._read_claim(kind, key)
            if current is None or current.token != token:
                return False
            if self.is_local:
                _write_atomic(Path(path), info.to_bytes())
            else:
                self.fs.pipe_file(path, info.to_bytes())
            return True

    def _remove_claim_if_ours(self, kind: str, key: str, token: str) -> bool:
        path = self._claim_path(kind, key)
        guard = file_lock(self._lock_path(kind, key)) if self.is_local else contextlib.nullcontext()
        with guard:
            current = self._read_claim(kind, key)
            if current is None or current.token != token:
                return False
            with contextlib.suppress(FileNotFoundError):
                if self.is_local:
                    os.unlink(path)
                else:
                    self.fs.rm_file(path)
            return True

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
        owner = owner or f"{_HOST}:{os.getpid()}:{threading.current_thread().name}"
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


def _parses(raw: bytes) -> bool:
    try:
        json.loads(raw)
    except ValueError:
        return False
    return True


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_tree(root: Path) -> None:
    """Flush an artifact's files to disk before its marker says it is complete."""
    for path in root.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        _fsync_dir(folder)
