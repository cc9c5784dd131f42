"""Finalize a search: retrain the chosen architectures at full fidelity, check them on the
holdout split, compress the best (distillation, pruning, INT8) with its constraints checked
again after every step, and export it (see `finalize`)."""

from __future__ import annotations

from edgenas.finalize._finalize import finalize
from edgenas.finalize._intervals import accuracy_difference_interval, holdout_gap, wilson_interval
from edgenas.finalize._result import FINAL_DIR, FinalCandidate, FinalResult
from edgenas.finalize._scores import (
    SPLITS,
    MajorityBaseline,
    majority_baselines,
    per_class_rows,
    run_metric,
)
from edgenas.finalize._steps import CompressOptions, Step

__all__ = [
    "FINAL_DIR",
    "SPLITS",
    "CompressOptions",
    "FinalCandidate",
    "FinalResult",
    "MajorityBaseline",
    "Step",
    "accuracy_difference_interval",
    "finalize",
    "holdout_gap",
    "majority_baselines",
    "per_class_rows",
    "run_metric",
    "wilson_interval",
]
