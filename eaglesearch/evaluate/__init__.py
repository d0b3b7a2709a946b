"""Evaluation: benchmark items and loaders, pinned metrics, generation and likelihood scoring, intervals, aggregates.

Pure parts (``items``, ``metrics``, ``uncertainty``, ``groups``, ``predictions``, ``summary``, ``benchmarks``)
import without torch; ``run`` and ``likelihood`` drive a model.
"""
