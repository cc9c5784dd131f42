"""Latency measured with ONNX Runtime on this machine: batch 1, set threads, warm-up, median."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np

__all__ = ["LatencyMeasurement", "measure_onnx_latency"]


@dataclass(frozen=True)
class LatencyMeasurement:
    median_ms: float
    runs: int
    spread_ms: float  # interquartile range of the timed runs


def measure_onnx_latency(
    model: bytes | str,
    *,
    threads: int = 1,
    warmup: int = 5,
    min_runs: int = 15,
    max_runs: int = 200,
    min_seconds: float = 0.15,
    give_up_above_ms: float | None = None,
) -> LatencyMeasurement:
    """Time one inference of an ONNX model with ONNX Runtime's CPU provider.

    Runs ``warmup`` untimed inferences, then times single inferences until at least
    ``min_runs`` are done and ``min_seconds`` have passed (or ``max_runs``), and returns their
    median, which resists the noise of a shared machine better than the mean. When the warm-up
    runs already take longer than ``give_up_above_ms``, their median is returned at once.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    shape = [1 if not isinstance(d, int) else d for d in inp.shape]
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    feed = {inp.name: x}
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
    while len(times) < max_runs and (
        len(times) < min_runs or time.perf_counter() - start < min_seconds
    ):
        t0 = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - t0) * 1e3)
    q = statistics.quantiles(times, n=4)
    return LatencyMeasurement(statistics.median(times), len(times), q[2] - q[0])
