"""Renderers for report tables: GitHub markdown (without tabulate) and CSV."""

from __future__ import annotations

import math
import numbers
from typing import Any

import pandas as pd
from pandas.api import types as ptypes

from eaglesearch.report import humanize as humanized

MISSING = "–"


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def format_cell(value: Any, floatfmt: str = ".4f") -> str:
    """One cell: missing as "–", integers without decimals, floats with ``floatfmt``, text with pipes escaped."""
    if _is_missing(value):
        return MISSING
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return format(float(value), floatfmt)
    text = str(value).replace("\r", " ").replace("\n", " ")
    return text.replace("|", "\\|")


def _numeric_column(series: pd.Series) -> bool:
    return ptypes.is_numeric_dtype(series.dtype) and not ptypes.is_bool_dtype(series.dtype)


def to_markdown(df: pd.DataFrame, floatfmt: str = ".4f", humanize: bool = False) -> str:
    """A GitHub pipe table of ``df`` (index left out): numeric columns right-aligned, text left-aligned,
    cells padded to the column's width. Ends with a newline. With ``humanize`` cost columns read as people read them
    (``2.09M`` parameters, ``1m04s``; :mod:`eaglesearch.report.humanize`)."""
    headers = [format_cell(str(c)) for c in df.columns]
    if humanize:
        body = [[format_cell(humanized.cell(str(c), v)) for c, v in zip(df.columns, row, strict=True)]
                for row in df.itertuples(index=False, name=None)]
    else:
        body = [[format_cell(v, floatfmt) for v in row] for row in df.itertuples(index=False, name=None)]
    right = [_numeric_column(df.iloc[:, i]) for i in range(df.shape[1])]
    widths = [max([3, len(h), *(len(r[i]) for r in body)]) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        padded = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=True)]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if r else (":" + "-" * (w + 1))
                          for w, r in zip(widths, right, strict=True)) + "|"
    return "\n".join([line(headers), rule, *(line(r) for r in body)]) + "\n"


def to_csv(df: pd.DataFrame) -> str:
    """CSV with a header row, no index; missing values are empty cells."""
    return df.to_csv(index=False, lineterminator="\n")
