"""Evaluation: held-out benchmarks, greedy generation, exact match, the recipe's aggregate objective."""

from eaglesearch.evaluate.aggregate import objective
from eaglesearch.evaluate.exact_match import exact_match, normalize_answer
from eaglesearch.evaluate.generate import EvalOutcome, Prediction, evaluate

__all__ = ["EvalOutcome", "Prediction", "evaluate", "exact_match", "normalize_answer", "objective"]
