"""A search before it runs: the trials its strategy can reach (``search/registry.py``), each sized or checked by
``trial/``.

The same walk as a run, without dispatching anything: the strategy says which trials exist, the trial layer builds
what it can without training. ``validate``, ``plan`` and ``run`` call these.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eaglesearch.search import make_strategy, planned_trials, reachable_trials
from eaglesearch.spec import LoadedSearch
from eaglesearch.trial import preflight
from eaglesearch.trial.gpu_size import available_gpu_memory_gb

if TYPE_CHECKING:  # both build models (torch): imported when called, so `validate` of a CPU search never loads torch
    from eaglesearch.trial import memory, plan
    from eaglesearch.trial.workspace import Workspace


def make_plan(loaded: LoadedSearch, workspace: Workspace, measure_costs: bool = True,
              gpu_memory_gb: float | None = None) -> plan.Plan:
    """``eaglesearch plan``: trials per round and each reachable model's size, cost and memory (see
    :func:`eaglesearch.trial.plan.make_plan`)."""
    from eaglesearch.trial import plan

    strategy = make_strategy(loaded)
    return plan.make_plan(planned_trials(loaded), strategy.kind, strategy.expected_trials(), loaded.space.resources,
                          workspace, measure_costs=measure_costs, gpu_memory_gb=gpu_memory_gb)


def plan_memory(loaded: LoadedSearch, available_gb: float | None = None) -> list[memory.TrialMemory]:
    """Every planned trial's memory per GPU."""
    from eaglesearch.trial import memory

    return memory.plan_memory(planned_trials(loaded), loaded.space.resources, available_gb)


def memory_refusals(loaded: LoadedSearch) -> list[str]:
    """One message per planned trial that cannot fit its GPUs (empty when nothing can be checked)."""
    if available_gpu_memory_gb(loaded.space.resources) is None:
        return []
    from eaglesearch.trial import memory

    return memory.memory_refusals(planned_trials(loaded), loaded.space.resources)


def preflight_search(loaded: LoadedSearch, check_paths_exist: bool = True) -> None:
    """The preflight over every trial the strategy can produce: raise ``SpecError`` naming each problem."""
    preflight.preflight(loaded, reachable_trials(loaded), check_paths_exist=check_paths_exist)
