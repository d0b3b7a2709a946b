"""The content-addressed artifact store: stage results built once (atomic claims) and shared by key."""

from eaglesearch.artifacts.claims import Claim, ClaimInfo, ClaimLost, WaitState
from eaglesearch.artifacts.keys import artifact_key
from eaglesearch.artifacts.store import MARKER, ArtifactStore

__all__ = ["MARKER", "ArtifactStore", "Claim", "ClaimInfo", "ClaimLost", "WaitState", "artifact_key"]
