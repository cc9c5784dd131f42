"""PyTorch blocks, one class per block type, looked up through :data:`BLOCKS`.

Blocks are flat with fixed submodule names (``conv1``, ``dw``, ``pw``, ``se``, ``shortcut``) and a
straight ``forward``, so state-dict keys and ONNX node names stay stable across variants. Each
block type also describes the operations it runs (:meth:`Block.operations`), which the cost
model and the latency predictor read instead of knowing the block types themselves.
"""

from __future__ import annotations

import torch
from torch import nn

from edgenas.arch._genotype import BlockGene
from edgenas.arch._ops import AddOp, BlockOps, ConvOp, SqueezeExciteOp

__all__ = [
    "BLOCKS",
    "Block",
    "ConvBnAct",
    "SqueezeExcite",
    "block_operations",
    "make_divisible",
]


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round channels to a multiple of ``divisor`` without losing more than 10% (as in timm)."""
    min_value = min_value or divisor
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


def _act(name: str | None) -> nn.Module:
    if name is None:
        return nn.Identity()
    return nn.Hardswish() if name == "hswish" else nn.ReLU()


class ConvBnAct(nn.Module):
    """Convolution, batch norm, activation; 'same' padding for odd (possibly asymmetric) kernels."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: tuple[int, int] = (1, 1),
        stride: int = 1,
        groups: int = 1,
        act: str | None = "relu",
    ) -> None:
        super().__init__()
        kh, kw = kernel
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            (kh, kw),
            stride=stride,
            padding=(kh // 2, kw // 2),
            groups=groups,
            bias=False,
        )
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = _act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


#: Squeeze-excite's bottleneck: a quarter of the channels (rounded by ``make_divisible``).
SE_RATIO = 0.25


class SqueezeExcite(nn.Module):
    """Channel attention: global pool, bottleneck of a quarter of the channels, hard-sigmoid gate."""

    def __init__(self, channels: int, ratio: float = SE_RATIO) -> None:
        super().__init__()
        hidden = make_divisible(channels * ratio)
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.act = nn.ReLU()
        self.expand = nn.Conv2d(hidden, channels, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.expand(self.act(self.reduce(s))))


def _se(channels: int, enabled: bool) -> nn.Module:
    return SqueezeExcite(channels) if enabled else nn.Identity()


def _se_ops(channels: int, size: int, enabled: bool) -> tuple[SqueezeExciteOp, ...]:
    if not enabled:
        return ()
    return (SqueezeExciteOp(channels, make_divisible(channels * SE_RATIO), size),)


def _projects(in_channels: int, out_channels: int, stride: int) -> bool:
    return in_channels != out_channels or stride != 1


