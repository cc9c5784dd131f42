"""How good the front found so far is, and for how many trainings it has not improved.

For a Pareto search (accuracy up, latency down) the measure is the front's hypervolume: the area
it dominates above accuracy 0 and left of a reference latency, divided by that latency, so it is
the share of the box "accuracy 0–1 × latency 0–reference" the front covers (0–1). The reference is
the latency limit when there is one, else 1.1 × the largest latency seen when the first front
appears; it is then kept, so values stay comparable (a candidate slower than it adds nothing).
For single-objective searches the measure is simply the best score so far.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["hypervolume_2d", "stable_for"]

# Improvements smaller than this are rounding, not progress.
_TOLERANCE = 1e-9


def hypervolume_2d(points: Iterable[tuple[float, float]], reference_latency: float) -> float:
    """Share of the box accuracy [0, 1] × latency [0, ``reference_latency``] that the points
    dominate, each point ``(accuracy, latency_ms)`` dominating ``[latency, ref] × [0, accuracy]``.

    Example:
        >>> hypervolume_2d([(0.5, 2.0), (0.8, 6.0)], reference_latency=10.0)
        0.52
    """
    if not reference_latency > 0:
        return 0.0
    area, height = 0.0, 0.0
    # Fastest first: each point adds the strip between the best accuracy so far and its own.
    for accuracy, latency in sorted(points, key=lambda p: (p[1], -p[0])):
        if latency >= reference_latency or accuracy <= height:
            continue
        area += (accuracy - height) * (reference_latency - latency)
        height = accuracy
    return area / reference_latency


def stable_for(history: Sequence[float]) -> int:
    """Trainings since the measure last improved (all of them when it never rose above 0)."""
    best, since = 0.0, 0
    for value in history:
        if value > best + _TOLERANCE:
            best, since = value, 0
        else:
            since += 1
    return since
