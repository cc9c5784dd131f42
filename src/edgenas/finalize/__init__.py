"""Finalize a search: retrain the chosen architectures at full fidelity, check them on the
holdout split and export the best (see `finalize`)."""

from __future__ import annotations

from edgenas.finalize._finalize import (
    FINAL_DIR,
    FinalCandidate,
    FinalResult,
    finalize,
    wilson_interval,
)

__all__ = ["FINAL_DIR", "FinalCandidate", "FinalResult", "finalize", "wilson_interval"]
