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

from edgenas.arch import BlockGene, BlockShape, Genotype
from edgenas.cost._analytic import ConvOp, block_ops
from edgenas.errors import ConfigError

__all__ = [
    "LatencyPredictor",
    "PieceSpec",
    "block_spec",
    "head_spec",
    "piece_specs",
    "skip_spec",
    "stem_spec",
]


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


def stem_spec(in_channels: int, stem: int, resolution: int) -> PieceSpec:
    ops = [ConvOp(in_channels, stem, (3, 3), 2, 1, resolution)]
    return _ops_spec(f"stem{stem}|in{in_channels}x{resolution}", "stem", ops)


def block_spec(gene: BlockGene, in_channels: int, in_size: int) -> PieceSpec:
    """A block at its input shape, such as ``ir_k3_e4_c24_s2|in16x48`` (its long skip apart)."""
    gene = replace(gene, skip=0)
    out_size = (in_size + gene.stride - 1) // gene.stride
    shape = BlockShape(0, gene, in_channels, in_size, gene.out_channels, out_size)
    return _ops_spec(f"{gene}|in{in_channels}x{in_size}", f"block:{gene.type}", block_ops(shape))


def skip_spec(src_channels: int, out_channels: int, size: int) -> PieceSpec:
    c = out_channels
    ops = [] if src_channels == c else [ConvOp(src_channels, c, (1, 1), 1, 1, size)]
    return _ops_spec(f"skip_c{c}|in{src_channels}x{size}", "skip", ops, 3 * c * size * size)


def head_spec(in_channels: int, head: int, size: int, num_classes: int) -> PieceSpec:
    ops = [ConvOp(in_channels, head, (1, 1), 1, 1, size)] if head else []
    final = head or in_channels
    ops.append(ConvOp(final, num_classes, (1, 1), 1, 1, 1, bias=True))
    return _ops_spec(f"head{head}_n{num_classes}|in{in_channels}x{size}", "head", ops,
                     final * size * size)  # fmt: skip


def piece_specs(g: Genotype, in_channels: int, num_classes: int) -> list[PieceSpec]:
    """The pieces of a genotype's network in execution order: stem, each block followed by its
    long skip if it has one, head. ``edgenas profile plan`` plans exactly these keys."""
    specs = [stem_spec(in_channels, g.stem, g.resolution)]
    out_channels = [g.stem] + [s.out_channels for s in g.shapes()]
    for s in g.shapes():
        specs.append(block_spec(s.gene, s.in_channels, s.in_size))
        if s.gene.skip:
            src = out_channels[s.index - s.gene.skip + 1]
            specs.append(skip_spec(src, s.out_channels, s.out_size))
    specs.append(head_spec(out_channels[-1], g.head, g.final_size, num_classes))
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
        # A key names everything that sets a piece's cost, so its sizes are read back from it.
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
            return stem_spec(channels, int(head[4:]), size)
        if head.startswith("skip_c"):
            return skip_spec(channels, int(head[6:]), size)
        if head.startswith("head"):
            width, _, classes = head[4:].partition("_n")
            return head_spec(channels, int(width), size, int(classes))
        return block_spec(BlockGene.parse(head), channels, size)
    except (ValueError, IndexError):  # GenotypeError is a ValueError
        return None
