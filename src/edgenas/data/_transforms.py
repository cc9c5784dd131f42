"""What the data allows and how its images become square inputs.

Two settings belong to a dataset rather than to training: which augmentations keep an image's
class (``augment``, a set of named operations that training draws from), and how an image of
another aspect ratio becomes the square input the networks take (``resize``).

Example:
    >>> parse_augment("rot90, flip-h")
    ('flip-h', 'rot90')
    >>> parse_augment("none")
    ()
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from edgenas.errors import ConfigError

__all__ = [
    "AUGMENTATIONS",
    "FILE_AUGMENT",
    "RESIZE_POLICIES",
    "parse_augment",
    "parse_resize",
    "resize_image",
]

# Every augmentation by name, in the order they are written out (and applied: the geometric
# ones first). Training implements each (edgenas.train.augment_batch).
AUGMENTATIONS = ("flip-h", "flip-v", "rot90", "shift", "brightness", "contrast")
# A user's folder or manifest: nothing is known of its symmetries, so no flip or turn.
FILE_AUGMENT = ("shift", "brightness", "contrast")
# squash: stretch to a square (every pixel stays in view, the aspect ratio does not);
# crop: the short side to the resolution, centre-cropped; pad: the long side to the
# resolution, centred on black (letterbox). Square images come out the same under all three.
RESIZE_POLICIES = ("squash", "crop", "pad")
_NONE = "none"


def parse_augment(value: str | Sequence[str], option: str = "augment") -> tuple[str, ...]:
    """The augmentations ``value`` names, in the order of `AUGMENTATIONS`; ``()`` for none.

    Args:
        value: a comma-separated string such as ``"flip-h,rot90"``, a sequence of names (empty
            for none), or ``"none"``.
        option: how messages name the setting (``--augment`` on the command line).

    Raises:
        ConfigError: an unknown name (named, with the choices), ``none`` with other names, or
            nothing at all.
    """
    if isinstance(value, str):
        words = value.split(",")
    elif isinstance(value, Sequence) and all(isinstance(word, str) for word in value):
        words = list(value)
    else:
        raise ConfigError(
            f"{option} takes a comma-separated list of augmentations such as "
            f"'flip-h,shift', got {value!r}"
        )
    names = [word.strip().lower() for word in words]
    names = [name for name in names if name]
    choices = f"{', '.join(AUGMENTATIONS)}, or {_NONE}"
    if not isinstance(value, str) and not value:
        return ()  # a sequence of no names: what a dataset with augment none holds
    if not names:
        raise ConfigError(
            f"{option} is empty; give a comma-separated list of {choices} (no augmentation)"
        )
    for name in names:
        if name != _NONE and name not in AUGMENTATIONS:
            raise ConfigError(
                f"{option} {_shown(value)}: {name!r} is not an augmentation; give a "
                f"comma-separated list of {choices}"
            )
    if _NONE in names:
        if len(set(names)) > 1:
            raise ConfigError(
                f"{option} {_shown(value)}: {_NONE} turns augmentation off and cannot be "
                f"combined with other names; give {_NONE} alone, or only the names to use"
            )
        return ()
    return tuple(name for name in AUGMENTATIONS if name in names)


def parse_resize(value: str, option: str = "resize") -> str:
    """``value`` checked against `RESIZE_POLICIES`.

    Raises:
        ConfigError: anything else, with the choices.
    """
    policy = value.strip().lower() if isinstance(value, str) else value
    if policy not in RESIZE_POLICIES:
        raise ConfigError(
            f"{option} {value!r} is unknown; choose {', '.join(RESIZE_POLICIES[:-1])} or "
            f"{RESIZE_POLICIES[-1]} (squash stretches, crop cuts the long side, pad keeps the "
            f"whole image on black borders)"
        )
    return str(policy)


def resize_image(image: Image.Image, resolution: int, policy: str) -> np.ndarray:
    """``image`` as a ``(resolution, resolution[, channels])`` uint8 array, made square as
    ``policy`` says (one of `RESIZE_POLICIES`).

    Bilinear with PIL's antialiasing; ``reducing_gap`` first shrinks by an integer factor,
    which is much faster on large images and indistinguishable in quality at this gap.
    """
    if policy not in RESIZE_POLICIES:
        raise ValueError(f"unknown resize policy {policy!r}; one of {RESIZE_POLICIES}")
    square = (resolution, resolution)
    width, height = image.size
    if width == height or policy == "squash":
        if image.size == square:
            image.load()
            return np.asarray(image)
        return np.asarray(image.resize(square, Image.Resampling.BILINEAR, reducing_gap=3.0))
    if policy == "crop":
        # Resample only the centred square: one pass, no intermediate full-size copy.
        side = min(width, height)
        left, top = (width - side) / 2, (height - side) / 2
        box = (left, top, left + side, top + side)
        cropped = image.resize(square, Image.Resampling.BILINEAR, box=box, reducing_gap=3.0)
        return np.asarray(cropped)
    longest = max(width, height)
    size = (
        max(1, round(width * resolution / longest)),
        max(1, round(height * resolution / longest)),
    )
    canvas = Image.new(image.mode, square)  # zeros: black in "L" and "RGB"
    fitted = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)
    canvas.paste(fitted, ((resolution - size[0]) // 2, (resolution - size[1]) // 2))
    return np.asarray(canvas)


def _shown(value: str | Sequence[str]) -> str:
    return repr(value if isinstance(value, str) else ",".join(value))
