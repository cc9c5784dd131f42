"""The cost model: ``CostModel.estimate(genotype) -> Costs``, and constraints on costs."""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from edgenas._io import read_json, write_json
from edgenas.arch import Genotype, build_model, export_onnx
from edgenas.cost._analytic import analytic_costs
from edgenas.cost._energy import EnergyModel
from edgenas.cost._memory import MemoryCalibration
from edgenas.cost._predictor import LatencyPredictor
from edgenas.cost._units import parse_count, parse_energy, parse_latency, parse_size
from edgenas.device import measure_onnx_latency

__all__ = ["COST_FIELDS", "Constraints", "CostModel", "Costs"]


@dataclass(frozen=True)
class Costs:
    """What a candidate costs on the target, at batch 1."""

    latency_ms: float
    peak_memory_mb: float  # peak memory of the runtime session (calibrated estimate)
    size_mb: float  # fp32 weights
    params: int
    macs: int
    energy_mj: float = math.nan  # estimated energy per inference; NaN: not estimated

    @property
    def size_int8_mb(self) -> float:
        """Weights quantized to int8 (one byte each; per-channel scales are negligible)."""
        return self.params / 1e6

    def to_dict(self) -> dict[str, Any]:
        d = {**asdict(self), "size_int8_mb": self.size_int8_mb}
        if math.isnan(self.energy_mj):
            d["energy_mj"] = None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Costs:
        """Read back from ``to_dict``; results written before a field existed (such as
        ``energy_mj``) leave it at its default."""
        values = {f.name: d[f.name] for f in fields(cls) if d.get(f.name) is not None}
        return cls(**values)


COST_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Costs))

# Constraint name (as the CLI says it) -> (Costs field, unit for messages)
_LIMITS = {
    "max_latency_ms": ("latency_ms", "ms"),
    "max_memory_mb": ("peak_memory_mb", "MB"),
    "max_size_mb": ("size_mb", "MB"),
    "max_macs": ("macs", "MACs"),
    "max_params": ("params", "params"),
    "max_energy_mj": ("energy_mj", "mJ (estimated)"),
}


@dataclass(frozen=True)
class Constraints:
    """Upper limits on costs; ``None`` means no limit."""

    max_latency_ms: float | None = None
    max_memory_mb: float | None = None
    max_size_mb: float | None = None
    max_macs: float | None = None
    max_params: float | None = None
    max_energy_mj: float | None = None  # on the estimated energy per inference

    @classmethod
    def parse(
        cls,
        max_latency: str | float | None = None,
        max_memory: str | float | None = None,
        max_size: str | float | None = None,
        max_macs: str | float | None = None,
        max_energy: str | float | None = None,
    ) -> Constraints:
        """Limits as users write them (``"5ms"``, ``"50MB"``, ``"2MB"``, ``"100M"``, ``"5mJ"``);
        numbers are taken in ms, MB, MB, MACs and mJ."""
        return cls(
            max_latency_ms=parse_latency(max_latency) if max_latency is not None else None,
            max_memory_mb=parse_size(max_memory) if max_memory is not None else None,
            max_size_mb=parse_size(max_size) if max_size is not None else None,
            max_macs=parse_count(max_macs) if max_macs is not None else None,
            max_energy_mj=parse_energy(max_energy) if max_energy is not None else None,
        )

    def active(self) -> dict[str, float]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def violations(self, costs: Costs) -> dict[str, float]:
        """Relative excess per active limit: ``cost / limit - 1``; ≤ 0 means it holds."""
        return {
            name: getattr(costs, _LIMITS[name][0]) / limit - 1.0
            for name, limit in self.active().items()
        }

    def feasible(self, costs: Costs) -> bool:
        return all(v <= 0 for v in self.violations(costs).values())

    def describe(self) -> str:
        parts = [f"{_LIMITS[k][0]} ≤ {v:g} {_LIMITS[k][1]}" for k, v in self.active().items()]
        return ", ".join(parts) if parts else "none"

    def to_dict(self) -> dict[str, float]:
        return self.active()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Constraints:
        return cls(**{k: v for k, v in d.items() if k in _LIMITS})


