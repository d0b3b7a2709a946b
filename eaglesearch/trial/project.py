"""Relative paths in a trial mean the folder the search was started from, on whichever node runs the trial.

A recipe names its files as the user wrote them (``data/sklearn_digits/train.json``, an eval set's ``image_folder``,
a checkpoint file); preflight checks them against the driver's working directory, and the trial's key hashes them
as written, so moving a project does not change its keys. A trial process does not share that directory: a Ray
worker starts wherever its node's ``ray start`` ran (``RAY_CHDIR_TO_TRIAL_DIR=0`` keeps it there), a Ray Train rank
likewise. The driver therefore sends its folder with each trial (``TrialRequest.project_dir``) and the trial runs
inside it (:func:`in_project`); the working directory is restored afterwards (``trial/scope.py`` restores it too).

On a cluster whose nodes do not see the driver's folder at the same path, a trial with relative paths cannot find
its files: it fails at once with one message naming those paths and the fix, instead of a ``FileNotFoundError``
deep in a data loader. A trial that names no relative path runs wherever it is.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from eaglesearch.model.experts.weights import looks_like_path
from eaglesearch.spec import TrialSpec
from eaglesearch.spec.yaml_source import Loc


class ProjectFolderMissing(RuntimeError):
    """A trial names relative paths, but this node does not have the folder they are relative to."""


def _local(value: str | None) -> bool:
    return bool(value) and "://" not in value and not value.startswith("~")


def benchmark_paths(trial: TrialSpec) -> Iterator[tuple[Loc, str]]:
    """``(field location, path)`` of every benchmark file and image folder the trial evaluates on."""
    for name, bench in trial.data.eval.items():
        yield ("data", "eval", name, "path"), bench.path
        if bench.image_folder is not None:
            yield ("data", "eval", name, "image_folder"), bench.image_folder


def local_paths(trial: TrialSpec) -> Iterator[tuple[str, str]]:
    """``(field, path)`` for every file or folder the trial reads from this machine's disk: training sources,
    benchmark files and image folders, expert checkpoints that name a file."""
    sources = [(declared.loc(name), getattr(declared.spec, name, None))
               for declared in trial.data.declared_sources() for name in ("path", "image_folder")]
    for loc, value in [*sources, *benchmark_paths(trial)]:
        if _local(value):
            yield ".".join(str(part) for part in loc), value  # type: ignore[misc]
    for expert in trial.model.experts:
        checkpoint = expert.checkpoint
        if checkpoint and _local(checkpoint) and looks_like_path(checkpoint):
            yield f"model.experts.{expert.name}.checkpoint", checkpoint


def relative_paths(trial: TrialSpec) -> list[tuple[str, str]]:
    """The trial's local paths that are relative (each once)."""
    return list(dict.fromkeys((field, value) for field, value in local_paths(trial) if not Path(value).is_absolute()))


@contextmanager
def in_project(folder: str | None, trial: TrialSpec) -> Iterator[None]:
    """Run the block in ``folder`` (the driver's working directory) when this node has it; raise
    :class:`ProjectFolderMissing` when it does not and the trial names relative paths. ``None``: stay put."""
    if folder is None or os.getcwd() == folder:
        yield
        return
    if not os.path.isdir(folder):
        relative = relative_paths(trial)
        if relative:
            listed = ", ".join(f"{field} = {value!r}" for field, value in relative[:4])
            more = f" and {len(relative) - 4} more" if len(relative) > 4 else ""
            raise ProjectFolderMissing(
                f"this trial's relative paths ({listed}{more}) are relative to the folder the search was started "
                f"from, {folder}, which node {socket.gethostname()} does not have: write absolute paths on a mount "
                "every node sees, or start the search from a folder every node sees at the same path")
        yield
        return
    previous = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)
