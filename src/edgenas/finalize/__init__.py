"""Finalize a search: retrain the chosen architectures at full fidelity, check them on the
holdout split, compress the best (distillation, pruning, INT8) with its constraints checked
again after every step, and export it (see `finalize`)."""

from __future__ import annotations

from edgenas.finalize._finalize import (
    FINAL_DIR,
    FinalCandidate,
    FinalResult,
    finalize,
    wilson_interval,
)
from edgenas.finalize._steps import CompressOptions, Step

__all__ = [
    "FINAL_DIR",
    "CompressOptions",
    "FinalCandidate",
    "FinalResult",
    "Step",
    "finalize",
    "wilson_interval",
]
