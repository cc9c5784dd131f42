"""Latency predicted from a device profile: a sum over a network's pieces, calibrated.

A network is cut into pieces — stem, each block at its input shape, each long skip, head — whose
latencies the device measured (``edgenas-device``). The prediction is

    latency = α · Σ piece latencies + β · number of pieces + γ

with α, β, γ fitted on whole reference networks timed on the same device (they absorb what
timing pieces one by one adds or misses: per-call overhead, cache effects between pieces).
Pieces the profile lacks fall back to a linear model of latency in operator count, MACs of
dense, pointwise and depthwise convolutions, and activations moved, fitted per piece kind on the
measured pieces; such predictions carry the
model's residual spread as their uncertainty.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from edgenas.arch import Genotype
from edgenas.cost._analytic import ConvOp, block_ops
from edgenas.errors import ConfigError

__all__ = ["LatencyPredictor", "PieceSpec", "piece_specs"]


@dataclass(frozen=True)
class PieceSpec:
    """A piece's key (as the plan names it), its group for the fallback model and its sizes."""

    key: str
    group: str  # stem, skip, head, or block:<type>
    macs: int
    params: int
    elems: int  # activations read and written
    macs_dense: int = 0  # k×k convolutions
    macs_pointwise: int = 0  # 1×1 convolutions
    macs_depthwise: int = 0  # grouped (depthwise) convolutions
    ops: int = 0

    def features(self) -> list[float]:
        # Latency adds up over operators; each kind of operator runs at its own speed
        # (depthwise convolutions are bound by memory, dense ones by arithmetic).
        return [
            1.0,
            self.ops,
            self.macs_dense / 1e6,
            self.macs_pointwise / 1e6,
            self.macs_depthwise / 1e6,
            self.elems / 1e6,
        ]


def _ops_spec(key: str, group: str, ops: Sequence[ConvOp], extra_elems: int = 0) -> PieceSpec:
    return PieceSpec(
        key,
        group,
        sum(o.macs for o in ops),
        sum(o.weights for o in ops),
        sum(o.in_elems + o.out_elems for o in ops) + extra_elems,
        macs_dense=sum(o.macs for o in ops if o.groups == 1 and o.kernel != (1, 1)),
        macs_pointwise=sum(o.macs for o in ops if o.groups == 1 and o.kernel == (1, 1)),
        macs_depthwise=sum(o.macs for o in ops if o.groups > 1),
        ops=len(ops),
    )


def piece_specs(g: Genotype, in_channels: int, num_classes: int) -> list[PieceSpec]:
    """The pieces of a genotype's network, keyed exactly as ``edgenas profile plan`` keys them."""
    specs = [
        _ops_spec(
            f"stem{g.stem}|in{in_channels}x{g.resolution}",
            "stem",
            [ConvOp(in_channels, g.stem, (3, 3), 2, 1, g.resolution)],
        )
    ]
    out_channels = [g.stem] + [s.out_channels for s in g.shapes()]
    for s in g.shapes():
        key = f"{replace(s.gene, skip=0)}|in{s.in_channels}x{s.in_size}"
        specs.append(_ops_spec(key, f"block:{s.gene.type}", block_ops(s)))
        if s.gene.skip:
            src = out_channels[s.index - s.gene.skip + 1]
            c, size = s.out_channels, s.out_size
            ops = [] if src == c else [ConvOp(src, c, (1, 1), 1, 1, size)]
            specs.append(_ops_spec(f"skip_c{c}|in{src}x{size}", "skip", ops, 3 * c * size * size))
    last = out_channels[-1]
    head_ops = [ConvOp(last, g.head, (1, 1), 1, 1, g.final_size)] if g.head else []
    final = g.head or last
    linear = ConvOp(final, num_classes, (1, 1), 1, 1, 1, bias=True)
    specs.append(
        _ops_spec(
            f"head{g.head}_n{num_classes}|in{last}x{g.final_size}",
            "head",
            [*head_ops, linear],
            final * g.final_size**2,
        )
    )
    return specs


@dataclass(frozen=True)
class _Fallback:
    coef: np.ndarray
    sigma: float  # relative residual spread of the fit

    def __call__(self, spec: PieceSpec) -> float:
        return max(float(np.dot(self.coef, spec.features())), 1e-4)


def _fit_linear(specs: Sequence[PieceSpec], ms: Sequence[float]) -> _Fallback:
    """Least squares weighted by 1/latency, so small pieces count as much as large ones."""
    x = np.array([s.features() for s in specs])
    y = np.array(ms)
    w = 1.0 / np.maximum(y, 1e-4)
    coef, *_ = np.linalg.lstsq(x * w[:, None], y * w, rcond=None)
    rel = (x @ coef - y) / y
    sigma = float(np.sqrt(np.mean(rel**2))) if len(y) > x.shape[1] else 1.0
    return _Fallback(coef, sigma)


