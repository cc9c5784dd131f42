"""What a network runs, as the latency predictor counts it: the profile key of each
convolution, and the elementwise work (hard-swish, additions, squeeze-excite, pooling, the
classifier), all read from the blocks' own descriptions (`edgenas.arch.block_operations`)."""

from __future__ import annotations

from dataclasses import dataclass

from edgenas.arch import BlockOps, ConvOp, Genotype, block_operations
from edgenas.errors import ConfigError

__all__ = ["FEATURES", "NetworkOps", "conv_key", "conv_kind", "network_ops", "parse_conv_key"]

KINDS = ("dense", "pointwise", "depthwise")
ELEMENTWISE = ("hswish", "add", "se", "pool", "fc")
# Columns of the calibration: per kind the summed table latency, the count and the tensor size
# (MB of activations read and written), then elements moved per elementwise operator, the
# multiply-adds of squeeze-excite's two 1×1 convolutions, then a constant.
FEATURES = (
    *(f"{f}_{k}" for k in KINDS for f in ("ms", "n", "elems")),
    *(f"elems_{e}" for e in ELEMENTWISE),
    "macs_se",
    "n_elementwise",
    "overhead",
)
_INDEX = {f: i for i, f in enumerate(FEATURES)}


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


def _elementwise_terms(ops: BlockOps) -> list[tuple[str, float, int | None]]:
    """The elementwise work of a block as terms ``(feature, amount, size)``: ``amount`` ×
    ``size``² elements (counted in millions) moved, or ``amount`` itself where ``size`` is None
    (the multiply-adds of squeeze-excite's convolutions, in millions, and the operator count)."""
    terms: list[tuple[str, float, int | None]] = []
    count = 0
    se = ops.squeeze_excite
    if se is not None:  # pool, gate and multiply over the full tensor, and its two 1×1 convolutions
        terms.append(("elems_se", 2 * se.channels, se.size))
        # on a 1×1 tensor these read their weights once per inference: memory-bound, and
        # not small in a wide block (a 1536-channel expansion gates through 2 × 1536 × 384)
        terms.append(("macs_se", 2 * se.channels * se.hidden / 1e6, None))
        count += 5
    if ops.act == "hswish":
        # Hard-swish runs as its own operators; ReLU is fused into the convolution. ResNet
        # blocks activate again after the addition.
        for op in ops.convs:
            if op.act:
                terms.append(("elems_hswish", op.out_channels, op.out_size))
                count += 2
        if ops.add is not None and ops.add.act:
            terms.append(("elems_hswish", ops.add.channels, ops.add.size))
            count += 2
    if ops.add is not None:
        terms.append(("elems_add", ops.add.channels, ops.add.size))
        count += 1
    if count:
        terms.append(("n_elementwise", count, None))
    return terms


def _elementwise(ops: BlockOps) -> dict[str, float]:
    """The elementwise work of a block: elements moved (millions) per elementwise kind, the
    multiply-adds of squeeze-excite's convolutions and the operator count."""
    ew: dict[str, float] = {}
    for feature, amount, size in _elementwise_terms(ops):
        _add(ew, feature, amount if size is None else amount * size * size / 1e6)
    return ew


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
        # (a block's long skip is not part of it: see _outer)
        block = block_operations(s.gene, s.in_channels, s.in_size)
        convs.extend(block.convs)
        for k, v in _elementwise(block).items():
            _add(ew, k, v)
    return NetworkOps(tuple(convs), ew)
