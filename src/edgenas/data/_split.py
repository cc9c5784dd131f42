"""Stratified, group-aware train / validation / holdout splits."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgenas.errors import ConfigError, DataError

__all__ = ["MIN_IMAGES_PER_CLASS", "Splits", "check_fractions", "stratified_split"]

_log = logging.getLogger("edgenas.data")

# One image for each of train, validation and holdout.
MIN_IMAGES_PER_CLASS = 3
_SPLIT_NAMES = ("train", "validation", "holdout")


@dataclass(frozen=True, eq=False)
class Splits:
    """Sorted int64 indices into a dataset, one array per split; the three are disjoint and
    together cover every image.

    ``holdout`` is never used by the search: it only measures the final model.
    """

    train: np.ndarray
    val: np.ndarray
    holdout: np.ndarray

    def __post_init__(self) -> None:
        for field in ("train", "val", "holdout"):
            object.__setattr__(self, field, np.array(getattr(self, field), dtype=np.int64))

    def __repr__(self) -> str:
        return f"Splits(train={len(self.train)}, val={len(self.val)}, holdout={len(self.holdout)})"


def check_fractions(val_fraction: float, holdout_fraction: float) -> None:
    """Raise `ConfigError` unless both fractions are in (0, 1) and leave images for training."""
    for name, value in (("val_fraction", val_fraction), ("holdout_fraction", holdout_fraction)):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or not 0.0 < value < 1.0
        ):
            raise ConfigError(
                f"{name} must be a number between 0 and 1 (exclusive), got {value!r}; "
                f"0.15 is a good default"
            )
    if val_fraction + holdout_fraction >= 1.0:
        raise ConfigError(
            f"val_fraction + holdout_fraction must be below 1 to leave images for training, got "
            f"{val_fraction} + {holdout_fraction}; lower one of them"
        )


def stratified_split(
    labels: np.ndarray,
    groups: np.ndarray | None,
    class_names: Sequence[str],
    *,
    seed: int,
    val_fraction: float,
    holdout_fraction: float,
    origin: str,
) -> Splits:
    """Split images into train, validation and holdout, stratified by class.

    Without groups each class is split on its own, so every split gets about its fraction of
    every class and at least one image of each. With groups, all images of a group land in the
    same split (so near-duplicates, e.g. several shots of one part, cannot leak from training
    into evaluation); groups are stratified by their majority label and the fractions hold
    approximately. An empty group name means "no group". The same inputs and seed give the
    same split.

    Raises:
        DataError: a class has fewer than `MIN_IMAGES_PER_CLASS` images (``origin`` names the
            folder or manifest in the message).
        ConfigError: bad fractions.
    """
    check_fractions(val_fraction, holdout_fraction)
    num_classes = len(class_names)
    counts = np.bincount(labels, minlength=num_classes)
    for index, count in enumerate(counts):
        if count < MIN_IMAGES_PER_CLASS:
            raise DataError(
                f"class {class_names[index]!r} has {count} image(s) in {origin}, but each class "
                f"needs at least {MIN_IMAGES_PER_CLASS} (one each for training, validation and "
                f"holdout): add images of {class_names[index]!r} or remove the class"
            )

    unit_of_image, unit_sizes, unit_labels = _units(labels, groups, num_classes)
    fractions = (1.0 - val_fraction - holdout_fraction, val_fraction, holdout_fraction)
    rng = np.random.default_rng(seed)
    split_of_unit = np.empty(len(unit_sizes), dtype=np.int64)
    for label in range(num_classes):
        members = np.flatnonzero(unit_labels == label)
        order = rng.permutation(members)
        sizes = unit_sizes[order].tolist()
        split_of_unit[order] = _fill(sizes, fractions)

    split_of_image = split_of_unit[unit_of_image]
    if groups is not None:
        _warn_missing_classes(labels, split_of_image, class_names, origin)
    return Splits(*(np.flatnonzero(split_of_image == s) for s in range(3)))


def _units(
    labels: np.ndarray, groups: np.ndarray | None, num_classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The units that are assigned to splits as a whole: groups, or single images.

    Returns (unit of each image, size of each unit, majority label of each unit).
    """
    if groups is None:
        count = len(labels)
        return np.arange(count), np.ones(count, dtype=np.int64), labels
    unit_ids: dict[str, int] = {}
    unit_of_image = np.empty(len(labels), dtype=np.int64)
    for i, group in enumerate(groups.tolist()):
        key = str(group)
        if key == "":
            # Ungrouped: a unit of its own. The NUL prefix cannot clash with a real group name.
            key = f"\0{i}"
        unit_of_image[i] = unit_ids.setdefault(key, len(unit_ids))
    votes = np.zeros((len(unit_ids), num_classes), dtype=np.int64)
    np.add.at(votes, (unit_of_image, labels), 1)
    # argmax breaks ties towards the lower label, deterministically.
    return unit_of_image, votes.sum(axis=1), votes.argmax(axis=1)


def _fill(sizes: list[int], fractions: tuple[float, float, float]) -> list[int]:
    """Deal units (in the given, already shuffled order) to the split furthest below its target.

    "Furthest" is relative to the target, so a still-empty split always comes first: with three
    or more units every split gets at least one.
    """
    total = float(sum(sizes))
    targets = [f * total for f in fractions]
    filled = [0.0, 0.0, 0.0]
    assigned = []
    for size in sizes:
        need = [(t - f) / t for t, f in zip(targets, filled, strict=True)]
        split = need.index(max(need))
        filled[split] += size
        assigned.append(split)
    return assigned


def _warn_missing_classes(
    labels: np.ndarray, split_of_image: np.ndarray, class_names: Sequence[str], origin: str
) -> None:
    missing = []
    for split, split_name in enumerate(_SPLIT_NAMES):
        present = np.unique(labels[split_of_image == split])
        missing += [
            f"{class_names[c]!r} ({split_name})"
            for c in range(len(class_names))
            if c not in present
        ]
    if missing:
        _log.warning(
            "some classes of %s have no images in a split, because their images sit in too few "
            "groups: %s. Accuracy on that split will not cover them; add groups (or images in "
            "new groups) to those classes.",
            origin,
            ", ".join(missing),
        )
