"""Latency predicted from a device profile: a table of measured convolutions, calibrated.

A network runs as a chain of convolutions (each with its batch norm folded in and its ReLU
fused, as ONNX Runtime executes them) and a few elementwise operators (hard-swish, residual and
skip additions, squeeze-excite gates, the pooling and classifier of the head). The device times
every distinct convolution of the plan on its own (``edgenas-device``); the convolutions are
keyed by everything that sets their cost, such as ``conv_k3x5_s2_g1|16>24@48`` (kernel 3×5,
stride 2, 1 group, 16 → 24 channels on a 48×48 input). The prediction is

    latency = Σ_kind a_kind · Σ table latencies + b_kind · convolutions + c_kind · tensor size
              + Σ elementwise coefficients · elements moved
              + s · squeeze-excite multiply-adds + fixed overhead

with kinds dense (k×k), pointwise (1×1) and depthwise, and every coefficient fitted on whole
reference networks timed on the same device. The calibration absorbs what timing operators one
by one adds (the runtime's per-call overhead, the layout reorders at a lone operator's input and
output) and what it misses (cache effects between operators, the elementwise work, and
squeeze-excite's two 1×1 convolutions on the pooled tensor, which only read their weights).
Convolutions the profile lacks fall back to a linear model per kind fitted on the measured
ones; such predictions carry that model's residual spread as their uncertainty. A single timing
is noisy too (a shared or throttling CPU): the device times every 20th operator twice, the
spread of those pairs sets how much a table entry (the mean of its timings) is trusted against
the model.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from operator import attrgetter, itemgetter
from typing import Any

import numpy as np

from edgenas.arch import BlockShape, ConvOp, Genotype
from edgenas.cost._network_ops import (
    _INDEX,
    FEATURES,
    KINDS,
    conv_key,
    conv_kind,
    parse_conv_key,
)
from edgenas.cost._templates import _Templates
from edgenas.errors import ConfigError

__all__ = ["LatencyPredictor"]

HUBER_ROUNDS = 4
_OVERHEAD = _INDEX["overhead"]
# A part's row: the features, then the fallbacks' variance per kind, convolutions measured, all.
_VAR = len(FEATURES)
_MEASURED = _VAR + 3
_TOTAL = _VAR + 4
_WIDTH = _VAR + 5
_PRIOR = np.array([1.0 if f.startswith("ms_") else 0.0 for f in FEATURES])


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


# -- vectorised parts ---------------------------------------------------------------------------
# A block's gene and input shape, read in C for every block of a batch: the key of its part.
# Its first fields, _SIZE_FREE (the gene without its long skip, and the input channels), key the
# description of the block's operations at every size.
_BLOCK_KEY = attrgetter("gene.type", "gene.out_channels", "gene.kernel", "gene.stride",
                        "gene.expansion", "gene.se", "gene.act", "gene.residual", "in_channels",
                        "in_size", "gene.skip")  # fmt: skip
_SIZE_FREE = itemgetter(slice(0, 9))
_IN_SIZE = attrgetter("in_size")
_OUT_CHANNELS = attrgetter("out_channels")
_OUT_SIZE = attrgetter("out_size")
_SKIP = attrgetter("gene.skip")
_STRIDE = attrgetter("gene.stride")
_STEM = attrgetter("stem")
_RESOLUTION = attrgetter("resolution")
_HEAD = attrgetter("head")


def _fields(n: int, *columns: Any) -> np.ndarray:
    """``n`` convolutions as rows of in and out channels, kernel height and width, stride,
    groups and input size (the fields of their profile key); a column may be one number."""
    fields = np.empty((n, 7), np.int64)
    for j, column in enumerate(columns):
        fields[:, j] = column
    return fields


def _add_convs(rows: np.ndarray, who: np.ndarray, convs: tuple[np.ndarray, ...]) -> None:
    """Add evaluated convolutions to the rows ``who`` names, in order (np.add.at is unbuffered:
    a row gets its convolutions summed one after another, as a loop over them would)."""
    kind, ms, var, hit, elems = convs
    np.add.at(rows, (who, 3 * kind), ms)
    np.add.at(rows, (who, 3 * kind + 1), 1.0)
    np.add.at(rows, (who, 3 * kind + 2), elems)
    np.add.at(rows, (who, _VAR + kind), var)
    np.add.at(rows[:, _MEASURED], who, hit)
    np.add.at(rows[:, _TOTAL], who, 1.0)


class LatencyPredictor:
    """Predicts the latency of genotypes on one device from its profile (see the module doc).

    ``coefficients`` are the calibration (one per name in ``FEATURES``), ``residual`` the
    relative spread of the calibration on the reference networks.

    Predictions are vectorised over all the blocks of all the genotypes asked for: Python only
    reads each block's fields; the convolutions they run, their table look-ups and the fallback
    model are evaluated as arrays. A block at a given input shape is evaluated once and kept as
    a row of a part matrix (a search proposes the same blocks again and again); the operations
    it describes are read once per gene and input channels, their sizes filled in as arrays.
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
        ops = {key: parse_conv_key(key) for key in self.table}
        self._fit_fallbacks(ops)
        self._index_table(ops)
        # Part rows of the blocks seen so far (and scratch rows after them), and each block's
        # output channels, output size and long skip.
        self._matrix = np.zeros((0, _WIDTH))
        self._block_info = np.zeros((0, 3), np.int64)
        self._n_parts = 0
        self._block_ids: dict[tuple[Any, ...], int] = {}
        self._templates = _Templates()
        self.coefficients = _PRIOR.copy()
        self.residual = float("nan")
        self._calibrate()

    # -- fitting --------------------------------------------------------------------------
    def _fit_fallbacks(self, parsed: dict[str, ConvOp]) -> None:
        by_kind: dict[str, tuple[list[ConvOp], list[float]]] = {k: ([], []) for k in KINDS}
        for key, value in self.table.items():
            op = parsed[key]
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
        # The model of each kind as arrays (a kind without its own uses the first there is).
        models = [self._fallbacks.get(k) or next(iter(self._fallbacks.values())) for k in KINDS]
        self._coef = np.array([m.coef for m in models], float)
        self._sigma = np.array([m.sigma for m in models], float)
        with np.errstate(divide="ignore"):
            self._w_model = self._sigma**-2.0
        self._w_table = self.table_noise**-2

    def _index_table(self, parsed: dict[str, ConvOp]) -> None:
        """The table as sorted integer codes of its keys' fields, for look-ups by
        ``np.searchsorted``: each field is clipped to one past the table's range on either side
        (values no key has) and the fields are packed in mixed radix. Keys written another way
        than :func:`conv_key` writes them are never looked up."""
        ops = [(k, op) for k, op in parsed.items() if conv_key(op) == k]
        fields = np.array([(o.in_channels, o.out_channels, *o.kernel, o.stride, o.groups,
                            o.in_size) for _, o in ops], np.int64).reshape(-1, 7)  # fmt: skip
        values = np.array([self.table[k] for k, _ in ops], float)
        self._table_lo = fields.min(axis=0) - 1 if ops else np.zeros(7, np.int64)
        self._table_hi = fields.max(axis=0) + 1 if ops else np.zeros(7, np.int64)
        radix = [int(r) for r in self._table_hi - self._table_lo + 1]
        self._table_mult: np.ndarray | None = None
        self._table_index: dict[tuple[int, ...], int] = {}
        self._table_values = values
        if math.prod(radix) < 2**62:
            mult = np.array([math.prod(radix[i + 1 :]) for i in range(7)], np.int64)
            codes = (fields - self._table_lo) @ mult
            order = np.argsort(codes, kind="stable")
            self._table_mult, self._table_codes = mult, codes[order]
            self._table_values = values[order]
        else:  # fields too wide to pack into 64 bits: look up row by row
            self._table_index = {tuple(r): i for i, r in enumerate(fields.tolist())}

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

    # -- convolutions, as arrays ----------------------------------------------------------
    def _lookup(self, fields: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The table's latency of each convolution (0 where it has none) and whether it has
        one."""
        if not len(self._table_values) or not len(fields):
            return np.zeros(len(fields)), np.zeros(len(fields), bool)
        if self._table_mult is not None:
            clipped = np.clip(fields, self._table_lo, self._table_hi) - self._table_lo
            codes = clipped @ self._table_mult
            pos = np.searchsorted(self._table_codes, codes)
            pos[pos == len(self._table_codes)] = 0
            found = self._table_codes[pos] == codes
        else:
            index = self._table_index
            pos = np.fromiter(map(index.get, map(tuple, fields.tolist()), repeat(-1)), np.intp,
                              len(fields))  # fmt: skip
            found = pos >= 0
        return np.where(found, self._table_values[pos], 0.0), found

    def _convs(self, fields: np.ndarray) -> tuple[np.ndarray, ...]:
        """Kind, latency, variance (ms², the fallback's for unmeasured ones), measured and
        tensor size (millions of elements read and written) of each convolution."""
        cin, cout, kh, kw, stride, groups, size = fields.T
        depthwise = groups > 1
        kind = np.where(depthwise, 2, np.where((kh == 1) & (kw == 1), 1, 0))
        out = (size + stride - 1) // stride
        pixels = out * out
        area = pixels * kh * kw
        pad_in = -(-cin // 8) * 8
        # as _conv_features computes them (and in the same order, so the sums are the same)
        macs = np.where(depthwise, pad_in * area, -(-cout // 8) * 8 * pad_in * area)
        in_elems, out_elems = cin * size * size, cout * pixels
        features = (macs / 1e6, np.where(cout < 16, macs, 0) / 1e6,
                    np.where(cout < 32, macs, 0) / 1e6, in_elems / 1e6, out_elems / 1e6)  # fmt: skip
        coef = self._coef[kind]
        model = coef[:, 0] * 1.0
        for j, feature in enumerate(features, 1):
            model = model + coef[:, j] * feature
        model = np.maximum(model, 1e-4)
        value, hit = self._lookup(fields)
        # A single timing is noisy too: weigh it against the model by their spreads.
        w_model = self._w_model[kind]
        ms = np.where(hit, (self._w_table * value + w_model * model) / (self._w_table + w_model),
                      model)  # fmt: skip
        var = np.where(hit, 0.0, (model * self._sigma[kind]) ** 2)
        return kind, ms, var, hit, (in_elems + out_elems) / 1e6

    # -- parts ----------------------------------------------------------------------------
    def _block_rows(self, keys: list[tuple[Any, ...]],
                    shapes: Sequence[BlockShape]) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """Part rows of blocks (given by their ``_BLOCK_KEY`` and shape): the features, the
        fallbacks' variance per kind (ms², before calibration), convolutions measured,
        convolutions. The convolutions are those the block describes (squeeze-excite's left to
        its elementwise term), evaluated together as arrays. Also each block's output channels,
        output size and long skip."""
        n = len(shapes)
        ids = self._templates.lookup(list(map(_SIZE_FREE, keys)), shapes)
        in_size = np.fromiter(map(_IN_SIZE, shapes), np.int64, n)
        info = np.empty((n, 3), np.int64)
        for j, field in enumerate((_OUT_CHANNELS, _OUT_SIZE, _SKIP)):
            info[:, j] = np.fromiter(map(field, shapes), np.int64, n)
        conv_owner, fields, term_owner, column, values = self._templates.expand(
            ids, in_size, info[:, 1]
        )
        kind, ms, var, hit, elems = self._convs(fields)
        # Every cell summed in one pass, each block's convolutions in execution order as a loop
        # over them adds them (bincount adds its weights one after another, from zero).
        cell = conv_owner * _WIDTH
        ones = np.ones(len(cell))
        cells = np.concatenate([cell + 3 * kind, cell + 3 * kind + 1, cell + 3 * kind + 2,
                                cell + _VAR + kind, cell + _MEASURED, cell + _TOTAL,
                                term_owner * _WIDTH + column])  # fmt: skip
        weights = np.concatenate([ms, ones, elems, var, hit, ones, values])
        rows = np.bincount(cells, weights, n * _WIDTH).reshape(n, _WIDTH)
        return rows, info

    def _reserve(self, rows: int) -> None:
        if rows > len(self._matrix):
            size = max(rows, 2 * len(self._matrix), 1024)
            matrix, info = np.zeros((size, _WIDTH)), np.zeros((size, 3), np.int64)
            matrix[: self._n_parts] = self._matrix[: self._n_parts]
            info[: self._n_parts] = self._block_info[: self._n_parts]
            self._matrix, self._block_info = matrix, info

    def _block_parts(self, shapes: Sequence[BlockShape]) -> np.ndarray:
        """The part of every block; blocks new to the predictor are evaluated together and
        kept."""
        keys = list(map(_BLOCK_KEY, shapes))
        index = self._block_ids
        ids = list(map(index.get, keys))
        if None in ids:
            missing = [i for i, part in enumerate(ids) if part is None]
            # each new block once (with one of its shapes: they are alike)
            seen = dict(zip([keys[i] for i in missing], [shapes[i] for i in missing], strict=True))
            new = list(seen)
            first, end = self._n_parts, self._n_parts + len(new)
            self._reserve(end)
            self._matrix[first:end], self._block_info[first:end] = self._block_rows(
                new, list(seen.values())
            )
            self._n_parts = end
            index.update(zip(new, range(first, end), strict=True))
            for i in missing:
                ids[i] = index[keys[i]]
        return np.fromiter(ids, np.intp, len(ids))

    def _outer_rows(self, gs: Sequence[Genotype], counts: np.ndarray,
                    info: np.ndarray) -> np.ndarray:  # fmt: skip
        """What runs outside the blocks of each genotype, as _outer counts it: the stem, the
        long skips (a 1×1 projection where the channels differ, and the addition) and the head
        (its 1×1 convolution, pooling and classifier). ``info`` holds the output channels,
        output size and long skip of every block."""
        n, m = len(gs), len(info)
        stem = np.fromiter(map(_STEM, gs), np.int64, n)
        resolution = np.fromiter(map(_RESOLUTION, gs), np.int64, n)
        head = np.fromiter(map(_HEAD, gs), np.int64, n)
        cout, out, skip = info.T
        ends = np.cumsum(counts)
        last_block = np.maximum(ends - 1, 0)
        has_blocks = counts > 0
        last = np.where(has_blocks, cout[last_block], stem) if m else stem
        final_size = (resolution + 1) // 2  # the stem's output
        if m:
            final_size = np.where(has_blocks, out[last_block], final_size)
        # long skips: block p adds the output of the block `skip` places back (or the stem's)
        p = np.flatnonzero(skip)
        owner = np.repeat(np.arange(n), counts)[p]
        back = skip[p]
        index = p - (ends - counts)[owner]
        src = np.where(index >= back, cout[np.maximum(p - back, 0)], stem[owner])
        projected = src != cout[p]
        with_head = np.flatnonzero(head)
        projecting, target = owner[projected], p[projected]
        groups = [  # (whose, convolutions) in the order _outer lists them
            (np.arange(n), _fields(n, self.in_channels, stem, 3, 3, 2, 1, resolution)),
            (projecting, _fields(len(target), src[projected], cout[target], 1, 1, 1, 1,
                                 out[target])),
            (with_head, _fields(len(with_head), last[with_head], head[with_head], 1, 1, 1, 1,
                                final_size[with_head])),
        ]  # fmt: skip
        groups = [(who, fields) for who, fields in groups if len(who)]
        convs = self._convs(np.concatenate([fields for _, fields in groups]))
        rows = np.zeros((n, _WIDTH))
        lo = 0
        for who, _ in groups:
            _add_convs(rows, who, tuple(a[lo : lo + len(who)] for a in convs))
            lo += len(who)
        np.add.at(rows[:, _INDEX["elems_add"]], owner, cout[p] * out[p] * out[p] / 1e6)
        final = np.where(head > 0, head, last)
        rows[:, _INDEX["elems_pool"]] = final * final_size * final_size / 1e6
        rows[:, _INDEX["elems_fc"]] = final * self.num_classes / 1e6
        rows[:, _INDEX["n_elementwise"]] = np.bincount(owner, minlength=n) + 2
        return rows

    def _rows(self, genotypes: Iterable[Genotype]) -> np.ndarray:
        """One row per genotype: the sum of what runs outside its blocks and its blocks' part
        rows, in that order, overhead 1."""
        gs = list(genotypes)
        if not gs:
            return np.zeros((0, _WIDTH))
        n = len(gs)
        shapes = list(chain.from_iterable(map(Genotype.shapes, gs)))
        counts = np.fromiter(map(len, gs), np.int64, n)
        ids = self._block_parts(shapes)
        outer = self._outer_rows(gs, counts, self._block_info[ids])
        # The outer rows go to scratch rows after the parts: one gather then lines up each
        # genotype's rows, and one reduceat adds them up.
        first = self._n_parts
        self._reserve(first + n)
        self._matrix[first : first + n] = outer
        starts = np.cumsum(counts) - counts + np.arange(n)
        order = np.empty(n + len(ids), np.intp)
        blocks = np.ones(len(order), bool)
        blocks[starts] = False
        order[starts] = np.arange(first, first + n)
        order[blocks] = ids
        rows = np.add.reduceat(self._matrix[order], starts, axis=0)
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
