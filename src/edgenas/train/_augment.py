"""Batched data augmentation on float image tensors.

Everything is drawn per sample but applied to the whole batch at once (masks and gathers, no
per-image Python loop), so augmentation costs little next to the forward pass on CPU or GPU.
Which operations apply is the data's to say (``edgenas.data.ImageDataset.augment`` names them).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection

import torch

__all__ = ["augment_batch"]

# The operations by name, as the data names them (edgenas.data.AUGMENTATIONS).
_GEOMETRIC = frozenset({"flip-h", "flip-v", "rot90"})
_OPERATIONS = _GEOMETRIC | {"shift", "brightness", "contrast"}

# Ranges at strength 1; `strength` scales them linearly.
_SHIFT_FRACTION = 1.0 / 8.0  # largest shift, as a share of the image side
_BRIGHTNESS = 0.2  # brightness factor drawn from [1 - b, 1 + b]
_CONTRAST = 0.2  # contrast factor drawn from [1 - c, 1 + c]


def augment_batch(
    x: torch.Tensor,
    generator: torch.Generator,
    *,
    ops: Collection[str],
    strength: float,
) -> torch.Tensor:
    """Randomly augment a batch of images; the input is never modified.

    Args:
        x: float images ``(B, C, H, W)`` with values in [0, 1], on any device.
        generator: source of randomness. It may live on the CPU or on ``x``'s device; the
            random draws are made on the generator's device and moved to ``x``'s.
        ops: the operations to draw from, any of
            ``flip-h``: mirror left-right, with probability 1/2;
            ``flip-v``: upside down, with probability 1/2;
            ``rot90``: a rotation by a random multiple of 90° (non-square images only by
            180°, which keeps their shape);
            ``shift``: a random shift, up to 1/8 of the side at strength 1, reflect-padded;
            ``brightness``: a factor in [0.8, 1.2] at strength 1;
            ``contrast``: a factor in [0.8, 1.2] around each image's mean at strength 1.
        strength: scales the shift, brightness and contrast ranges; 0 turns those three off
            (flips and turns stay).

    Returns:
        A tensor of the same shape, dtype and device, clamped to [0, 1]. With nothing enabled
        ``x`` itself is returned.

    Raises:
        ValueError: bad images or strength, or an operation that is not one of the above.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> augment_batch(torch.rand(8, 3, 32, 32), g, ops=("flip-h", "shift"),
        ...               strength=1.0).shape
        torch.Size([8, 3, 32, 32])
    """
    if x.ndim != 4 or not x.is_floating_point():
        raise ValueError(
            f"augment_batch expects float images of shape (B, C, H, W), "
            f"got dtype {x.dtype} and shape {tuple(x.shape)}"
        )
    if not math.isfinite(strength) or strength < 0:
        raise ValueError(f"augment strength must be a finite number >= 0, got {strength!r}")
    chosen = frozenset([ops] if isinstance(ops, str) else ops)
    unknown = sorted(chosen - _OPERATIONS)
    if unknown:
        known = ", ".join(sorted(_OPERATIONS))
        raise ValueError(f"unknown augmentation(s) {', '.join(unknown)}; known: {known}")
    batch = x.shape[0]
    jitter = chosen - _GEOMETRIC if strength > 0 else frozenset()
    if batch == 0 or not (chosen & _GEOMETRIC or jitter):
        return x

    def uniform(size: int) -> torch.Tensor:
        values = torch.rand(size, generator=generator, device=generator.device)
        return values.to(device=x.device, dtype=x.dtype, non_blocking=True)

    def coin(size: int) -> torch.Tensor:
        return uniform(size) < 0.5

    out = x
    if chosen & _GEOMETRIC:
        out = _dihedral(
            out,
            coin,
            horizontal="flip-h" in chosen,
            vertical="flip-v" in chosen,
            rot90="rot90" in chosen,
        )
    if "shift" in jitter:
        out = _shift(out, generator, strength)
    if "brightness" in jitter or "contrast" in jitter:
        out = _jitter(
            out,
            uniform,
            contrast=strength if "contrast" in jitter else 0.0,
            brightness=strength if "brightness" in jitter else 0.0,
        )
    return out.clamp(0.0, 1.0)


def _dihedral(
    x: torch.Tensor,
    coin: Callable[[int], torch.Tensor],
    *,
    horizontal: bool,
    vertical: bool,
    rot90: bool,
) -> torch.Tensor:
    """Random flips (mirror left-right, upside down) and/or quarter turns, folded into at
    most three batched selections."""
    batch, _, height, width = x.shape
    no = torch.zeros(batch, dtype=torch.bool, device=x.device)
    flip_w = coin(batch) if horizontal else no  # reverses the width axis: left-right
    flip_h = coin(batch) if vertical else no  # reverses the height axis: upside down
    transpose = no
    if rot90:
        # A quarter turn by k is a flip followed by a transpose (as in torch.rot90):
        # k=1: flip W, transpose; k=2: flip H and W; k=3: flip H, transpose. Flips commute,
        # so a random flip before the turn simply toggles the turn's own flips.
        if height == width:
            bit0, bit1 = coin(batch), coin(batch)  # k = bit0 + 2 * bit1
            transpose = bit0
            flip_w = flip_w ^ (bit0 ^ bit1)  # k in {1, 2}
            flip_h = flip_h ^ bit1  # k in {2, 3}
        else:
            # Only a half turn keeps a non-square image's shape.
            half_turn = coin(batch)
            flip_w = flip_w ^ half_turn
            flip_h = flip_h ^ half_turn
    out = torch.where(flip_w[:, None, None, None], x.flip(3), x)
    out = torch.where(flip_h[:, None, None, None], out.flip(2), out)
    if rot90 and height == width:
        out = torch.where(transpose[:, None, None, None], out.transpose(2, 3), out)
    return out


def _shift(x: torch.Tensor, generator: torch.Generator, strength: float) -> torch.Tensor:
    """Translate each image by a random whole number of pixels, filling by reflection.

    Equivalent to reflect-padding and a random crop, done as one gather without the padded copy.
    """
    batch, channels, height, width = x.shape
    # Reflection needs the shift to stay below the side length.
    max_dy = min(round(strength * _SHIFT_FRACTION * height), height - 1)
    max_dx = min(round(strength * _SHIFT_FRACTION * width), width - 1)
    if max_dy == 0 and max_dx == 0:
        return x
    device = x.device

    def offsets(limit: int) -> torch.Tensor:
        drawn = torch.randint(
            -limit, limit + 1, (batch,), generator=generator, device=generator.device
        )
        return drawn.to(device, non_blocking=True)

    rows = _reflect(offsets(max_dy)[:, None] + torch.arange(height, device=device), height)
    cols = _reflect(offsets(max_dx)[:, None] + torch.arange(width, device=device), width)
    batch_index = torch.arange(batch, device=device)[:, None, None, None]
    channel_index = torch.arange(channels, device=device)[None, :, None, None]
    return x[batch_index, channel_index, rows[:, None, :, None], cols[:, None, None, :]]


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    """Map indices in [-(size - 1), 2 * (size - 1)] into [0, size) by mirroring at the edges."""
    last = size - 1
    return last - (last - index.abs()).abs()


def _jitter(
    x: torch.Tensor,
    uniform: Callable[[int], torch.Tensor],
    *,
    contrast: float,
    brightness: float,
) -> torch.Tensor:
    """Random contrast (around each image's mean) then brightness, per image; each scaled by
    its own strength (0: off)."""
    batch = x.shape[0]
    out = x
    if contrast > 0:
        factor = (1.0 + (2.0 * uniform(batch) - 1.0) * _CONTRAST * contrast).clamp_min(0.0)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        out = (out - mean) * factor[:, None, None, None] + mean
    if brightness > 0:
        factor = (1.0 + (2.0 * uniform(batch) - 1.0) * _BRIGHTNESS * brightness).clamp_min(0.0)
        out = out * factor[:, None, None, None]
    return out
