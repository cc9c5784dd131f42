"""Latency predicted from a device profile: a table of measured convolutions, calibrated.

A network runs as a chain of convolutions (each with its batch norm folded in and its ReLU
fused, as ONNX Runtime executes them) and a few elementwise operators (hard-swish, residual and
skip additions, squeeze-excite gates, the pooling and classifier of the head). The device times
every distinct convolution of the plan on its own (``edgenas-device``); the convolutions are
keyed by everything that sets their cost, such as ``conv_k3x5_s2_g1|16>24@48`` (kernel 3×5,
stride 2, 1 group, 16 → 24 channels on a 48×48 input). The prediction is

    latency = Σ_kind a_kind · Σ table latencies + b_kind · convolutions + c_kind · tensor size
              + Σ elementwise coefficients · elements moved + fixed overhead

with kinds dense (k×k), pointwise (1×1) and depthwise, and every coefficient fitted on whole
reference networks timed on the same device. The calibration absorbs what timing operators one
by one adds (the runtime's per-call overhead, the layout reorders at a lone operator's input and
output) and what it misses (cache effects between operators, the elementwise work). Convolutions
the profile lacks fall back to a linear model per kind fitted on the measured ones; such
predictions carry that model's residual spread as their uncertainty. A single timing is noisy
too (a shared or throttling CPU): the device times every 20th operator twice, the spread of
those pairs sets how much a table entry (the mean of its timings) is trusted against the
model.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgenas.arch import BlockGene, BlockShape, Genotype
from edgenas.cost._analytic import ConvOp, block_ops
from edgenas.errors import ConfigError

__all__ = ["LatencyPredictor", "NetworkOps", "conv_key", "network_ops", "parse_conv_key"]

KINDS = ("dense", "pointwise", "depthwise")
ELEMENTWISE = ("hswish", "add", "se", "pool", "fc")
# Columns of the calibration: per kind the summed table latency, the count and the tensor size
# (MB of activations read and written), then elements moved per elementwise operator, then a
# constant.
FEATURES = (
    *(f"{f}_{k}" for k in KINDS for f in ("ms", "n", "elems")),
    *(f"elems_{e}" for e in ELEMENTWISE),
    "n_elementwise",
    "overhead",
)
HUBER_ROUNDS = 4
_INDEX = {f: i for i, f in enumerate(FEATURES)}
_OVERHEAD = _INDEX["overhead"]
# A part's row: the features, then the fallbacks' variance per kind, convolutions measured, all.
_VAR = len(FEATURES)
_MEASURED = _VAR + 3
_TOTAL = _VAR + 4
_WIDTH = _VAR + 5
_PRIOR = np.array([1.0 if f.startswith("ms_") else 0.0 for f in FEATURES])


def conv_kind(op: ConvOp) -> str:
    if op.groups > 1:
        return "depthwise"
    return "pointwise" if op.kernel == (1, 1) else "dense"


def conv_key(op: ConvOp) -> str:
    """The profile key of one convolution, such as ``conv_k3x5_s2_g1|16>24@48``."""
    kh, kw = op.kernel
    return (
        f"conv_k{kh}x{kw}_s{op.stride}_g{op.groups}|{op.in_channels}>{op.out_channels}@{op.in_size}"
    )


def parse_conv_key(key: str) -> ConvOp:
    """The convolution a key names (the inverse of :func:`conv_key`)."""
    try:
        head, shape = key.split("|", 1)
        name, k, s, g = head.split("_")
        channels, size = shape.split("@")
        cin, cout = channels.split(">")
        kh, kw = k[1:].split("x")
        if name != "conv" or s[0] != "s" or g[0] != "g":
            raise ValueError(key)
        return ConvOp(int(cin), int(cout), (int(kh), int(kw)), int(s[1:]), int(g[1:]), int(size))
    except ValueError:
        raise ConfigError(
            f"{key!r} is not a convolution key like conv_k3x3_s1_g1|16>24@48"
        ) from None


@dataclass(frozen=True)
class NetworkOps:
    """What a network runs: its convolutions and the elements its elementwise operators move."""

    convs: tuple[ConvOp, ...]
    elementwise: dict[str, float]  # elements (millions) per elementwise kind, and their count


def _add(d: dict[str, float], key: str, value: float) -> None:
    d[key] = d.get(key, 0.0) + value


def _block(gene: BlockGene, in_channels: int, in_size: int) -> NetworkOps:
    out_size = (in_size + gene.stride - 1) // gene.stride
    # (a block's long skip is not part of it: see _outer)
    shape = BlockShape(0, gene, in_channels, in_size, gene.out_channels, out_size)
    ops = block_ops(shape)
    main = [o for o in ops if not o.bias]
    se = [o for o in ops if o.bias]  # squeeze-excite's convolutions on the pooled tensor
    ew: dict[str, float] = {}
    out_elems = gene.out_channels * out_size**2
    if se:  # pool, gate and multiply over the full tensor; its two 1×1 convolutions are tiny
        _add(ew, "elems_se", 2 * se[0].in_channels * out_size**2 / 1e6)
        _add(ew, "n_elementwise", 5)
    if gene.act == "hswish":
        # Hard-swish runs as its own operators; ReLU is fused into the convolution.
        for op in main:
            if op.act:
                _add(ew, "elems_hswish", op.out_elems / 1e6)
                _add(ew, "n_elementwise", 2)
        if gene.always_residual:  # ResNet blocks activate again after the addition
            _add(ew, "elems_hswish", out_elems / 1e6)
            _add(ew, "n_elementwise", 2)
    if gene.residual:
        _add(ew, "elems_add", out_elems / 1e6)
        _add(ew, "n_elementwise", 1)
    return NetworkOps(tuple(main), ew)


def _outer(g: Genotype, in_channels: int, num_classes: int) -> NetworkOps:
    """What runs outside the blocks: stem, long skips (projection and addition) and head."""
    convs: list[ConvOp] = [ConvOp(in_channels, g.stem, (3, 3), 2, 1, g.resolution)]
    ew: dict[str, float] = {}
    out_channels = [g.stem] + [s.out_channels for s in g.shapes()]
    for s in g.shapes():
        if s.gene.skip:
            src = out_channels[s.index - s.gene.skip + 1]
            if src != s.out_channels:
                convs.append(ConvOp(src, s.out_channels, (1, 1), 1, 1, s.out_size))
            _add(ew, "elems_add", s.out_channels * s.out_size**2 / 1e6)
            _add(ew, "n_elementwise", 1)
    if g.head:
        convs.append(ConvOp(out_channels[-1], g.head, (1, 1), 1, 1, g.final_size))
    final = g.head or out_channels[-1]
    _add(ew, "elems_pool", final * g.final_size**2 / 1e6)
    _add(ew, "elems_fc", final * num_classes / 1e6)
    _add(ew, "n_elementwise", 2)
    return NetworkOps(tuple(convs), ew)


def network_ops(g: Genotype, in_channels: int, num_classes: int) -> NetworkOps:
    """The convolutions of a genotype's network (stem, blocks, skip projections, head; the tiny
    ones of squeeze-excite are left to its elementwise term) and its elementwise work."""
    outer = _outer(g, in_channels, num_classes)
    convs = list(outer.convs)
    ew = dict(outer.elementwise)
    for s in g.shapes():
        block = _block(s.gene, s.in_channels, s.in_size)
        convs.extend(block.convs)
        for k, v in block.elementwise.items():
            _add(ew, k, v)
    return NetworkOps(tuple(convs), ew)


# -- the fallback for convolutions the profile lacks --------------------------------------------


def _pad(c: int, block: int = 8) -> int:
    return -(-c // block) * block


def _conv_features(op: ConvOp) -> list[float]:
    """What sets a lone convolution's time: MACs on channels padded to the runtime's blocks,
    with small output widths running slower per MAC, and the tensors read and written."""
    kh, kw = op.kernel
    pixels = op.out_size**2
    if op.groups > 1:
        macs = _pad(op.in_channels) * pixels * kh * kw
    else:
        macs = _pad(op.out_channels) * _pad(op.in_channels) * pixels * kh * kw
    narrow = macs if op.out_channels < 16 else 0
    narrowish = macs if op.out_channels < 32 else 0
    return [1.0, macs / 1e6, narrow / 1e6, narrowish / 1e6, op.in_elems / 1e6, op.out_elems / 1e6]


@dataclass(frozen=True)
class _Fallback:
    coef: np.ndarray
    sigma: float  # relative residual spread of the fit

    def __call__(self, op: ConvOp) -> float:
        return max(
            sum(c * f for c, f in zip(self.coef.tolist(), _conv_features(op), strict=True)), 1e-4
        )


def _fit_fallback(ops: Sequence[ConvOp], ms: Sequence[float]) -> _Fallback | None:
    """Least squares weighted by 1/latency, so small convolutions count as much as large ones."""
    if len(ops) < 12:
        return None
    x = np.array([_conv_features(o) for o in ops])
    y = np.array(ms)
    w = 1.0 / np.maximum(y, 1e-4)
    coef, *_ = np.linalg.lstsq(x * w[:, None], y * w, rcond=None)
    rel = (x @ coef - y) / y
    return _Fallback(coef, float(np.sqrt(np.mean(rel**2))))


def _drift(anchors: Sequence[dict[str, Any]]) -> np.ndarray:
    """The machine's relative speed at each anchor timing (1 = its median over the run): the
    running median of five anchor timings, divided by their overall median."""
    ms = np.array([float(a["median_ms"]) for a in anchors], float)
    if len(ms) < 3:
        return np.ones(len(anchors))
    smooth = np.array([np.median(ms[max(0, i - 2) : i + 3]) for i in range(len(ms))])
    return smooth / np.median(ms)


def _corrected(m: dict[str, Any], speed: np.ndarray) -> dict[str, Any]:
    """A measurement with its timings divided by the machine's speed when they were taken."""

    def factor(index: Any) -> float:
        if isinstance(index, int) and 0 <= index < len(speed):
            return float(speed[index])
        return 1.0

    out = dict(m)
    out["median_ms"] = float(m["median_ms"]) / factor(m.get("anchor"))
    repeat = m.get("repeat_ms")
    if isinstance(repeat, (int, float)) and repeat > 0:
        out["repeat_ms"] = float(repeat) / factor(m.get("repeat_anchor"))
    else:
        out.pop("repeat_ms", None)
    return out


