"""Timing an ONNX model with ONNX Runtime: set threads, warm-up, repeats until the median holds.

This module needs only NumPy and ONNX Runtime, so it runs on the target device as it is.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["LatencyMeasurement", "make_session", "measure_onnx_latency"]

_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64,
                "tensor(int64)": np.int64, "tensor(int32)": np.int32,
                "tensor(uint8)": np.uint8}  # fmt: skip


@dataclass(frozen=True)
class LatencyMeasurement:
    median_ms: float
    runs: int
    spread_ms: float  # interquartile range of the timed runs


def make_session(model: bytes | str, threads: int) -> Any:
    """An ONNX Runtime CPU session as edgenas times models: sequential, all graph optimisations."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def _feeds(session: Any, batch: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    feeds = {}
    for inp in session.get_inputs():
        shape = [d if isinstance(d, int) else batch for d in inp.shape]
        dtype = _NUMPY_TYPES.get(inp.type, np.float32)
        feeds[inp.name] = rng.random(shape).astype(dtype)
    return feeds


def measure_onnx_latency(
    model: bytes | str,
    *,
    threads: int = 1,
    batch: int = 1,
    warmup: int = 5,
    min_runs: int = 15,
    max_runs: int = 200,
    min_seconds: float = 0.15,
    max_seconds: float | None = None,
    stable_within: float | None = None,
    give_up_above_ms: float | None = None,
) -> LatencyMeasurement:
    """Time one inference of an ONNX model with ONNX Runtime's CPU provider.

    Runs ``warmup`` untimed inferences, then times single inferences until at least
    ``min_runs`` are done and ``min_seconds`` have passed and, with ``stable_within`` (such as
    0.01), until the median moved by less than that share over the last ``min_runs`` runs; at
    most ``max_runs`` runs or ``max_seconds``. The median resists the noise of a shared machine
    better than the mean. When the warm-up runs already take longer than ``give_up_above_ms``,
    their median is returned at once.
    """
    session = make_session(model, threads)
    feed = _feeds(session, batch)
    warm: list[float] = []
    for _ in range(warmup):
        t0 = time.perf_counter()
        session.run(None, feed)
        warm.append((time.perf_counter() - t0) * 1e3)
    if (
        warm
        and give_up_above_ms is not None
        and statistics.median(warm[1:] or warm) > give_up_above_ms
    ):
        # Far beyond any limit: more runs would not change a rejection, only cost time.
        later = warm[1:] or warm
        return LatencyMeasurement(statistics.median(later), len(later), max(later) - min(later))
    times: list[float] = []
    start = time.perf_counter()
    last_median: float | None = None
    while len(times) < max_runs:
        t0 = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - t0) * 1e3)
        elapsed = time.perf_counter() - start
        if max_seconds is not None and elapsed >= max_seconds and len(times) >= 3:
            break
        if len(times) < min_runs or elapsed < min_seconds:
            continue
        if stable_within is None:
            break
        if len(times) % min_runs == 0:
            median = statistics.median(times)
            if last_median is not None and abs(median - last_median) <= stable_within * median:
                break
            last_median = median
    q = statistics.quantiles(times, n=4) if len(times) >= 2 else [times[0], times[0], times[0]]
    return LatencyMeasurement(statistics.median(times), len(times), q[2] - q[0])
