"""Genotypes: architectures as data, with a compact notation.

A genotype reads like a timm arch string, one token per part, joined by ``-``::

    r96-stem16-ir_k3_e4_c24_s2-ds_k5x3_c24_se_hs_id-res_k3_c48_s2-conv_k3_c48_id-conv_k3_c48_l2-head256

* ``r96``: input resolution (square images, 96×96).
* ``stem16``: a 3×3 stride-2 convolution to 16 channels.
* one token per block: ``TYPE_kK[xK]_eE_cC_sS`` plus flags ``se`` (squeeze-excite),
  ``hs`` (hard-swish instead of ReLU), ``id`` (identity residual), ``l2``/``l3`` (long skip that
  adds the output of the block 2 or 3 back).  ``e`` is written only for ``ir``, ``s`` only when
  the stride is 2.
* ``head256``: a 1×1 convolution to 256 channels before global pooling (``head0``: none).

The notation is the key for caches, latency look-ups and de-duplication: ``str(g)`` and
``Genotype.parse(s)`` are inverse to each other.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from edgenas.errors import GenotypeError

__all__ = [
    "ACTIVATIONS",
    "BLOCK_TYPES",
    "KERNELS",
    "BlockGene",
    "Genotype",
    "kernel_str",
    "parse_kernel",
]

#: Block types: plain conv, ResNet basic, ResNet bottleneck, depthwise-separable, inverted residual.
BLOCK_TYPES: tuple[str, ...] = ("conv", "res", "bneck", "ds", "ir")
#: Kernel shapes the default vocabulary offers (any odd kh×kw parses).
KERNELS: tuple[str, ...] = ("3", "5", "7", "5x3", "3x5")
ACTIVATIONS: tuple[str, ...] = ("relu", "hswish")

# Blocks that always carry a shortcut (with a 1×1 projection when shapes differ), as in ResNet.
_ALWAYS_RESIDUAL = frozenset({"res", "bneck"})

_BLOCK_RE = re.compile(r"^(?P<type>[a-z]+)((?:_[a-z]+[0-9x]*)*)$")


def parse_kernel(text: str | int | tuple[int, int]) -> tuple[int, int]:
    """``"5x3"`` → ``(5, 3)``, ``"3"`` or ``3`` → ``(3, 3)``; kernels must be odd and positive."""
    if isinstance(text, tuple):
        kh, kw = text
    else:
        parts = str(text).lower().split("x")
        if len(parts) not in (1, 2) or not all(p.isdigit() for p in parts):
            raise GenotypeError(f"kernel {text!r} is not a size like 3, 5 or 5x3")
        kh, kw = int(parts[0]), int(parts[-1])
    if kh < 1 or kw < 1 or kh % 2 == 0 or kw % 2 == 0:
        raise GenotypeError(f"kernel {text!r} must have odd sizes ≥ 1 (such as 3, 5, 7, 5x3)")
    return kh, kw


def kernel_str(kernel: tuple[int, int]) -> str:
    """``(5, 3)`` → ``"5x3"``, ``(3, 3)`` → ``"3"``: a kernel as the notation writes it."""
    kh, kw = kernel
    return str(kh) if kh == kw else f"{kh}x{kw}"


@dataclass(frozen=True)
class BlockGene:
    """One block of a network.

    Attributes:
        type: one of :data:`BLOCK_TYPES`.
        out_channels: channels the block produces.
        kernel: (height, width) of the spatial convolutions; asymmetric kernels such as (5, 3)
            keep a receptive field along one axis at a lower cost.
        stride: 1 or 2 (applied by the block's first spatial convolution).
        expansion: width multiplier of the hidden layer of an inverted residual (1–8);
            ignored (kept at 1) by the other types.
        se: squeeze-and-excitation after the spatial convolution.
        act: ``"relu"`` or ``"hswish"``.
        residual: identity shortcut for ``conv``, ``ds`` and ``ir``; allowed only when stride is 1
            and the channels do not change. ``res`` and ``bneck`` always have a shortcut.
        skip: 0, or 2 / 3: add the output of the block that many places back (the stem counts as
            the block before the first); the spatial size must match, channels are projected.
    """

    type: str
    out_channels: int
    kernel: tuple[int, int] = (3, 3)
    stride: int = 1
    expansion: int = 1
    se: bool = False
    act: str = "relu"
    residual: bool = False
    skip: int = 0

    def __post_init__(self) -> None:
        if self.type not in BLOCK_TYPES:
            raise GenotypeError(
                f"block type {self.type!r} is unknown; use one of {', '.join(BLOCK_TYPES)}"
            )
        object.__setattr__(self, "kernel", parse_kernel(self.kernel))
        if self.out_channels < 1:
            raise GenotypeError(f"block {self.type}: out_channels must be ≥ 1")
        if self.stride not in (1, 2):
            raise GenotypeError(f"block {self.type}: stride must be 1 or 2, got {self.stride}")
        if self.type == "ir":
            if not 1 <= self.expansion <= 8:
                raise GenotypeError(f"ir block: expansion must be 1–8, got {self.expansion}")
        elif self.expansion != 1:
            raise GenotypeError(f"{self.type} block: expansion applies to ir blocks only")
        if self.act not in ACTIVATIONS:
            raise GenotypeError(f"activation {self.act!r} is unknown; use relu or hswish")
        if self.skip not in (0, 2, 3):
            raise GenotypeError(f"skip span must be 0, 2 or 3, got {self.skip}")
        if self.type in _ALWAYS_RESIDUAL:
            object.__setattr__(self, "residual", True)

    @property
    def always_residual(self) -> bool:
        return self.type in _ALWAYS_RESIDUAL

    def __str__(self) -> str:
        parts = [self.type, f"k{kernel_str(self.kernel)}"]
        if self.type == "ir":
            parts.append(f"e{self.expansion}")
        parts.append(f"c{self.out_channels}")
        if self.stride != 1:
            parts.append(f"s{self.stride}")
        if self.se:
            parts.append("se")
        if self.act == "hswish":
            parts.append("hs")
        if self.residual and not self.always_residual:
            parts.append("id")
        if self.skip:
            parts.append(f"l{self.skip}")
        return "_".join(parts)

    @classmethod
    def parse(cls, token: str) -> BlockGene:
        """Read one block token such as ``ir_k5x3_e6_c24_s2_se``."""
        match = _BLOCK_RE.match(token)
        if not match:
            raise GenotypeError(f"block {token!r} is not of the form TYPE_k3_c24[_s2][_se]...")
        fields: dict[str, Any] = {"type": match["type"]}
        for part in token.split("_")[1:]:
            head, rest = part[0], part[1:]
            if part == "se":
                fields["se"] = True
            elif part == "hs":
                fields["act"] = "hswish"
            elif part == "id":
                fields["residual"] = True
            elif head == "k":
                fields["kernel"] = parse_kernel(rest)
            elif head in "ecsl" and rest.isdigit():
                key = {"e": "expansion", "c": "out_channels", "s": "stride", "l": "skip"}[head]
                fields[key] = int(rest)
            else:
                raise GenotypeError(f"block {token!r}: part {part!r} is not understood")
        if "out_channels" not in fields:
            raise GenotypeError(f"block {token!r} lacks its channel count (such as c24)")
        return cls(**fields)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "out_channels": self.out_channels,
            "kernel": list(self.kernel),
            "stride": self.stride,
            "expansion": self.expansion,
            "se": self.se,
            "act": self.act,
            "residual": self.residual,
            "skip": self.skip,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BlockGene:
        d = dict(d)
        if "kernel" in d and isinstance(d["kernel"], list):
            d["kernel"] = tuple(d["kernel"])
        return cls(**d)


@dataclass(frozen=True)
class BlockShape:
    """Input and output shape of one block of a genotype (channels, height = width)."""

    index: int
    gene: BlockGene
    in_channels: int
    in_size: int
    out_channels: int
    out_size: int


def _conv_out(size: int, stride: int) -> int:
    # 'same' padding with odd kernels: ceil(size / stride)
    return (size + stride - 1) // stride


@dataclass(frozen=True)
class Genotype:
    """A whole network: input resolution, stem, blocks and head.

    Example:
        >>> g = Genotype.parse("r64-stem16-ir_k3_e4_c24_s2-ds_k5x3_c24_id-head128")
        >>> str(g)
        'r64-stem16-ir_k3_e4_c24_s2-ds_k5x3_c24_id-head128'
        >>> Genotype.parse(str(g)) == g
        True
    """

    resolution: int
    stem: int
    blocks: tuple[BlockGene, ...]
    head: int = 0
    _shapes: tuple[BlockShape, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocks", tuple(self.blocks))
        if self.resolution < 8:
            raise GenotypeError(f"resolution must be ≥ 8, got {self.resolution}")
        if self.stem < 1:
            raise GenotypeError(f"stem channels must be ≥ 1, got {self.stem}")
        if self.head < 0:
            raise GenotypeError(f"head channels must be ≥ 0, got {self.head}")
        shapes = []
        channels, size = self.stem, _conv_out(self.resolution, 2)
        out_sizes = [size]  # output size of the stem, then of each block
        for i, gene in enumerate(self.blocks):
            out_size = _conv_out(size, gene.stride)
            if (
                gene.residual
                and not gene.always_residual
                and (gene.stride != 1 or channels != gene.out_channels)
            ):
                raise GenotypeError(
                    f"block {i} ({gene}): an identity residual needs stride 1 and equal channels "
                    f"({channels} in, {gene.out_channels} out)"
                )
            if gene.skip:
                source = i - gene.skip  # -1 is the stem
                if source < -1:
                    raise GenotypeError(
                        f"block {i} ({gene}): a skip over {gene.skip} blocks reaches before the stem"
                    )
                if out_sizes[source + 1] != out_size:
                    raise GenotypeError(
                        f"block {i} ({gene}): the skip from {gene.skip} blocks back joins "
                        f"{out_sizes[source + 1]}×{out_sizes[source + 1]} to {out_size}×{out_size}"
                    )
            shapes.append(BlockShape(i, gene, channels, size, gene.out_channels, out_size))
            channels, size = gene.out_channels, out_size
            out_sizes.append(size)
        object.__setattr__(self, "_shapes", tuple(shapes))

    # -- shapes -------------------------------------------------------------------------------
    def shapes(self) -> tuple[BlockShape, ...]:
        """Input and output shape of every block, in order."""
        return self._shapes

    @property
    def stem_size(self) -> int:
        return _conv_out(self.resolution, 2)

    @property
    def final_channels(self) -> int:
        """Channels that reach the classifier (the head's, or the last block's)."""
        if self.head:
            return self.head
        return self.blocks[-1].out_channels if self.blocks else self.stem

    @property
    def final_size(self) -> int:
        return self._shapes[-1].out_size if self._shapes else self.stem_size

    # -- notation -----------------------------------------------------------------------------
    def __str__(self) -> str:
        tokens = [f"r{self.resolution}", f"stem{self.stem}", *map(str, self.blocks)]
        tokens.append(f"head{self.head}")
        return "-".join(tokens)

    def __iter__(self) -> Iterator[BlockGene]:
        return iter(self.blocks)

    def __len__(self) -> int:
        return len(self.blocks)

    @classmethod
    def parse(cls, text: str) -> Genotype:
        """Read the notation written by ``str(genotype)``."""
        tokens = [t for t in text.strip().split("-") if t]
        if len(tokens) < 2 or not re.fullmatch(r"r\d+", tokens[0]):
            raise GenotypeError(
                f"genotype {text!r} must start with the resolution and stem, such as r96-stem16-..."
            )
        if not re.fullmatch(r"stem\d+", tokens[1]):
            raise GenotypeError(f"genotype {text!r}: second part must be the stem, such as stem16")
        head = 0
        if re.fullmatch(r"head\d+", tokens[-1]):
            head = int(tokens.pop()[4:])
        blocks = tuple(BlockGene.parse(t) for t in tokens[2:])
        return cls(int(tokens[0][1:]), int(tokens[1][4:]), blocks, head)

    def to_json(self) -> dict[str, Any]:
        return {
            "resolution": self.resolution,
            "stem": self.stem,
            "blocks": [b.to_dict() for b in self.blocks],
            "head": self.head,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | str) -> Genotype:
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except ValueError as exc:
                raise GenotypeError(f"genotype JSON cannot be read: {exc}") from None
        if not isinstance(data, dict):
            raise GenotypeError(
                f"genotype JSON must be an object with resolution, stem, blocks, head; "
                f"got {type(data).__name__}"
            )
        try:
            return cls(
                int(data["resolution"]),
                int(data["stem"]),
                tuple(BlockGene.from_dict(b) for b in data["blocks"]),
                int(data.get("head", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, GenotypeError):
                raise
            raise GenotypeError(f"genotype JSON is missing or mistypes a field: {exc}") from None

    def replace(self, **changes: Any) -> Genotype:
        return replace(self, **changes)

    def with_blocks(self, blocks: Sequence[BlockGene]) -> Genotype:
        return replace(self, blocks=tuple(blocks))
