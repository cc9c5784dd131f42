"""Pareto dominance, non-dominated sorting and crowding distance, with every objective maximised.

Points are tuples of objective values each turned to "higher is better" (latency negated).
The fidelity schedule ranks a rung with them, the evolution strategy picks its tournament
winners with them, and the records' Pareto front is the set of points nothing dominates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["crowding_distance", "dominates", "non_dominated", "non_dominated_fronts"]

Point = tuple[float, ...]


def dominates(a: Point, b: Point) -> bool:
    """Whether ``a`` is at least as good as ``b`` on every objective and better on one.

    Example:
        >>> dominates((0.9, -2.0), (0.8, -2.0)), dominates((0.9, -3.0), (0.8, -2.0))
        (True, False)
    """
    return all(x >= y for x, y in zip(a, b, strict=True)) and a != b


def non_dominated(points: Sequence[Point], among: Sequence[int] | None = None) -> list[int]:
    """The indices of the points (of those in ``among``, default all) that none of the others
    dominates, in index order: the Pareto front of a set."""
    pool = range(len(points)) if among is None else among
    return [i for i in pool if not any(dominates(points[j], points[i]) for j in pool)]


def non_dominated_fronts(points: Sequence[Point]) -> list[list[int]]:
    """Non-dominated sorting: the indices of ``points`` front by front, each front in index
    order (the first is the Pareto front; each next one is dominated only by earlier ones)."""
    remaining = list(range(len(points)))
    fronts = []
    while remaining:
        front = non_dominated(points, remaining)
        fronts.append(front)
        remaining = [i for i in remaining if i not in front]
    return fronts


def crowding_distance(points: Sequence[Point], front: Sequence[int]) -> dict[int, float]:
    """NSGA-II crowding distance of each member of one front (index → distance): per
    objective, the gap between its two neighbours over the front's range; the extremes of an
    objective that varies are infinite."""
    distance = dict.fromkeys(front, 0.0)
    for m in range(len(points[front[0]])):
        order = sorted(front, key=lambda i: points[i][m])
        low, high = points[order[0]][m], points[order[-1]][m]
        if high == low:
            continue
        distance[order[0]] = distance[order[-1]] = math.inf
        for before, i, after in zip(order, order[1:], order[2:], strict=False):
            distance[i] += (points[after][m] - points[before][m]) / (high - low)
    return distance
