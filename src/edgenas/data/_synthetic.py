"""A small generated dataset for tests and demos: four textures that survive flips and rotations."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["SYNTHETIC_CLASSES", "SYNTHETIC_IDENTITY", "generate_synthetic"]

SYNTHETIC_CLASSES = ("blob", "dots", "ring", "scratches")
# Fixed, and independent of the run seed: every run, test and machine sees the same images, and
# only the split changes with the seed.
_SEED = 20240601
# 240 per class: at a batch of 64 that is enough steps per epoch for a small CNN to learn the
# classes within a few epochs, while decoding stays instant.
_COUNT = 960
_SIZE = 48
# Bump when the generator changes, so fingerprints and caches of older images are not reused.
_VERSION = 1
SYNTHETIC_IDENTITY = f"synthetic-v{_VERSION}-n{_COUNT}-s{_SIZE}-seed{_SEED}"

_Pattern = Callable[[np.random.Generator, np.ndarray, np.ndarray], np.ndarray]


def generate_synthetic() -> tuple[np.ndarray, np.ndarray]:
    """Generate the built-in ``synthetic`` dataset.

    Returns:
        ``(images, labels)``: uint8 ``(960, 48, 48)`` grayscale images and int64 labels indexing
        `SYNTHETIC_CLASSES`, 240 images per class, classes interleaved.
    """
    rng = np.random.default_rng(_SEED)
    yy, xx = np.mgrid[0:_SIZE, 0:_SIZE].astype(np.float64)
    patterns: tuple[_Pattern, ...] = (_blob, _dots, _ring, _scratches)
    labels = np.arange(_COUNT, dtype=np.int64) % len(patterns)
    images = np.empty((_COUNT, _SIZE, _SIZE), dtype=np.uint8)
    for i, label in enumerate(labels):
        pattern = patterns[label](rng, yy, xx)
        images[i] = _render(rng, pattern, yy, xx)
    return images, labels


def _render(
    rng: np.random.Generator, pattern: np.ndarray, yy: np.ndarray, xx: np.ndarray
) -> np.ndarray:
    """Put a [0, 1] pattern on a shaded background with random polarity, contrast and noise."""
    background = rng.uniform(0.3, 0.7)
    # Mostly bright on dark, sometimes dark on bright: brightness alone never tells the class.
    contrast = rng.uniform(0.3, 0.6) * rng.choice((-1.0, 1.0), p=(0.25, 0.75))
    # A random linear shading: a nuisance a classifier must learn to ignore.
    angle = rng.uniform(0, 2 * np.pi)
    shading = rng.uniform(0, 0.25) * ((np.cos(angle) * xx + np.sin(angle) * yy) / _SIZE - 0.5)
    noise = rng.normal(0.0, rng.uniform(0.03, 0.09), size=pattern.shape)
    image = background + contrast * pattern + shading + noise
    return np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)


def _center(rng: np.random.Generator, margin: float) -> tuple[float, float]:
    return rng.uniform(margin, _SIZE - margin), rng.uniform(margin, _SIZE - margin)


def _blob(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    cy, cx = _center(rng, 12)
    sigma = rng.uniform(3.0, 7.0)
    return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))


def _ring(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    cy, cx = _center(rng, 14)
    radius = rng.uniform(5.0, 12.0)
    width = rng.uniform(1.0, 2.2)
    r = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
    return np.exp(-((r - radius) ** 2) / (2 * width**2))


def _dots(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    # A lattice at a random angle, seen through a soft round window at a random place.
    spacing = rng.uniform(6.0, 9.0)
    dot = rng.uniform(1.0, 1.8)
    angle = rng.uniform(0, np.pi / 2)
    u = np.cos(angle) * xx + np.sin(angle) * yy + rng.uniform(0, spacing)
    v = -np.sin(angle) * xx + np.cos(angle) * yy + rng.uniform(0, spacing)
    du = np.mod(u, spacing) - spacing / 2
    dv = np.mod(v, spacing) - spacing / 2
    lattice = np.exp(-(du**2 + dv**2) / (2 * dot**2))
    cy, cx = _center(rng, 14)
    radius = rng.uniform(10.0, 20.0)
    window = 1 / (1 + np.exp((np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) - radius) / 2))
    return lattice * window


def _scratches(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    out = np.zeros_like(yy)
    for _ in range(int(rng.integers(2, 6))):
        y0, x0 = _center(rng, 6)
        angle = rng.uniform(0, np.pi)
        length = rng.uniform(12.0, 34.0)
        width = rng.uniform(0.6, 1.1)
        dy, dx = np.sin(angle), np.cos(angle)
        # Distance from each pixel to the segment from (y0, x0) of the given length.
        t = np.clip((yy - y0) * dy + (xx - x0) * dx, 0.0, length)
        dist2 = (yy - y0 - t * dy) ** 2 + (xx - x0 - t * dx) ** 2
        out = np.maximum(out, np.exp(-dist2 / (2 * width**2)))
    return out
