"""Latency profiling, host side: plans of ONNX pieces for a device to time.

The device side (``edgenas.device``, needing only ONNX Runtime and NumPy) times a plan and writes
a profile; ``edgenas.cost.LatencyPredictor`` predicts from it and :func:`check_profile` measures
how well. ``edgenas search`` does not use profiles yet: it measures latency on this machine.
"""

from __future__ import annotations

from edgenas.profile._check import check_profile, load_profile, prediction_metrics
from edgenas.profile._plan import Piece, genotype_pieces, network_key, write_plan

__all__ = [
    "Piece",
    "check_profile",
    "genotype_pieces",
    "load_profile",
    "network_key",
    "prediction_metrics",
    "write_plan",
]
