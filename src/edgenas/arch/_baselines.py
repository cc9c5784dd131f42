"""Hand-designed baselines written in the genotype vocabulary, each with a width multiplier.

They are shaped like the well-known families, scaled to small inputs, so a search can be compared
with them on equal terms (same data, same training recipe, same latency measurement).
"""

from __future__ import annotations

from collections.abc import Callable

from edgenas.arch._blocks import make_divisible
from edgenas.arch._genotype import BlockGene, Genotype
from edgenas.errors import ConfigError

__all__ = ["BASELINES", "baseline"]


def _w(channels: int, width: float) -> int:
    return make_divisible(channels * width)


def _stack(
    block_type: str,
    in_channels: int,
    stages: list[tuple[int, int, int, int, bool, str, int]],
    width: float,
) -> list[BlockGene]:
    """stages: (expansion, channels, repeats, stride, se, act, kernel)."""
    blocks: list[BlockGene] = []
    c_in = in_channels
    for expansion, channels, repeats, stride, se, act, k in stages:
        c = _w(channels, width)
        for i in range(repeats):
            s = stride if i == 0 else 1
            blocks.append(
                BlockGene(
                    block_type,
                    c,
                    (k, k),
                    s,
                    expansion if block_type == "ir" else 1,
                    se,
                    act,
                    residual=block_type != "conv" and s == 1 and c_in == c,
                )
            )
            c_in = c
    return blocks


def mobilenetv2(width: float = 1.0, resolution: int = 96) -> Genotype:
    """MobileNetV2 (Sandler et al. 2018) in six stages: inverted residuals, expansion 6."""
    stem = _w(32, width)
    stages = [
        (1, 16, 1, 1, False, "relu", 3),
        (6, 24, 2, 2, False, "relu", 3),
        (6, 32, 3, 2, False, "relu", 3),
        (6, 64, 4, 2, False, "relu", 3),
        (6, 96, 3, 1, False, "relu", 3),
        (6, 160, 3, 2, False, "relu", 3),
    ]
    return Genotype(resolution, stem, tuple(_stack("ir", stem, stages, width)), 1280)


def mobilenetv3_small(width: float = 1.0, resolution: int = 96) -> Genotype:
    """MobileNetV3-small (Howard et al. 2019): SE and hard-swish in the later, 5×5 stages."""
    stem = _w(16, width)
    stages = [
        (1, 16, 1, 2, True, "relu", 3),
        (4, 24, 1, 2, False, "relu", 3),
        (4, 24, 1, 1, False, "relu", 3),
        (4, 40, 1, 2, True, "hswish", 5),
        (6, 40, 2, 1, True, "hswish", 5),
        (3, 48, 2, 1, True, "hswish", 5),
        (6, 96, 3, 2, True, "hswish", 5),
    ]
    return Genotype(resolution, stem, tuple(_stack("ir", stem, stages, width)), _w(576, width))


def resnet(width: float = 1.0, resolution: int = 96) -> Genotype:
    """ResNet-18 layout (He et al. 2016): basic blocks, two per stage, no max-pool after the stem."""
    stem = _w(32, width)
    stages = [
        (1, 64, 2, 1, False, "relu", 3),
        (1, 128, 2, 2, False, "relu", 3),
        (1, 256, 2, 2, False, "relu", 3),
        (1, 512, 2, 2, False, "relu", 3),
    ]
    return Genotype(resolution, stem, tuple(_stack("res", stem, stages, width)), 0)


def vgg(width: float = 1.0, resolution: int = 96) -> Genotype:
    """VGG-11 layout (Simonyan & Zisserman 2014): plain 3×3 convolutions, strided instead of pooled."""
    stem = _w(32, width)
    stages = [
        (1, 64, 1, 1, False, "relu", 3),
        (1, 128, 1, 2, False, "relu", 3),
        (1, 256, 2, 2, False, "relu", 3),
        (1, 512, 2, 2, False, "relu", 3),
        (1, 512, 2, 2, False, "relu", 3),
    ]
    return Genotype(resolution, stem, tuple(_stack("conv", stem, stages, width)), 0)


#: Baseline name → factory ``(width, resolution) -> Genotype``.
BASELINES: dict[str, Callable[[float, int], Genotype]] = {
    "mobilenetv2": mobilenetv2,
    "mobilenetv3-small": mobilenetv3_small,
    "resnet": resnet,
    "vgg": vgg,
}


def baseline(spec: str, resolution: int = 96) -> Genotype:
    """A baseline by name, with an optional width multiplier: ``"mobilenetv2:0.5"``."""
    name, _, width_text = spec.partition(":")
    name = name.strip().lower()
    if name not in BASELINES:
        raise ConfigError(
            f"baseline {spec!r} is unknown; choose from {', '.join(BASELINES)} "
            "(optionally with a width multiplier, such as mobilenetv2:0.5)"
        )
    try:
        width = float(width_text) if width_text else 1.0
    except ValueError:
        raise ConfigError(f"baseline {spec!r}: width {width_text!r} is not a number") from None
    if not 0.05 <= width <= 4:
        raise ConfigError(f"baseline {spec!r}: width multiplier must be within 0.05–4")
    return BASELINES[name](width, resolution)
