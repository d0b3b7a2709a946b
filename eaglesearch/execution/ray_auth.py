"""One Ray authentication mode per process.

Ray 2.60 fixes a process's authentication mode at its first ``ray.init``: a local cluster started with
``RAY_AUTH_MODE`` unset switches the process to token mode (it sets ``RAY_AUTH_MODE=token`` and caches it in Ray's
C++ config). A later ``ray.init`` in the same process under another mode starts a cluster that sends no token while
this process's own server still demands one: the GCS cannot ask the driver about its actors' references, takes the
refusal for "all references removed", and destroys every actor the driver creates before it runs ("The actor never
ran - it was cancelled before it started running"). Trials, Ray Train controllers and queues all die that way.

:func:`check_unchanged` refuses that second ``ray.init`` with a message saying what to do; :func:`remember` records
the mode the first one left.
"""

from __future__ import annotations

import os

AUTH_MODE_ENV = "RAY_AUTH_MODE"
_first_mode: str | None = None  # the mode this process's first ray.init left in the environment (None: none yet)


class AuthModeChanged(RuntimeError):
    """``RAY_AUTH_MODE`` differs from the mode Ray fixed for this process at its first ``ray.init``."""


def _mode(value: str | None) -> str | None:
    return value.strip().lower() if value and value.strip() else None


def remember() -> None:
    """Call after a successful ``ray.init``: the first one fixes this process's mode."""
    global _first_mode
    if _first_mode is None:
        _first_mode = _mode(os.environ.get(AUTH_MODE_ENV)) or "disabled"


def check_unchanged() -> None:
    """Call before ``ray.init``: refuse a mode other than the one this process's Ray already runs with (unset means
    Ray decides again, as it did the first time)."""
    now = _mode(os.environ.get(AUTH_MODE_ENV))
    if _first_mode is not None and now is not None and now != _first_mode:
        raise AuthModeChanged(
            f"{AUTH_MODE_ENV}={now}, but Ray already ran in this process with {AUTH_MODE_ENV}={_first_mode}; Ray keeps "
            "the first mode for the whole process, and under another one every actor this process starts would be "
            f"destroyed before it ran. Set {AUTH_MODE_ENV}={_first_mode} (or unset it), or start the search in a new "
            "Python process")
