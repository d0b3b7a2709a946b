"""The MLflow record of searches and trials. The only package that imports mlflow."""

from eaglesearch.tracking.mlflow_ui import Leaderboard, leaderboard_url
from eaglesearch.tracking.records import RunRecord, source_run_id
from eaglesearch.tracking.store import TrackingStore
from eaglesearch.tracking.uri import absolute_uri, default_tracking_uri
from eaglesearch.tracking.winners import KeptTrial, RegisteredWinner, Winners

__all__ = ["KeptTrial", "Leaderboard", "RegisteredWinner", "RunRecord", "TrackingStore", "Winners", "absolute_uri",
           "default_tracking_uri", "leaderboard_url", "source_run_id"]
