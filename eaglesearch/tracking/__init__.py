"""The MLflow record of searches and trials. The only package that imports mlflow."""

from eaglesearch.tracking.mlflow_ui import Leaderboard, leaderboard_url
from eaglesearch.tracking.records import RunRecord, source_run_id
from eaglesearch.tracking.store import TrackingStore
from eaglesearch.tracking.uri import absolute_uri, default_tracking_uri

__all__ = ["Leaderboard", "RunRecord", "TrackingStore", "absolute_uri", "default_tracking_uri", "leaderboard_url",
           "source_run_id"]
