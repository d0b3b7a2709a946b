"""Test-wide setup: quiet, pinned CPU threads (two torch processes on 2 cores otherwise crawl)."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no network here: fail hub lookups at once instead of retrying

import pytest
import torch

# Under pytest-xdist the cores are shared among the workers: one thread each, so workers × threads ≤ cores.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1) // _WORKERS))

REPO = Path(__file__).resolve().parent.parent
# Seconds each test file took in a whole-suite run (tests/support/file_seconds.py rewrites it from a junit xml).
FILE_SECONDS: dict[str, float] = json.loads((REPO / "tests" / "support" / "file_seconds.json").read_text())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Longest files first: pytest-xdist hands each worker a whole file at a time (scripts/test.sh: --dist loadfile
    # --no-loadscope-reorder), so the suite ends with the short files instead of one worker finishing a long one
    # alone. A file missing from the table counts as short; the order within a file is unchanged.
    items.sort(key=lambda item: -FILE_SECONDS.get(_repo_path(Path(str(item.path))), 0.0))
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def _repo_path(path: Path) -> str:
    return path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else str(path)


@pytest.fixture(autouse=True)
def _expert_registry_per_test():
    """Expert families a test declares (a user's encoder in a search space) end with the test, as a trial's end with
    the trial (``trial/scope.py``): tests see the built-in registry whatever ran before them in this worker."""
    from eaglesearch.model.experts.custom import declarations_snapshot, restore_declarations
    from eaglesearch.model.experts.registry import families_snapshot, restore_families

    families, declared = families_snapshot(), declarations_snapshot()
    yield
    restore_families(families)
    restore_declarations(declared)


@pytest.fixture
def repo() -> Path:
    return REPO
