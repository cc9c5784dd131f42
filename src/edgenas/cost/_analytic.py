"""Analytic costs of a genotype: parameters, MACs, model size, peak activation memory and the
activation traffic of one inference.

Every block is described once as a list of convolutions (:func:`block_ops`); parameters, MACs,
the liveness walk for memory and the traffic count are all computed from that one list, so a new
block type needs one entry here and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgenas.arch import BlockShape, Genotype, make_divisible
from edgenas.arch._blocks import SE_RATIO, bottleneck_width

__all__ = ["AnalyticCosts", "ConvOp", "analytic_costs", "block_ops"]

_FLOAT_BYTES = 4
MB = 1e6  # sizes and memory are reported in megabytes (10^6 bytes), as device sheets state them


@dataclass(frozen=True)
class ConvOp:
    """One convolution (with its batch norm or bias) as the runtime executes it."""

    in_channels: int
    out_channels: int
    kernel: tuple[int, int]
    stride: int
    groups: int
    in_size: int
    bias: bool = False  # a plain bias instead of batch norm (the SE convolutions)
    # Followed by the block's activation (fused into the convolution when ReLU, separate
    # operators when hard-swish). Not part of equality: the convolution costs the same.
    act: bool = field(default=False, compare=False)

    @property
    def out_size(self) -> int:
        return (self.in_size + self.stride - 1) // self.stride

    @property
    def weights(self) -> int:
        kh, kw = self.kernel
        w = self.out_channels * (self.in_channels // self.groups) * kh * kw
        # batch norm: weight and bias (running statistics are buffers folded away on export)
        return w + (self.out_channels if self.bias else 2 * self.out_channels)

    @property
    def macs(self) -> int:
        kh, kw = self.kernel
        return self.out_channels * self.out_size**2 * (self.in_channels // self.groups) * kh * kw

    @property
    def in_elems(self) -> int:
        return self.in_channels * self.in_size**2

    @property
    def out_elems(self) -> int:
        return self.out_channels * self.out_size**2


def _se_ops(channels: int, size: int) -> list[ConvOp]:
    hidden = make_divisible(channels * SE_RATIO)
    # SE works on a 1×1 pooled tensor; the full-size tensor stays alive while it runs.
    return [
        ConvOp(channels, hidden, (1, 1), 1, 1, 1, bias=True),
        ConvOp(hidden, channels, (1, 1), 1, 1, 1, bias=True),
    ]


def block_ops(shape: BlockShape) -> list[ConvOp]:
    """The convolutions of one block in execution order (shortcut projection last)."""
    g, cin, s_in = shape.gene, shape.in_channels, shape.in_size
    s_out, cout = shape.out_size, shape.out_channels
    ops: list[ConvOp] = []
    if g.type == "conv":
        ops.append(ConvOp(cin, cout, g.kernel, g.stride, 1, s_in, act=True))
        if g.se:
            ops += _se_ops(cout, s_out)
    elif g.type == "res":
        ops.append(ConvOp(cin, cout, g.kernel, g.stride, 1, s_in, act=True))
        ops.append(ConvOp(cout, cout, g.kernel, 1, 1, s_out))
        if g.se:
            ops += _se_ops(cout, s_out)
    elif g.type == "bneck":
        mid = bottleneck_width(cout)
        ops.append(ConvOp(cin, mid, (1, 1), 1, 1, s_in, act=True))
        ops.append(ConvOp(mid, mid, g.kernel, g.stride, 1, s_in, act=True))
        if g.se:
            ops += _se_ops(mid, s_out)
        ops.append(ConvOp(mid, cout, (1, 1), 1, 1, s_out))
    elif g.type == "ds":
        ops.append(ConvOp(cin, cin, g.kernel, g.stride, cin, s_in, act=True))
        if g.se:
            ops += _se_ops(cin, s_out)
        ops.append(ConvOp(cin, cout, (1, 1), 1, 1, s_out))
    elif g.type == "ir":
        hidden = cin * g.expansion
        if g.expansion > 1:
            ops.append(ConvOp(cin, hidden, (1, 1), 1, 1, s_in, act=True))
        ops.append(ConvOp(hidden, hidden, g.kernel, g.stride, hidden, s_in, act=True))
        if g.se:
            ops += _se_ops(hidden, s_out)
        ops.append(ConvOp(hidden, cout, (1, 1), 1, 1, s_out))
    else:  # pragma: no cover - BlockGene validates the type
        raise ValueError(g.type)
    if g.always_residual and (cin != cout or g.stride != 1):
        ops.append(ConvOp(cin, cout, (1, 1), g.stride, 1, s_in))
    return ops


@dataclass(frozen=True)
class AnalyticCosts:
    params: int
    macs: int
    size_mb: float  # fp32 weights
    size_int8_mb: float  # int8 weights (per-channel scales are negligible)
    peak_activation_mb: float
    activation_bytes: int = 0  # fp32 activations read and written by one inference

    @property
    def peak_memory_mb(self) -> float:
        """Weights plus the largest set of activations alive at once (runtime overhead excluded;
        :class:`~edgenas.cost.MemoryCalibration` maps this to what a runtime really holds)."""
        return self.size_mb + self.peak_activation_mb

    @property
    def bytes_moved(self) -> int:
        """fp32 weights read once plus activations read and written: the memory traffic of one
        inference that the energy estimate charges for."""
        return self.params * _FLOAT_BYTES + self.activation_bytes


def analytic_costs(genotype: Genotype, in_channels: int, num_classes: int) -> AnalyticCosts:
    """Parameters, MACs, size, peak activation memory and activation traffic of a genotype's
    network at batch 1.

    Traffic counts elements: every convolution reads its input and writes its output; additions
    (residuals, long skips) read two tensors and write one; squeeze-excite reads its input twice
    (pooling, gating) and writes it once; the normalisation reads and writes the image twice.
    Activations are taken as fused into the operation before them, as runtimes do.
    """
    g = genotype
    stem = ConvOp(in_channels, g.stem, (3, 3), 2, 1, g.resolution)
    params, macs = stem.weights, stem.macs
    # Liveness walk: at every convolution its input and output are alive, plus every tensor
    # that is held for later (a block's input for its residual, a block's output for a skip).
    image = in_channels * g.resolution**2
    # The network standardises the image itself ((x - mean) / std) before the stem: two
    # image-sized tensors exist at once before the stem convolution reads the second.
    peak = max(2 * image, image + stem.out_elems)
    traffic = 4 * image + stem.in_elems + stem.out_elems
    out_elems = [stem.out_elems] + [s.out_channels * s.out_size**2 for s in g.shapes()]
    # (source output index, consuming block) of every long skip; output 0 is the stem's
    skips = [(s.index - s.gene.skip + 1, s.index) for s in g.shapes() if s.gene.skip]
    for shape in g.shapes():
        i = shape.index
        # Earlier outputs still waiting for a skip at or after this block (each counted once);
        # this block's own input is counted through the ops instead.
        held = sum(out_elems[src] for src in {src for src, user in skips if src < i <= user})
        block_input = shape.in_channels * shape.in_size**2
        input_held = shape.gene.residual or any(src == i for src, _ in skips)
        ops = block_ops(shape)
        projects = shape.gene.always_residual and (
            shape.in_channels != shape.out_channels or shape.gene.stride != 1
        )
        main_out = shape.out_channels * shape.out_size**2
        for j, op in enumerate(ops):
            params += op.weights
            macs += op.macs
            projection = projects and j == len(ops) - 1
            reads_input = j == 0 or projection
            live = op.in_elems + op.out_elems + held
            if input_held and not reads_input:
                live += block_input
            if projection:  # the main path's output waits for the shortcut it is added to
                live += main_out
            peak = max(peak, live)
            traffic += op.in_elems + op.out_elems
        se_ops = [op for op in ops if op.bias]
        if se_ops:
            traffic += 3 * se_ops[0].in_channels * shape.out_size**2
        if shape.gene.residual:
            traffic += 3 * main_out
        if shape.gene.skip:
            src = i - shape.gene.skip + 1
            src_channels = out_elems[src] // shape.out_size**2
            if src_channels != shape.out_channels:  # projected skip
                proj = ConvOp(src_channels, shape.out_channels, (1, 1), 1, 1, shape.out_size)
                params += proj.weights
                macs += proj.macs
                traffic += proj.in_elems + proj.out_elems
            traffic += 3 * main_out
            # the block's output, the (projected) source and their sum
            peak = max(peak, held + 2 * shape.out_channels * shape.out_size**2)
    last = out_elems[-1]
    if g.head:
        c_last = g.blocks[-1].out_channels if g.blocks else g.stem
        head = ConvOp(c_last, g.head, (1, 1), 1, 1, g.final_size)
        params += head.weights
        macs += head.macs
        peak = max(peak, last + head.out_elems)
        traffic += head.in_elems + head.out_elems
    params += g.final_channels * num_classes + num_classes
    macs += g.final_channels * num_classes
    # global pooling, then the classifier
    traffic += g.final_channels * g.final_size**2 + 2 * g.final_channels + num_classes
    return AnalyticCosts(
        params=params,
        macs=macs,
        size_mb=params * _FLOAT_BYTES / MB,
        size_int8_mb=params / MB,
        peak_activation_mb=peak * _FLOAT_BYTES / MB,
        activation_bytes=traffic * _FLOAT_BYTES,
    )
