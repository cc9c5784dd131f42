"""Benchmarks of search strategies on tabular data (``edgenas bench``)."""

from __future__ import annotations

from edgenas.bench._nb201 import (
    CHECKPOINTS,
    REFERENCES,
    NB201Table,
    RunTrace,
    benchmark,
    load_table,
    run_strategy,
)

__all__ = [
    "CHECKPOINTS",
    "REFERENCES",
    "NB201Table",
    "RunTrace",
    "benchmark",
    "load_table",
    "run_strategy",
]
