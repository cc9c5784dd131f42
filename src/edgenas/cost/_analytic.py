"""Analytic costs of a genotype: parameters, MACs, model size, peak activation memory and the
activation traffic of one inference.

Each block type describes its operations itself (:func:`edgenas.arch.block_operations`);
parameters, MACs, the liveness walk for memory and the traffic count are all computed from that
description, so nothing here knows the block types.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgenas.arch import BlockShape, ConvOp, Genotype, block_operations

__all__ = ["AnalyticCosts", "analytic_costs", "block_ops"]

_FLOAT_BYTES = 4
MB = 1e6  # sizes and memory are reported in megabytes (10^6 bytes), as device sheets state them


def block_ops(shape: BlockShape) -> list[ConvOp]:
    """The convolutions of one block in execution order: squeeze-excite's on the pooled tensor
    included (those with a bias), the shortcut projection last."""
    return list(block_operations(shape.gene, shape.in_channels, shape.in_size).all_convs())


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
        described = block_operations(shape.gene, shape.in_channels, shape.in_size)
        input_held = described.add is not None or any(src == i for src, _ in skips)
        main_out = shape.out_channels * shape.out_size**2
        for j, op in enumerate(described.all_convs()):
            params += op.weights
            macs += op.macs
            projection = op is described.shortcut
            reads_input = j == 0 or projection
            live = op.in_elems + op.out_elems + held
            if input_held and not reads_input:
                live += block_input
            if projection:  # the main path's output waits for the shortcut it is added to
                live += main_out
            peak = max(peak, live)
            traffic += op.in_elems + op.out_elems
        se = described.squeeze_excite
        if se is not None:
            traffic += 3 * se.elems
        if described.add is not None:
            traffic += 3 * described.add.elems
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