class LatencyPredictor:
    """Predicts the latency of genotypes on one device from its profile (see the module doc)."""

    def __init__(self, profile: dict[str, Any], in_channels: int, num_classes: int) -> None:
        self.in_channels = in_channels
        self.num_classes = num_classes
        measurements = profile.get("measurements", {})
        self.table: dict[str, float] = {
            k: float(m["median_ms"]) for k, m in measurements.items() if m.get("kind") != "network"
        }
        networks = {
            k.split("|", 1)[0]: float(m["median_ms"])
            for k, m in measurements.items()
            if m.get("kind") == "network" and k.endswith(f"|in{in_channels}_n{num_classes}")
        }
        self._fit_fallbacks(measurements)
        self.alpha, self.beta, self.gamma = 1.0, 0.0, 0.0
        self.references = {Genotype.parse(k): v for k, v in networks.items()}
        self._calibrate()

    # -- fitting --------------------------------------------------------------------------
    def _fit_fallbacks(self, measurements: dict[str, Any]) -> None:
        # The sizes of a measured piece are recovered from the genotypes it can appear in;
        # the plan's keys are built so that a one-block genotype reproduces them.
        specs: list[PieceSpec] = []
        ms: list[float] = []
        for key, value in self.table.items():
            spec = _spec_from_key(key)
            if spec is not None:
                specs.append(spec)
                ms.append(value)
        if len(specs) < 5:
            raise ConfigError(
                "the profile has too few measured pieces to predict from; "
                "write a plan with more --architectures"
            )
        self._global = _fit_linear(specs, ms)
        self._fallbacks: dict[str, _Fallback] = {}
        for group in {s.group for s in specs}:
            idx = [i for i, s in enumerate(specs) if s.group == group]
            if len(idx) >= 12:
                self._fallbacks[group] = _fit_linear([specs[i] for i in idx],
                                                         [ms[i] for i in idx])  # fmt: skip

    def _calibrate(self) -> None:
        if len(self.references) < 3:
            return
        rows, y = [], []
        for g, measured in self.references.items():
            total, n, _ = self._sum(g)
            rows.append([total, n, 1.0])
            y.append(measured)
        coef, *_ = np.linalg.lstsq(np.array(rows), np.array(y), rcond=None)
        self.alpha, self.beta, self.gamma = (float(c) for c in coef)

    # -- prediction -----------------------------------------------------------------------
    def _piece(self, spec: PieceSpec) -> tuple[float, float]:
        value = self.table.get(spec.key)
        if value is not None:
            return value, 0.0
        model = self._fallbacks.get(spec.group, self._global)
        return model(spec), model.sigma

    def _sum(self, g: Genotype) -> tuple[float, int, float]:
        """Σ piece latencies, number of pieces, and the variance the fallbacks add (ms²)."""
        total, var = 0.0, 0.0
        specs = piece_specs(g, self.in_channels, self.num_classes)
        for spec in specs:
            ms, sigma = self._piece(spec)
            total += ms
            var += (ms * sigma) ** 2
        return total, len(specs), var

    def block_sum(self, g: Genotype) -> float:
        """The plain sum of piece latencies, without calibration (a reference for checks)."""
        return self._sum(g)[0]

    def predict(self, g: Genotype) -> tuple[float, float]:
        """Predicted latency in ms and its standard uncertainty in ms (0 when every piece was
        measured)."""
        total, n, var = self._sum(g)
        return self.alpha * total + self.beta * n + self.gamma, self.alpha * math.sqrt(var)

    def predict_many(self, genotypes: Iterable[Genotype]) -> np.ndarray:
        return np.array([self.predict(g)[0] for g in genotypes])

    def coverage(self, g: Genotype) -> float:
        """Share of the genotype's pieces that the profile measured."""
        specs = piece_specs(g, self.in_channels, self.num_classes)
        return sum(s.key in self.table for s in specs) / len(specs)


def _spec_from_key(key: str) -> PieceSpec | None:
    """The sizes of a piece from its key (``ir_k3_e4_c24_s2|in16x48``, ``stem16|in3x96``, ...)."""
    try:
        head, shape = key.split("|", 1)
        channels, size = (int(v) for v in shape[2:].split("x"))
        if head.startswith("stem"):
            stem = int(head[4:])
            return _ops_spec(key, "stem", [ConvOp(channels, stem, (3, 3), 2, 1, size)])
        if head.startswith("skip_c"):
            c = int(head[6:])
            ops = [] if channels == c else [ConvOp(channels, c, (1, 1), 1, 1, size)]
            return _ops_spec(key, "skip", ops, 3 * c * size * size)
        if head.startswith("head"):
            h, _, n = head[4:].partition("_n")
            width, classes = int(h), int(n)
            ops = [ConvOp(channels, width, (1, 1), 1, 1, size)] if width else []
            final = width or channels
            ops.append(ConvOp(final, classes, (1, 1), 1, 1, 1, bias=True))
            return _ops_spec(key, "head", ops, final * size * size)
        from edgenas.arch import BlockGene, BlockShape

        gene = BlockGene.parse(head)
        if gene.residual and not gene.always_residual and gene.out_channels != channels:
            return None
        out_size = (size + gene.stride - 1) // gene.stride
        shape_ = BlockShape(0, gene, channels, size, gene.out_channels, out_size)
        return _ops_spec(key, f"block:{gene.type}", block_ops(shape_))
    except (ValueError, IndexError):
        return None
