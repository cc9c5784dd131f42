"""Peak memory as a runtime holds it: the analytic estimate, calibrated against measurements.

The analytic estimate (:func:`~edgenas.cost.analytic_costs`) counts the fp32 weights once and the
largest set of activations alive at once. ONNX Runtime holds more: while a session is created
the weights exist in several copies (the file's bytes, the parsed graph, the initialised and
re-laid-out tensors); its arena keeps the pages the first run touched and then allocates one
block for the planned activation layout; the session itself and the kernels it loads cost a
few megabytes. So the peak that ``edgenas-device`` measures (peak resident memory of a fresh
process minus the same process without the model) is modelled as

    peak ≈ a · weights + b · activations + c

with a, b, c fitted by least squares on relative error over a profile's reference networks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgenas.arch import Genotype
from edgenas.cost._analytic import AnalyticCosts, analytic_costs

__all__ = ["MIN_MEMORY_REFERENCES", "MemoryCalibration"]

#: Reference networks with a measured peak that a profile needs before it is fitted.
MIN_MEMORY_REFERENCES = 5


@dataclass(frozen=True)
class MemoryCalibration:
    """``peak ≈ weights_factor · fp32 weights + activations_factor · peak activations +
    overhead_mb`` (all in MB).

    The defaults were fitted on 60 random architectures of the ``edge`` space (3 input channels,
    10 classes) measured with ONNX Runtime 1.32, one thread, on an x86-64 server CPU with
    AVX-512 (``python benchmarks/memory_check.py --fit 60 --fit-seed 1``; BENCHMARKS.md checks
    them on 20 others); another runtime version or CPU family lays memory out differently, so a
    device profile with measured peaks (``edgenas-device``) replaces them.
    """

    weights_factor: float = 2.907
    activations_factor: float = 2.142
    overhead_mb: float = 7.40
    source: str = "default (x86-64, ONNX Runtime 1.32)"

    def peak_memory_mb(self, analytic: AnalyticCosts) -> float:
        return (
            self.weights_factor * analytic.size_mb
            + self.activations_factor * analytic.peak_activation_mb
            + self.overhead_mb
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "weights_factor": self.weights_factor,
            "activations_factor": self.activations_factor,
            "overhead_mb": self.overhead_mb,
            "source": self.source,
        }

    @classmethod
    def fit(
        cls, samples: Sequence[tuple[AnalyticCosts, float]], source: str = "fitted"
    ) -> MemoryCalibration:
        """Fit on (analytic costs, measured peak MB) pairs, minimising the squared relative
        error. Coefficients stay ≥ 0: a term that would go negative is dropped and the rest
        refitted (the best such subset wins), so few or odd samples cannot give an estimate
        that shrinks as a network grows."""
        if len(samples) < 3:
            raise ValueError("a memory calibration needs at least 3 measured networks")
        x = np.array([[a.size_mb, a.peak_activation_mb, 1.0] for a, _ in samples])
        y = np.array([m for _, m in samples], dtype=float)
        if not np.all(y > 0):
            raise ValueError("measured peaks must be positive")
        best: tuple[float, np.ndarray] | None = None
        for subset in ((0, 1, 2), (0, 1), (0, 2), (1, 2), (0,), (1,), (2,)):
            cols = list(subset)
            coef, *_ = np.linalg.lstsq(x[:, cols] / y[:, None], np.ones_like(y), rcond=None)
            if np.any(coef < 0):
                continue
            full = np.zeros(3)
            full[cols] = coef
            error = float(np.sum((x @ full / y - 1.0) ** 2))
            if best is None or error < best[0] - 1e-12:
                best = (error, full)
        assert best is not None  # the intercept alone is always non-negative
        a, b, c = (float(v) for v in best[1])
        return cls(a, b, c, source)

    @classmethod
    def from_profile(
        cls, profile: dict[str, Any], source: str = "the profile"
    ) -> MemoryCalibration:
        """Fitted on the profile's reference networks with a measured ``peak_memory_mb``; the
        defaults when it has fewer than :data:`MIN_MEMORY_REFERENCES` of them."""
        samples = memory_samples(profile)
        if len(samples) < MIN_MEMORY_REFERENCES:
            return cls()
        name = profile.get("device", {}).get("name") or source
        return cls.fit(samples, f"{name} ({len(samples)} networks)")


def memory_samples(profile: dict[str, Any]) -> list[tuple[AnalyticCosts, float]]:
    """(analytic costs, measured peak MB) of every reference network of a profile whose peak
    memory was measured. Network keys read ``GENOTYPE|in3_n10``."""
    samples = []
    for key, m in profile.get("measurements", {}).items():
        if not isinstance(m, dict) or m.get("kind") != "network":
            continue
        peak = m.get("peak_memory_mb")
        if not isinstance(peak, (int, float)) or not peak > 0:
            continue
        try:
            genotype, shape = key.split("|", 1)
            channels, classes = shape[2:].split("_n")
            a = analytic_costs(Genotype.parse(genotype), int(channels), int(classes))
        except ValueError:  # GenotypeError is a ValueError
            continue  # not a key this version writes: leave it out
        samples.append((a, float(peak)))
    return samples
