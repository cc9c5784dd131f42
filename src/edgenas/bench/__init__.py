"""Benchmarks of search strategies on tabular data (``edgenas bench``)."""

from __future__ import annotations

from edgenas.bench._nb201 import (
    CHECKPOINTS,
    LATENCY_ERROR,
    MODES,
    REFERENCES,
    NB201Table,
    RunTrace,
    benchmark,
    load_table,
    mean_interval,
    predicted_latency,
    run_strategy,
)

__all__ = [
    "CHECKPOINTS",
    "LATENCY_ERROR",
    "MODES",
    "REFERENCES",
    "NB201Table",
    "RunTrace",
    "benchmark",
    "load_table",
    "mean_interval",
    "predicted_latency",
    "run_strategy",
]