def _table_noise(measurements: Iterable[dict[str, Any]]) -> float:
    """Relative spread of one timing, from the operators the device timed twice (a robust
    estimate: 1.4826 × median absolute log ratio / √2); 10% when fewer than 10 were."""
    ratios = [
        math.log(float(m["repeat_ms"]) / float(m["median_ms"]))
        for m in measurements
        if isinstance(m.get("repeat_ms"), (int, float)) and m["repeat_ms"] > 0
    ]
    if len(ratios) < 10:
        return 0.1
    return max(1.4826 * float(np.median(np.abs(ratios))) / math.sqrt(2), 0.01)


class LatencyPredictor:
    """Predicts the latency of genotypes on one device from its profile (see the module doc).

    ``coefficients`` are the calibration (one per name in ``FEATURES``), ``residual`` the
    relative spread of the calibration on the reference networks.
    """

    def __init__(self, profile: dict[str, Any], in_channels: int, num_classes: int) -> None:
        self.in_channels = in_channels
        self.num_classes = num_classes
        measurements = profile.get("measurements", {})
        self.speed = _drift(profile.get("anchors") or [])
        timed = {k: _corrected(m, self.speed) for k, m in measurements.items()}
        convs = {k: m for k, m in timed.items() if m.get("kind") == "conv"}
        # An operator timed twice counts with the mean of both timings.
        self.table: dict[str, float] = {
            k: (m["median_ms"] + m["repeat_ms"]) / 2 if "repeat_ms" in m else m["median_ms"]
            for k, m in convs.items()
        }
        self.table_noise = _table_noise(convs.values())
        if len(self.table) < 5:
            raise ConfigError(
                "the profile has fewer than 5 timed convolutions; it was written from an older "
                "or a tiny plan: write a plan with `edgenas profile plan` and time it again"
            )
        suffix = f"|in{in_channels}_n{num_classes}"
        self.references: dict[Genotype, float] = {
            Genotype.parse(k[: -len(suffix)]): m["median_ms"]
            for k, m in timed.items()
            if m.get("kind") == "network" and k.endswith(suffix)
        }
        self._fit_fallbacks()
        self._parts: list[list[float]] = []
        self._matrix = np.zeros((0, _WIDTH))
        self._block_ids: dict[tuple[BlockGene, int, int], int] = {}
        self._outer_ids: dict[tuple[Any, ...], int] = {}
        self._conv_cache: dict[ConvOp, tuple[int, float, float, bool, float]] = {}
        self.coefficients = _PRIOR.copy()
        self.residual = float("nan")
        self._calibrate()

    # -- fitting --------------------------------------------------------------------------
    def _fit_fallbacks(self) -> None:
        by_kind: dict[str, tuple[list[ConvOp], list[float]]] = {k: ([], []) for k in KINDS}
        for key, value in self.table.items():
            op = parse_conv_key(key)
            by_kind[conv_kind(op)][0].append(op)
            by_kind[conv_kind(op)][1].append(value)
        every = _fit_fallback(
            [o for ops, _ in by_kind.values() for o in ops],
            [v for _, values in by_kind.values() for v in values],
        )
        self._fallbacks: dict[str, _Fallback] = {}
        for kind, (ops, ms) in by_kind.items():
            model = _fit_fallback(ops, ms) or every
            if model is not None:
                self._fallbacks[kind] = model
        if not self._fallbacks:
            raise ConfigError("the profile has too few timed convolutions to predict from")

    def _calibrate(self) -> None:
        """Ridge regression of the reference networks' latencies on the features, relative
        errors weighted equally, pulled towards 'the table is right' when references are few.
        A few rounds of Huber reweighting keep a reference timed during a slow spell of the
        machine from bending the fit."""
        if len(self.references) < 3:
            return
        x = self._rows(self.references)[:, : len(FEATURES)]
        y = np.array(list(self.references.values()))
        huber = np.ones(len(y))
        for _ in range(HUBER_ROUNDS):
            w = np.sqrt(huber) / y
            scale = np.maximum(np.abs(x * w[:, None]).max(axis=0), 1e-9)
            xs = x * w[:, None] / scale
            lam = 1e-3 * len(y)
            a = np.vstack([xs, math.sqrt(lam) * np.eye(len(FEATURES))])
            b = np.concatenate([y * w - xs @ (_PRIOR * scale), np.zeros(len(FEATURES))])
            delta, *_ = np.linalg.lstsq(a, b, rcond=None)
            self.coefficients = _PRIOR + delta / scale
            rel = (x @ self.coefficients - y) / y
            # Huber weights with the threshold at 1.345 robust standard deviations
            spread = 1.4826 * float(np.median(np.abs(rel))) or 1e-9
            huber = np.minimum(1.0, 1.345 * spread / np.maximum(np.abs(rel), 1e-12))
        self.residual = float(np.sqrt(np.mean(rel**2)))

    # -- prediction -----------------------------------------------------------------------
    def _conv(self, op: ConvOp) -> tuple[float, float, bool]:
        """Latency of one convolution, its variance (ms²) and whether it was measured."""
        value = self.table.get(conv_key(op))
        model = self._fallbacks.get(conv_kind(op)) or next(iter(self._fallbacks.values()))
        ms = model(op)
        if value is not None:
            # A single timing is noisy too: weigh it against the model by their spreads.
            w_table, w_model = self.table_noise**-2, model.sigma**-2
            return (w_table * value + w_model * ms) / (w_table + w_model), 0.0, True
        return ms, (ms * model.sigma) ** 2, False

    def _part(self, ops: NetworkOps) -> int:
        """Add a part (a block at its input shape, or what runs outside the blocks) to the
        part matrix and return its row: features, the fallbacks' variance per kind (ms², before
        calibration), convolutions measured, convolutions."""
        vec = [0.0] * _WIDTH
        for op in ops.convs:
            c = self._conv_cache.get(op)
            if c is None:
                kind = KINDS.index(conv_kind(op))
                ms, v, hit = self._conv(op)
                c = (kind, ms, v, hit, (op.in_elems + op.out_elems) / 1e6)
                self._conv_cache[op] = c
            kind, ms, v, hit, elems = c
            vec[3 * kind] += ms
            vec[3 * kind + 1] += 1
            vec[3 * kind + 2] += elems
            vec[_VAR + kind] += v
            vec[_MEASURED] += hit
        vec[_TOTAL] = len(ops.convs)
        for k, value in ops.elementwise.items():
            vec[_INDEX[k]] += value
        self._parts.append(vec)
        return len(self._parts) - 1

    def _part_ids(self, g: Genotype) -> list[int]:
        """The parts a genotype is made of. Parts are cached: a search proposes the same blocks
        at the same shapes again and again, so most candidates cost a few dictionary lookups."""
        shapes = g.shapes()
        last = shapes[-1].out_channels if shapes else g.stem
        skips = tuple((s.index, s.gene.skip, s.out_channels, s.out_size) for s in shapes
                      if s.gene.skip)  # fmt: skip
        outer_key = (g.stem, g.resolution, g.head, last, g.final_size,
                     tuple(s.out_channels for s in shapes) if skips else (), skips)  # fmt: skip
        outer = self._outer_ids.get(outer_key)
        if outer is None:
            outer = self._outer_ids[outer_key] = self._part(
                _outer(g, self.in_channels, self.num_classes)
            )
        ids = [outer]
        blocks = self._block_ids
        for s in shapes:
            key = (s.gene, s.in_channels, s.in_size)
            part = blocks.get(key)
            if part is None:
                part = blocks[key] = self._part(_block(s.gene, s.in_channels, s.in_size))
            ids.append(part)
        return ids

    def _rows(self, genotypes: Iterable[Genotype]) -> np.ndarray:
        """One row per genotype (the sum of its parts' rows, overhead 1): Python finds the
        parts, NumPy adds them up for all genotypes at once."""
        ids: list[int] = []
        starts: list[int] = []
        for g in genotypes:
            starts.append(len(ids))
            ids.extend(self._part_ids(g))
        if not starts:
            return np.zeros((0, _WIDTH))
        if len(self._matrix) != len(self._parts):
            self._matrix = np.array(self._parts)
        rows = np.add.reduceat(self._matrix[ids], starts, axis=0)
        rows[:, _OVERHEAD] = 1.0
        return rows

    def _row(self, g: Genotype) -> np.ndarray:
        return self._rows([g])[0]

    def predict(self, g: Genotype) -> tuple[float, float]:
        """Predicted latency in ms and its standard uncertainty in ms: the fallbacks' spread for
        unmeasured convolutions and the calibration's residual spread."""
        row = self._row(g)
        ms = float(row[: len(FEATURES)] @ self.coefficients)
        scales = self.coefficients[[FEATURES.index(f"ms_{k}") for k in KINDS]]
        var = float(row[_VAR : _VAR + len(KINDS)] @ scales**2)
        residual = 0.0 if math.isnan(self.residual) else self.residual * ms
        return ms, math.sqrt(var + residual**2)

    def predict_many(self, genotypes: Iterable[Genotype]) -> np.ndarray:
        """Predicted latencies (ms) of many genotypes, vectorised: parts seen before are looked
        up, and all rows go through the calibration as one matrix product."""
        return self._rows(genotypes)[:, : len(FEATURES)] @ self.coefficients

    def block_sum(self, g: Genotype) -> float:
        """The plain sum of the table's convolution latencies, without calibration (a
        reference for checks)."""
        row = self._row(g)
        return float(sum(row[FEATURES.index(f"ms_{k}")] for k in KINDS))

    def coverage(self, g: Genotype) -> float:
        """Share of the genotype's convolutions that the profile measured."""
        row = self._row(g)
        return float(row[_MEASURED] / max(row[_TOTAL], 1))
