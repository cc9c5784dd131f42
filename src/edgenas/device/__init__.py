"""The device half of profiling; imports only NumPy and ONNX Runtime.

``edgenas-device PLAN --threads N --out PROFILE.json`` (or ``python -m edgenas.device``) times
every model of a plan written by ``edgenas profile plan``, measures the peak memory of its
reference networks and records what it ran on.
"""

from __future__ import annotations

from edgenas.device._memory import MemoryMeasurement, MemoryMeasurementError, measure_onnx_memory
from edgenas.device._profiler import (
    PLAN_FORMAT,
    PROFILE_FORMAT,
    PROFILE_VERSION,
    PlanEntry,
    PlanError,
    device_info,
    main,
    profile_plan,
    read_plan,
)
from edgenas.device._timing import LatencyMeasurement, make_session, measure_onnx_latency

__all__ = [
    "PLAN_FORMAT",
    "PROFILE_FORMAT",
    "PROFILE_VERSION",
    "LatencyMeasurement",
    "MemoryMeasurement",
    "MemoryMeasurementError",
    "PlanEntry",
    "PlanError",
    "device_info",
    "main",
    "make_session",
    "measure_onnx_latency",
    "measure_onnx_memory",
    "profile_plan",
    "read_plan",
]
