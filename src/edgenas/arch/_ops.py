"""What a block runs, as data: one frozen record per operation.

Every block type describes its operations once (``Block.operations``, from its gene and input
shape); the analytic costs, the latency predictor and the profiling plan all read that
description, so a new block type is written in one place.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = ["AddOp", "BlockOps", "ConvOp", "SqueezeExciteOp"]


# The records are frozen dataclasses built by a hand-written __init__ that fills the instance's
# dict at once: blocks describe their operations afresh for every new block a search meets, and
# the generated frozen __init__ (one object.__setattr__ per field) costs three times as much.


@dataclass(frozen=True, init=False)
class ConvOp:
    """One convolution (with its batch norm or bias) as the runtime executes it."""

    in_channels: int
    out_channels: int
    kernel: tuple[int, int]
    stride: int
    groups: int
    in_size: int
    bias: bool = False  # a plain bias instead of batch norm (the squeeze-excite convolutions)
    # Followed by the block's activation (fused into the convolution when ReLU, separate
    # operators when hard-swish). Not part of equality: the convolution costs the same.
    act: bool = field(default=False, compare=False)

    def __init__(self, in_channels: int, out_channels: int, kernel: tuple[int, int], stride: int,
                 groups: int, in_size: int, bias: bool = False, act: bool = False) -> None:  # fmt: skip
        self.__dict__.update(in_channels=in_channels, out_channels=out_channels, kernel=kernel,
                             stride=stride, groups=groups, in_size=in_size, bias=bias, act=act)  # fmt: skip

    @property
    def out_size(self) -> int:
        return (self.in_size + self.stride - 1) // self.stride

    @property
    def weights(self) -> int:
        """Parameters: the kernel and the batch norm's weight and bias (its running statistics
        are buffers, folded away on export), or the plain bias."""
        kh, kw = self.kernel
        w = self.out_channels * (self.in_channels // self.groups) * kh * kw
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


@dataclass(frozen=True, init=False)
class SqueezeExciteOp:
    """Squeeze-excite over a ``channels`` × ``size`` × ``size`` tensor: global pooling, two 1×1
    convolutions through ``hidden`` channels on the pooled 1×1 tensor, a gate, a multiply."""

    channels: int
    hidden: int
    size: int

    def __init__(self, channels: int, hidden: int, size: int) -> None:
        self.__dict__.update(channels=channels, hidden=hidden, size=size)

    @property
    def convs(self) -> tuple[ConvOp, ConvOp]:
        """Its two convolutions, on the pooled tensor (with a plain bias)."""
        return (
            ConvOp(self.channels, self.hidden, (1, 1), 1, 1, 1, bias=True),
            ConvOp(self.hidden, self.channels, (1, 1), 1, 1, 1, bias=True),
        )

    @property
    def elems(self) -> int:
        """Elements of the full-size tensor it pools and gates."""
        return self.channels * self.size**2


@dataclass(frozen=True, init=False)
class AddOp:
    """The residual addition of a block's shortcut (identity or projected) to its output."""

    channels: int
    size: int
    act: bool = False  # followed by the block's activation (ResNet blocks)

    def __init__(self, channels: int, size: int, act: bool = False) -> None:
        self.__dict__.update(channels=channels, size=size, act=act)

    @property
    def elems(self) -> int:
        return self.channels * self.size**2


@dataclass(frozen=True, init=False)
class BlockOps:
    """The operations of one block.

    Attributes:
        act: the block's activation, run after every operation marked ``act``: ``"relu"``
            (fused into the convolution before it by runtimes) or ``"hswish"`` (operators of
            its own).
        path: the main path in execution order: convolutions and squeeze-excite.
        shortcut: the 1×1 projection of the block's input when its shortcut changes shape.
        add: the residual addition, when the block has a shortcut.
    """

    act: str
    path: tuple[ConvOp | SqueezeExciteOp, ...]
    shortcut: ConvOp | None = None
    add: AddOp | None = None

    def __init__(self, act: str, path: tuple[ConvOp | SqueezeExciteOp, ...],
                 shortcut: ConvOp | None = None, add: AddOp | None = None) -> None:  # fmt: skip
        self.__dict__.update(act=act, path=path, shortcut=shortcut, add=add)

    @property
    def convs(self) -> tuple[ConvOp, ...]:
        """The convolutions that run at full size, in execution order (the shortcut's last);
        squeeze-excite's are left out."""
        main = [op for op in self.path if type(op) is ConvOp]
        if self.shortcut is not None:
            main.append(self.shortcut)
        return tuple(main)

    @property
    def squeeze_excite(self) -> SqueezeExciteOp | None:
        for op in self.path:
            if type(op) is SqueezeExciteOp:
                return op
        return None

    def all_convs(self) -> Iterator[ConvOp]:
        """Every convolution in execution order, squeeze-excite's included, the shortcut's
        last."""
        for op in self.path:
            if isinstance(op, ConvOp):
                yield op
            else:
                yield from op.convs
        if self.shortcut is not None:
            yield self.shortcut
