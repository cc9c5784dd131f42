"""Confidence intervals of accuracies, and the one rule for a gap between validation and
holdout accuracy that chance does not explain (used by finalize, ``edgenas show`` and the
report alike)."""

from __future__ import annotations

import math

__all__ = ["accuracy_difference_interval", "holdout_gap", "wilson_interval"]

_Z95 = 1.959963984540054


def wilson_interval(successes: float, n: int, z: float = _Z95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (95% by default), as (low, high).

    Example:
        >>> [round(x, 4) for x in wilson_interval(8, 10)]
        [0.4902, 0.9433]
    """
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def accuracy_difference_interval(
    accuracy_a: float, n_a: int, accuracy_b: float, n_b: int, z: float = _Z95
) -> tuple[float, float]:
    """Newcombe's hybrid score interval (95% by default) of ``accuracy_a - accuracy_b``, two
    accuracies measured on independent sets of ``n_a`` and ``n_b`` images.

    It combines the Wilson interval of each accuracy (Newcombe 1998, method 10), so it keeps
    close to its nominal coverage where accuracies sit near 100% or a split is small: there
    the Wald standard error of a difference collapses towards zero and flags noise.

    Example:
        >>> [round(x, 4) for x in accuracy_difference_interval(0.9, 200, 0.8, 200)]
        [0.03, 0.1699]
    """
    low_a, high_a = wilson_interval(accuracy_a * n_a, n_a, z)
    low_b, high_b = wilson_interval(accuracy_b * n_b, n_b, z)
    difference = accuracy_a - accuracy_b
    return (
        difference - math.hypot(accuracy_a - low_a, high_b - accuracy_b),
        difference + math.hypot(high_a - accuracy_a, accuracy_b - low_b),
    )


def holdout_gap(
    val_accuracy: float | None,
    val_images: int | None,
    holdout_accuracy: float | None,
    holdout_images: int | None,
) -> str | None:
    """A warning when validation and holdout accuracy differ by more than chance explains;
    None when they agree or a figure is missing.

    The two accuracies are of one model on two independent sets of images, so the question is
    whether their difference could be zero: the rule is that the 95% interval of the
    difference (`accuracy_difference_interval`, built from the Wilson intervals the tables
    show) leaves zero out, a two-sided test at the 5% level. Two 95% intervals that merely fail
    to overlap would be a far stricter test (about 0.6% for equal widths) and miss real gaps;
    a pooled z-test misjudges the accuracies near 100% that small edge tasks reach. A gap
    hints at a leaky or shifted validation split, or a search that overfitted the validation
    images it chose on.

    Example:
        >>> holdout_gap(0.95, 400, 0.85, 400)[:45]
        'validation (95.0%) and holdout (85.0%) accura'
        >>> holdout_gap(0.90, 100, 0.86, 100) is None
        True
    """
    if val_accuracy is None or holdout_accuracy is None or not val_images or not holdout_images:
        return None
    low, high = accuracy_difference_interval(
        val_accuracy, val_images, holdout_accuracy, holdout_images
    )
    if low <= 0.0 <= high:
        return None
    return (
        f"validation ({100 * val_accuracy:.1f}%) and holdout ({100 * holdout_accuracy:.1f}%) "
        f"accuracy differ by more than chance explains (95% interval of the difference: "
        f"{100 * low:+.1f} to {100 * high:+.1f} points): check the validation split for leaks "
        "or shift"
    )
