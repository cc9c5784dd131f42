"""Latency profiling, host side: plans of ONNX models for a device to time.

The device side (``edgenas.device``, needing only ONNX Runtime and NumPy) times a plan and writes
a profile; ``edgenas.cost.LatencyPredictor`` predicts from it, :func:`check_profile` measures how
well, and ``edgenas search --device PROFILE.json`` searches with it.
"""

from __future__ import annotations

from edgenas.profile._check import check_profile, load_profile, prediction_metrics
from edgenas.profile._plan import conv_model, network_key, write_plan

__all__ = [
    "check_profile",
    "conv_model",
    "load_profile",
    "network_key",
    "prediction_metrics",
    "write_plan",
]
