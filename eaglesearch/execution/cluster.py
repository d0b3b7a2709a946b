"""Joining an existing Ray cluster (``--address`` / ``RAY_ADDRESS``): check it answers and that we can authenticate,
in seconds, before ``ray.init``.

Why: Ray 2.60 clusters use token authentication whenever a token existed on the head when it started (and every
local ``ray.init`` writes one to ``~/.ray/auth_token``), but ``ray.init(address=...)`` with an explicit address
never turns token mode on by itself. Without ``RAY_AUTH_MODE=token`` the driver prints "Authentication token is
missing" for about 20 s and ends in a raw traceback; an address nobody listens on makes it wait about 40 s.
Here: when ``RAY_AUTH_MODE`` is unset and a token is available (``RAY_AUTH_TOKEN``, the file named by
``RAY_AUTH_TOKEN_PATH``, or ``~/.ray/auth_token``), token mode is switched on for this process and its children;
then one short request to the cluster's GCS either succeeds or becomes a :class:`ClusterUnavailable` whose
message says what to set.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

AUTH_MODE_ENV = "RAY_AUTH_MODE"
TOKEN_ENV = "RAY_AUTH_TOKEN"
TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"
CONNECT_TIMEOUT_S = 3.0
_AUTH_FIX = (f"set {TOKEN_ENV} to the cluster's token (shown on the head node by `ray get-auth-token`), or put it "
             f"in ~/.ray/auth_token or in a file named by {TOKEN_PATH_ENV}")


class _NeverRaised(Exception):
    """Stands in for ``ray.exceptions.AuthenticationError`` on a Ray that does not have it."""


class ClusterUnavailable(RuntimeError):
    """The Ray cluster at ``--address`` cannot be joined; the message says what is wrong and what to set."""


def default_token_path() -> Path:
    return Path.home() / ".ray" / "auth_token"


def token_source() -> str | None:
    """Where a Ray auth token would come from (the first source Ray reads that holds one), or None."""
    if os.environ.get(TOKEN_ENV, "").strip():
        return f"${TOKEN_ENV}"
    named = os.environ.get(TOKEN_PATH_ENV, "").strip()
    for path in ([Path(named).expanduser()] if named else []) + [default_token_path()]:
        try:
            if path.is_file() and path.read_text().strip():
                return str(path)
        except OSError:
            continue
    return None


def _host_port(address: str) -> tuple[str, int] | None:
    """``host:port`` of a GCS address; None for what Ray resolves itself (``auto``, ``local``, ``ray://``)."""
    if address in ("auto", "local") or "://" in address:
        return None
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ClusterUnavailable(f"--address '{address}' is not host:port (e.g. 127.0.0.1:6379, the address "
                                 "`ray start --head` prints)")
    return host.strip("[]") or "127.0.0.1", int(port)


def prepare_cluster(address: str) -> None:
    """Make ``ray.init(address=address)`` work or fail at once: reachability, token mode, one authenticated call."""
    target = _host_port(address)
    if target is None:
        return
    try:
        with socket.create_connection(target, timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as err:
        raise ClusterUnavailable(f"no Ray cluster answers at {address} ({err.strerror or err}); start one with "
                                 "`ray start --head` or fix --address / RAY_ADDRESS") from None
    source = token_source()
    if os.environ.get(AUTH_MODE_ENV) is None and source is not None:
        _enable_token_mode()
    _check_gcs(address, source)


def _enable_token_mode() -> None:
    """``RAY_AUTH_MODE=token`` for this process and every process it starts (what Ray itself does for a local
    cluster it finds on its own)."""
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # a Ray from before token authentication: nothing to switch on
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def _check_gcs(address: str, source: str | None) -> None:
    import ray.exceptions
    from ray._raylet import GcsClient

    # A Ray from before token authentication has no such error: nothing can be rejected for want of a token.
    auth_error: type[Exception] = getattr(ray.exceptions, "AuthenticationError", _NeverRaised)
    try:
        GcsClient(address=address).internal_kv_get(b"eaglesearch-probe", namespace=None,
                                                   timeout=CONNECT_TIMEOUT_S)
    except auth_error:
        mode = os.environ.get(AUTH_MODE_ENV)
        if source is None:
            problem, fix = "it requires token authentication and no token was found", _AUTH_FIX
        elif (mode or "").lower() != "token":
            problem = f"it requires token authentication but {AUTH_MODE_ENV}={mode}"
            fix = f"unset {AUTH_MODE_ENV} or set it to 'token'"
        else:
            problem, fix = f"it rejected the token from {source}", _AUTH_FIX
        raise ClusterUnavailable(f"the Ray cluster at {address} rejected this process: {problem}; {fix}") from None
    except Exception as err:  # noqa: BLE001 - the GCS client raises several RPC error types
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        raise ClusterUnavailable(f"the Ray cluster at {address} did not answer ({first}); check that the address "
                                 "is the head node's GCS address (`ray start --head` prints it)") from None
