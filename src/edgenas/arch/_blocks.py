"""PyTorch blocks, one class per block type, looked up through :data:`BLOCKS`.

Blocks are flat with fixed submodule names (``conv1``, ``dw``, ``pw``, ``se``, ``shortcut``) and a
straight ``forward``, so state-dict keys and ONNX node names stay stable across variants.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from edgenas.arch._genotype import BlockGene

__all__ = ["BLOCKS", "ConvBnAct", "SqueezeExcite", "make_divisible"]


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


def _projection(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    if in_channels == out_channels and stride == 1:
        return nn.Identity()
    return ConvBnAct(in_channels, out_channels, (1, 1), stride, act=None)


class ConvBlock(nn.Module):
    """Plain k×k convolution (VGG style), optional squeeze-excite and identity residual."""

    def __init__(self, in_channels: int, gene: BlockGene) -> None:
        super().__init__()
        self.conv1 = ConvBnAct(
            in_channels, gene.out_channels, gene.kernel, gene.stride, act=gene.act
        )
        self.se = _se(gene.out_channels, gene.se)
        self.residual = gene.residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.se(self.conv1(x))
        return x + y if self.residual else y


class ResBlock(nn.Module):
    """ResNet basic block: two k×k convolutions and a shortcut (projected when shapes change)."""

    def __init__(self, in_channels: int, gene: BlockGene) -> None:
        super().__init__()
        c = gene.out_channels
        self.conv1 = ConvBnAct(in_channels, c, gene.kernel, gene.stride, act=gene.act)
        self.conv2 = ConvBnAct(c, c, gene.kernel, 1, act=None)
        self.se = _se(c, gene.se)
        self.shortcut = _projection(in_channels, c, gene.stride)
        self.act = _act(gene.act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.se(self.conv2(self.conv1(x))) + self.shortcut(x))


class BottleneckBlock(nn.Module):
    """ResNet bottleneck: 1×1 reduce to a quarter, k×k, 1×1 expand, and a shortcut."""

    def __init__(self, in_channels: int, gene: BlockGene) -> None:
        super().__init__()
        c = gene.out_channels
        mid = bottleneck_width(c)
        self.conv1 = ConvBnAct(in_channels, mid, (1, 1), 1, act=gene.act)
        self.conv2 = ConvBnAct(mid, mid, gene.kernel, gene.stride, act=gene.act)
        self.se = _se(mid, gene.se)
        self.conv3 = ConvBnAct(mid, c, (1, 1), 1, act=None)
        self.shortcut = _projection(in_channels, c, gene.stride)
        self.act = _act(gene.act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv3(self.se(self.conv2(self.conv1(x))))
        return self.act(y + self.shortcut(x))


def bottleneck_width(out_channels: int) -> int:
    """Hidden width of a bottleneck block (a quarter of its output, at least 8)."""
    return make_divisible(out_channels / 4)


class DepthwiseSeparableBlock(nn.Module):
    """Depthwise k×k, optional squeeze-excite, pointwise 1×1 projection (MobileNet / EfficientNet DS)."""

    def __init__(self, in_channels: int, gene: BlockGene) -> None:
        super().__init__()
        self.dw = ConvBnAct(
            in_channels, in_channels, gene.kernel, gene.stride, groups=in_channels, act=gene.act
        )
        self.se = _se(in_channels, gene.se)
        self.pw = ConvBnAct(in_channels, gene.out_channels, (1, 1), 1, act=None)
        self.residual = gene.residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pw(self.se(self.dw(x)))
        return x + y if self.residual else y


class InvertedResidualBlock(nn.Module):
    """MobileNetV2 inverted residual: 1×1 expand, depthwise k×k, squeeze-excite, 1×1 project."""

    def __init__(self, in_channels: int, gene: BlockGene) -> None:
        super().__init__()
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pw(self.se(self.dw(self.pw_exp(x))))
        return x + y if self.residual else y


#: Block type name → module class; every class takes ``(in_channels, gene)``.
BLOCKS: dict[str, Callable[[int, BlockGene], nn.Module]] = {
    "conv": ConvBlock,
    "res": ResBlock,
    "bneck": BottleneckBlock,
    "ds": DepthwiseSeparableBlock,
    "ir": InvertedResidualBlock,
}
