"""Warm workers: CPU trials on Ray share a worker process (its imports stay loaded) and every trial starts clean:
the previous trial's expert registrations, environment and sys.path are gone, RNGs are seeded, threads pinned,
memory collected (and given back to the GPU when there is one)."""

from __future__ import annotations

import json
import os
import random
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml

from eaglesearch.execution.ray_runner import reuse_workers
from eaglesearch.model.experts import expert_names
from eaglesearch.model.experts.custom import declaration_of
from eaglesearch.model.experts.discovery import register_trial_experts
from eaglesearch.spec import ExpertSpec, ResourcesSpec
from eaglesearch.spec.custom_expert import CustomExpertSpec
from eaglesearch.trial.scope import trial_scope
from tests.custom_encoders import LEAK_VAR, PROBE_DIR, declaration


@pytest.fixture(autouse=True)
def _restore_import_path() -> Iterator[None]:
    """The import path a search space's own encoders extend does not reach other tests (the registry is restored by
    tests/conftest.py for every test)."""
    path, pythonpath = list(sys.path), os.environ.get("PYTHONPATH")
    yield
    sys.path[:] = path
    if pythonpath is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = pythonpath


def test_a_trial_scope_leaves_nothing_of_the_trial_behind(tmp_path: Path) -> None:
    before_path, before_env = list(sys.path), dict(os.environ)
    before_threads = torch.get_num_threads()
    declared = CustomExpertSpec.model_validate({"name": "scoped_probe", **declaration()})
    with trial_scope(seed=7, threads=1):
        assert torch.get_num_threads() == 1
        register_trial_experts([ExpertSpec(name="scoped_probe", custom=declared)])
        assert "scoped_probe" in expert_names() and declaration_of("scoped_probe") == declared
        sys.path.append(str(tmp_path))
        os.environ["EAGLESEARCH_TEST_SCOPED"] = "1"
        os.environ.pop("PATH")
        os.chdir(tmp_path)
    assert "scoped_probe" not in expert_names() and declaration_of("scoped_probe") is None
    assert sys.path == before_path and dict(os.environ) == before_env and Path.cwd() != tmp_path
    torch.set_num_threads(before_threads)


def test_a_trial_scope_seeds_the_global_generators_whatever_ran_before() -> None:
    def draws() -> tuple[float, float, float]:
        import numpy as np

        return random.random(), float(np.random.rand()), float(torch.rand(1))

    threads = torch.get_num_threads()
    with trial_scope(seed=3, threads=threads):
        first = draws()
    random.random(), torch.rand(5)  # what another trial would have drawn in between
    with trial_scope(seed=3, threads=threads):
        assert draws() == first
    with trial_scope(seed=4, threads=threads):
        assert draws() != first


def test_a_trial_scope_unregisters_even_when_the_trial_raises() -> None:
    declared = CustomExpertSpec.model_validate({"name": "raising_probe", **declaration()})
    with pytest.raises(RuntimeError, match="trial failed"), trial_scope(seed=0, threads=torch.get_num_threads()):
        register_trial_experts([ExpertSpec(name="raising_probe", custom=declared)])
        raise RuntimeError("trial failed")
    assert "raising_probe" not in expert_names()


def test_only_single_process_cpu_trials_reuse_workers() -> None:
    assert reuse_workers(ResourcesSpec(cpus_per_trial=2), workers=1)
    assert not reuse_workers(ResourcesSpec(cpus_per_trial=2, gpus_per_trial=1), workers=1)  # fresh process per GPU trial
    assert not reuse_workers(ResourcesSpec(cpus_per_trial=2), workers=2)  # a Ray Train driver per trial


@pytest.mark.gpu
def test_a_trial_scope_gives_cuda_memory_back() -> None:
    torch.cuda.init()
    with trial_scope(seed=0, threads=torch.get_num_threads()):
        weights = torch.zeros(64, 1024, 1024, device="cuda")  # 256 MiB
        cycle: list[object] = [weights]
        cycle.append(cycle)  # only a collection frees it
        del weights, cycle
        assert torch.cuda.memory_allocated() > 0
    assert torch.cuda.memory_allocated() == 0 and torch.cuda.memory_reserved() == 0


@pytest.mark.slow
def test_two_cpu_trials_on_ray_share_a_worker_and_the_second_starts_clean(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Trial 1 registers its own custom expert and sets an environment variable in the worker; trial 2 runs in the
    same process (same pid) and finds neither."""
    import ray

    from eaglesearch.execution.controller import run_search
    from eaglesearch.model.validate import load_checked_search
    from eaglesearch.tracking import TrackingStore
    from tests.e2e_helpers import tiny_recipe

    probes = tmp_path / "probes"
    probes.mkdir()
    monkeypatch.setenv(PROBE_DIR, str(probes))
    (tmp_path / "recipe.yaml").write_text(tiny_recipe())
    probe = declaration("tests.custom_encoders:recording")
    space = {"name": "warm-workers", "recipe": "recipe.yaml", "experts": {"probe_a": probe, "probe_b": probe},
             "strategy": {"kind": "grid", "factors": {"experts": [[{"name": "probe_a"}], [{"name": "probe_b"}]]}},
             "resources": {"cpus_per_trial": 1, "max_concurrent_trials": 1, "max_failures": 0}}
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space, sort_keys=False))
    loaded = load_checked_search(tmp_path / "space.yaml")  # registers both declarations in this process only
    monkeypatch.delenv(LEAK_VAR, raising=False)  # the check above built the encoder here, before Ray starts
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ray.shutdown()  # a Ray started here, after PROBE_DIR is set, so that its workers see it
    try:
        outcome = run_search(loaded, tracking_uri=uri, workdir=tmp_path / "ws",
                             show_progress=False)
    finally:
        ray.shutdown()
    assert outcome.complete
    runs = TrackingStore(uri).trial_runs(outcome.parent_id)
    assert sorted(runs["status_tag"]) == ["finished", "finished"]

    records = sorted((json.loads(p.read_text()) for p in probes.glob("*.json")), key=lambda r: r["time"])
    workers = [r for r in records if r["pid"] != os.getpid()]  # the search space check builds it here, too
    assert len(workers) == 2, records
    first, second = workers
    assert first["pid"] == second["pid"]  # a warm worker ran both trials
    mine = {"probe_a", "probe_b"} & set(first["experts"])
    assert len(mine) == 1, first  # the first trial's worker knew only the first trial's own declaration
    (earlier,) = mine
    assert earlier not in second["experts"] and len({"probe_a", "probe_b"} & set(second["experts"])) == 1
    assert first["leak"] is None and second["leak"] is None  # the first trial's environment did not survive it
    assert first["threads"] == second["threads"] == 1
