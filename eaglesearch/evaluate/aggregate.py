"""The recipe's objective: an aggregate of per-benchmark scores."""

from __future__ import annotations

from collections.abc import Mapping

from eaglesearch.spec import EvalSpec


def objective(scores: Mapping[str, float], spec: EvalSpec) -> float:
    """Mean of the selected benchmarks' accuracies (``spec.benchmarks``; all when unset)."""
    names = list(spec.benchmarks) if spec.benchmarks is not None else sorted(scores)
    missing = [n for n in names if n not in scores]
    if missing:
        raise KeyError(f"eval.benchmarks names {', '.join(missing)}, which were not evaluated "
                       f"(evaluated: {', '.join(sorted(scores))})")
    if not names:
        raise ValueError("no benchmark to aggregate; the eval split list is empty")
    return sum(scores[n] for n in names) / len(names)
