"""Numbers as people read them in tables: 2.09M parameters, 47 s or 1m04s, three significant digits for GFLOPs.

Only what people read is humanized (the terminal, markdown, HTML); CSV files and MLflow keep raw values. Which
format a column gets is decided by its name, in one place (:func:`column_format`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

MISSING = "–"
_SUFFIXES = ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k"))


def _missing(value: Any) -> bool:
    if value is None or value.__class__.__name__ in ("NAType", "NaTType"):
        return True
    return isinstance(value, float) and math.isnan(value)


def count(value: Any) -> str:
    """A count with a suffix and three significant digits: 2094272 → ``2.09M``, 812 → ``812``."""
    if _missing(value):
        return MISSING
    number = float(value)
    for scale, suffix in _SUFFIXES:
        if abs(number) >= scale:
            scaled = number / scale
            digits = 2 if abs(scaled) < 10 else 1 if abs(scaled) < 100 else 0
            return f"{scaled:.{digits}f}{suffix}"
    return f"{number:.0f}" if number == int(number) else f"{number:.3g}"


def seconds(value: Any) -> str:
    """A duration: ``0.4 s``, ``47 s``, ``1m04s``, ``2h05m``."""
    if _missing(value):
        return MISSING
    total = float(value)
    if total < 10:
        return f"{total:.1f} s"
    whole = round(total)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def significant(value: Any, digits: int = 3) -> str:
    """Three significant digits without exponent for everyday magnitudes: 0.0084 → ``0.0084``, 123.4 → ``123``."""
    if _missing(value):
        return MISSING
    number = float(value)
    if number == 0:
        return "0"
    if 1e-4 <= abs(number) < 1e6:
        decimals = max(0, digits - 1 - math.floor(math.log10(abs(number))))
        return f"{number:.{decimals}f}"
    return f"{number:.{digits - 1}e}"


def score(value: Any) -> str:
    """Scores, intervals and deltas: four decimals (the resolution intervals are compared at)."""
    if _missing(value):
        return MISSING
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return str(int(value))
    return f"{float(value):.4f}"


def column_format(column: str) -> Callable[[Any], str] | None:
    """The humanizer for a leaderboard column, by its name; None for text and plain integers (round, rank)."""
    name = column.rsplit("/", 1)[-1]
    if name in ("params", "trainable_params", "visual_tokens", "tokens", "samples") or name.endswith("_tokens"):
        return count
    if name.endswith("_s") or name in ("seconds", "wall_s"):
        return seconds
    if "gflops" in name or "flops" in name:
        return significant
    return None


def cell(column: str, value: Any) -> str:
    """One cell for people: the column's humanizer, else missing as "–", integers as they are, floats as scores."""
    if _missing(value):
        return MISSING
    formatter = column_format(column)
    if formatter is not None and isinstance(value, numbers.Real) and not isinstance(value, bool):
        return formatter(value)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        if isinstance(value, float) and value == int(value) and column in ("round", "rank"):
            return str(int(value))
        return score(value)
    return str(value)
