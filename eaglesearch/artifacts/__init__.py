"""The content-addressed artifact store: stage results built once (atomic claims) and shared by key."""

from eaglesearch.artifacts.store import (
    MARKER,
    ArtifactStore,
    Claim,
    ClaimInfo,
    ClaimLost,
    WaitState,
    artifact_key,
)

__all__ = ["MARKER", "ArtifactStore", "Claim", "ClaimInfo", "ClaimLost", "WaitState", "artifact_key"]
