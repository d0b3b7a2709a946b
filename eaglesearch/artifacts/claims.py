"""Claims: who is building an artifact now, and the handle its builder holds (files: ``claim_files.py``)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Self

from eaglesearch.spec.keys import content_key

if TYPE_CHECKING:
    from eaglesearch.artifacts.claim_files import ClaimFiles

log = logging.getLogger(__name__)


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


HOST = socket.gethostname()
HOST_ID = _host_id()


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
        return cls(owner=owner, pid=os.getpid(), host=HOST, host_id=HOST_ID, token=uuid.uuid4().hex,
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
        if self.readable and self.host_id == HOST_ID and not _pid_alive(self.pid):
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

    def __init__(self, store: ClaimFiles, kind: str, key: str, info: ClaimInfo) -> None:
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

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