class CostModel:
    """Estimates the costs of genotypes for one input shape and class count.

    Parameters, MACs, size, peak memory and energy are analytic (microseconds); latency is
    predicted by ``predictor`` (a :class:`LatencyPredictor` from a device profile) when one is
    given, otherwise measured with ONNX Runtime on this machine (batch 1, ``threads`` threads) and cached per
    genotype, in memory and, when ``cache_file`` is given, on disk so a resumed search does not
    measure again.

    Peak memory is the analytic estimate mapped through ``memory`` (a
    :class:`MemoryCalibration`) to what ONNX Runtime really holds; energy is the estimate of
    ``energy`` (an :class:`EnergyModel`). With a device ``profile`` (as ``edgenas-device``
    writes it), both come from the profile: the calibration fitted on its measured reference
    networks, the energy coefficients from its ``"energy"`` object; each falls back to the
    defaults when the profile lacks it, and an explicit argument wins.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        threads: int = 1,
        cache_file: Path | None = None,
        profile: dict[str, Any] | None = None,
        memory: MemoryCalibration | None = None,
        energy: EnergyModel | None = None,
        predictor: LatencyPredictor | None = None,
    ) -> None:
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.threads = threads
        if memory is None:
            memory = MemoryCalibration.from_profile(profile) if profile else MemoryCalibration()
        if energy is None:
            energy = EnergyModel.from_profile(profile) if profile else EnergyModel()
        self.memory = memory
        self.energy = energy
        self.predictor = predictor
        self.cache_file = Path(cache_file) if cache_file else None
        self._latency: dict[str, float] = {}
        data = read_json(self.cache_file) if self.cache_file else None
        # A damaged cache, or one measured with other threads or another runtime, is only a
        # cache: measure again.
        if (
            isinstance(data, dict)
            and data.get("threads") == threads
            and data.get("runtime") == _runtime_version()
            and isinstance(data.get("latency_ms"), dict)
        ):
            with contextlib.suppress(TypeError, ValueError):
                self._latency = {k: float(v) for k, v in data["latency_ms"].items()}

    def analytic(self, genotype: Genotype) -> Costs:
        """Costs without latency (``latency_ms`` is NaN): cheap enough for every candidate."""
        a = analytic_costs(genotype, self.in_channels, self.num_classes)
        return Costs(
            float("nan"),
            self.memory.peak_memory_mb(a),
            a.size_mb,
            a.params,
            a.macs,
            self.energy.energy_mj(a.macs, a.bytes_moved),
        )

    def estimate(self, genotype: Genotype, *, limit_ms: float | None = None) -> Costs:
        a = self.analytic(genotype)
        return replace(a, latency_ms=self.latency_ms(genotype, limit_ms=limit_ms))

    def latency_ms(
        self, genotype: Genotype, *, fresh: bool = False, limit_ms: float | None = None
    ) -> float:
        """Latency in ms: predicted from the device profile when the model has a ``predictor``,
        else measured here (and cached). ``fresh=True`` always measures here, now.

        With ``limit_ms``, a model whose warm-up runs already take over three times the limit is
        not timed further (its rough latency is enough to reject it).
        """
        if self.predictor is not None and not fresh:
            return self.predictor.predict(genotype)[0]
        key = str(genotype)
        if not fresh and key in self._latency:
            return self._latency[key]
        model = build_model(genotype, self.in_channels, self.num_classes)
        value = measure_onnx_latency(
            export_onnx(model),
            threads=self.threads,
            give_up_above_ms=3 * limit_ms if limit_ms else None,
        ).median_ms
        if not fresh:
            self._latency[key] = value
            self._save()
        return value

    def _save(self) -> None:
        if not self.cache_file:
            return
        payload = {
            "threads": self.threads,
            "runtime": _runtime_version(),
            "latency_ms": self._latency,
        }
        write_json(self.cache_file, payload, indent=None)


def _runtime_version() -> str:
    import onnxruntime

    return f"onnxruntime {onnxruntime.__version__}"
