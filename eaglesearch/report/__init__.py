"""Ranked tables compiled from the MLflow record, rendered to markdown/CSV and logged on the parent run."""

from eaglesearch.report.build import ReportPaths, write_report
from eaglesearch.report.render import to_csv, to_markdown
from eaglesearch.report.table import ranked_table, round_table

__all__ = ["ReportPaths", "ranked_table", "round_table", "to_csv", "to_markdown", "write_report"]