def _projection(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    if not _projects(in_channels, out_channels, stride):
        return nn.Identity()
    return ConvBnAct(in_channels, out_channels, (1, 1), stride, act=None)


def _projection_op(in_channels: int, out_channels: int, stride: int, size: int) -> ConvOp | None:
    if not _projects(in_channels, out_channels, stride):
        return None
    return ConvOp(in_channels, out_channels, (1, 1), stride, 1, size)


class Block(nn.Module):
    """A block of a network, built from its input channels and its gene.

    Beside its modules, a block type describes the operations it runs (:meth:`operations`):
    the analytic costs, the latency predictor and the profiling plan read that description,
    so none of them knows the block types.
    """

    def __init__(self, in_channels: int, gene: BlockGene) -> None:
        super().__init__()

    @classmethod
    def operations(cls, gene: BlockGene, in_channels: int, in_size: int) -> BlockOps:
        """The operations the block runs on an ``in_channels`` × ``in_size`` × ``in_size``
        input (its long skip is the network's, not the block's)."""
        raise NotImplementedError


class ConvBlock(Block):
    """Plain k×k convolution (VGG style), optional squeeze-excite and identity residual."""

    def __init__(self, in_channels: int, gene: BlockGene) -> None:
        super().__init__(in_channels, gene)
        self.conv1 = ConvBnAct(
            in_channels, gene.out_channels, gene.kernel, gene.stride, act=gene.act
        )
        self.se = _se(gene.out_channels, gene.se)
        self.residual = gene.residual

    @classmethod
    def operations(cls, gene: BlockGene, in_channels: int, in_size: int) -> BlockOps:
        c = gene.out_channels
        conv1 = ConvOp(in_channels, c, gene.kernel, gene.stride, 1, in_size, act=True)
        out = conv1.out_size
        add = AddOp(c, out) if gene.residual else None
        return BlockOps(gene.act, (conv1, *_se_ops(c, out, gene.se)), add=add)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.se(self.conv1(x))
        return x + y if self.residual else y


class ResBlock(Block):
    """ResNet basic block: two k×k convolutions and a shortcut (projected when shapes change)."""

    def __init__(self, in_channels: int, gene: BlockGene) -> None:
        super().__init__(in_channels, gene)
        c = gene.out_channels
        self.conv1 = ConvBnAct(in_channels, c, gene.kernel, gene.stride, act=gene.act)
        self.conv2 = ConvBnAct(c, c, gene.kernel, 1, act=None)
        self.se = _se(c, gene.se)
        self.shortcut = _projection(in_channels, c, gene.stride)
        self.act = _act(gene.act)

    @classmethod
    def operations(cls, gene: BlockGene, in_channels: int, in_size: int) -> BlockOps:
        c = gene.out_channels
        conv1 = ConvOp(in_channels, c, gene.kernel, gene.stride, 1, in_size, act=True)
        out = conv1.out_size
        conv2 = ConvOp(c, c, gene.kernel, 1, 1, out)
        return BlockOps(
            gene.act,
            (conv1, conv2, *_se_ops(c, out, gene.se)),
            _projection_op(in_channels, c, gene.stride, in_size),
            AddOp(c, out, act=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.se(self.conv2(self.conv1(x))) + self.shortcut(x))


class BottleneckBlock(Block):
    """ResNet bottleneck: 1×1 reduce to a quarter, k×k, 1×1 expand, and a shortcut."""

    def __init__(self, in_channels: int, gene: BlockGene) -> None:
        super().__init__(in_channels, gene)
        c = gene.out_channels
        mid = bottleneck_width(c)
        self.conv1 = ConvBnAct(in_channels, mid, (1, 1), 1, act=gene.act)
        self.conv2 = ConvBnAct(mid, mid, gene.kernel, gene.stride, act=gene.act)
        self.se = _se(mid, gene.se)
        self.conv3 = ConvBnAct(mid, c, (1, 1), 1, act=None)
        self.shortcut = _projection(in_channels, c, gene.stride)
        self.act = _act(gene.act)

    @classmethod
    def operations(cls, gene: BlockGene, in_channels: int, in_size: int) -> BlockOps:
        c = gene.out_channels
        mid = bottleneck_width(c)
        conv1 = ConvOp(in_channels, mid, (1, 1), 1, 1, in_size, act=True)
        conv2 = ConvOp(mid, mid, gene.kernel, gene.stride, 1, in_size, act=True)
        out = conv2.out_size
        conv3 = ConvOp(mid, c, (1, 1), 1, 1, out)
        return BlockOps(
            gene.act,
            (conv1, conv2, *_se_ops(mid, out, gene.se), conv3),
            _projection_op(in_channels, c, gene.stride, in_size),
            AddOp(c, out, act=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv3(self.se(self.conv2(self.conv1(x))))
        return self.act(y + self.shortcut(x))


def bottleneck_width(out_channels: int) -> int:
    """Hidden width of a bottleneck block (a quarter of its output, at least 8)."""
    return make_divisible(out_channels / 4)


class DepthwiseSeparableBlock(Block):
    """Depthwise k×k, optional squeeze-excite, pointwise 1×1 projection (MobileNet / EfficientNet DS)."""

    def __init__(self, in_channels: int, gene: BlockGene) -> None:
        super().__init__(in_channels, gene)
        self.dw = ConvBnAct(
            in_channels, in_channels, gene.kernel, gene.stride, groups=in_channels, act=gene.act
        )
        self.se = _se(in_channels, gene.se)
        self.pw = ConvBnAct(in_channels, gene.out_channels, (1, 1), 1, act=None)
        self.residual = gene.residual

    @classmethod
    def operations(cls, gene: BlockGene, in_channels: int, in_size: int) -> BlockOps:
        c = in_channels
        dw = ConvOp(c, c, gene.kernel, gene.stride, c, in_size, act=True)
        out = dw.out_size
        pw = ConvOp(c, gene.out_channels, (1, 1), 1, 1, out)
        add = AddOp(gene.out_channels, out) if gene.residual else None
        return BlockOps(gene.act, (dw, *_se_ops(c, out, gene.se), pw), add=add)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pw(self.se(self.dw(x)))
        return x + y if self.residual else y


class InvertedResidualBlock(Block):
    """MobileNetV2 inverted residual: 1×1 expand, depthwise k×k, squeeze-excite, 1×1 project."""

    def __init__(self, in_channels: int, gene: BlockGene) -> None:
        super().__init__(in_channels, gene)
        hidden = in_channels * gene.expansion
        self.pw_exp: nn.Module = (
            ConvBnAct(in_channels, hidden, (1, 1), 1, act=gene.act)
            if gene.expansion > 1
            else nn.Identity()
        )
        self.dw = ConvBnAct(hidden, hidden, gene.kernel, gene.stride, groups=hidden, act=gene.act)
        self.se = _se(hidden, gene.se)
        self.pw = ConvBnAct(hidden, gene.out_channels, (1, 1), 1, act=None)
        self.residual = gene.residual

    @classmethod
    def operations(cls, gene: BlockGene, in_channels: int, in_size: int) -> BlockOps:
        hidden = in_channels * gene.expansion
        expand = (
            (ConvOp(in_channels, hidden, (1, 1), 1, 1, in_size, act=True),)
            if gene.expansion > 1
            else ()
        )
        dw = ConvOp(hidden, hidden, gene.kernel, gene.stride, hidden, in_size, act=True)
        out = dw.out_size
        pw = ConvOp(hidden, gene.out_channels, (1, 1), 1, 1, out)
        add = AddOp(gene.out_channels, out) if gene.residual else None
        return BlockOps(gene.act, (*expand, dw, *_se_ops(hidden, out, gene.se), pw), add=add)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pw(self.se(self.dw(self.pw_exp(x))))
        return x + y if self.residual else y


#: Block type name → block class; every class takes ``(in_channels, gene)``.
BLOCKS: dict[str, type[Block]] = {
    "conv": ConvBlock,
    "res": ResBlock,
    "bneck": BottleneckBlock,
    "ds": DepthwiseSeparableBlock,
    "ir": InvertedResidualBlock,
}


def block_operations(gene: BlockGene, in_channels: int, in_size: int) -> BlockOps:
    """The operations a block runs on an ``in_channels`` × ``in_size`` × ``in_size`` input, as
    its block type describes them.

    Example:
        >>> ops = block_operations(BlockGene.parse("ir_k5x3_e4_c24_s2_se"), 16, 48)
        >>> [(c.in_channels, c.out_channels, c.kernel, c.groups) for c in ops.convs]
        [(16, 64, (1, 1), 1), (64, 64, (5, 3), 64), (64, 24, (1, 1), 1)]
    """
    return BLOCKS[gene.type].operations(gene, in_channels, in_size)
