"""Stop training a candidate that is clearly behind completed ones at the same epoch.

Optuna's pruners handle one objective only. This rule works for Pareto searches too: a candidate
is behind when enough completed candidates that cost no more (latency and size, and estimated
energy when the objective weighs it) were at least ``margin`` more accurate at the same epoch. For a single accuracy objective the cost condition
is dropped and the rule becomes "below the median of completed candidates by a margin".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edgenas.cost import Costs

__all__ = ["EarlyStopping", "EpochCurve"]


@dataclass(frozen=True)
class EpochCurve:
    """A completed candidate's validation accuracy per epoch, and its costs."""

    history: tuple[float, ...]
    costs: Costs


@dataclass(frozen=True)
class EarlyStopping:
    margin: float = 0.03  # accuracy (0..1) by which others must lead, above epoch-to-epoch noise
    min_better: int = 3  # at least this many completed candidates must lead
    share: float = 0.5  # ... and at least this share of those that are comparable
    cost_aware: bool = False  # only count leaders that cost no more (Pareto searches)
    enabled: bool = True
    cost_fields: tuple[str, ...] = ("latency_ms", "size_mb")  # what "cost no more" compares

    def should_stop(
        self, epoch: int, accuracy: float, costs: Costs, completed: Sequence[EpochCurve]
    ) -> str | None:
        """The reason to stop after ``epoch`` (1-based), or None to go on."""
        if not self.enabled:
            return None
        comparable = [c for c in completed if len(c.history) >= epoch]
        if len(comparable) < self.min_better:
            return None
        leaders = [
            c
            for c in comparable
            if c.history[epoch - 1] >= accuracy + self.margin
            and (
                not self.cost_aware
                or all(getattr(c.costs, f) <= getattr(costs, f) for f in self.cost_fields)
            )
        ]
        if len(leaders) >= self.min_better and len(leaders) >= self.share * len(comparable):
            return (
                f"at epoch {epoch}, {len(leaders)} of {len(comparable)} completed candidates"
                f"{' that cost no more' if self.cost_aware else ''} were ≥ "
                f"{self.margin * 100:.0f} points more accurate"
            )
        return None
