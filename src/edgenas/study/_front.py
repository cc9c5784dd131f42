"""The running front of a search: what has been found so far, and its measure.

The measure is the hypervolume of the Pareto front (accuracy against latency) for a Pareto
search, else the best score so far. It is recorded on every trained trial, so a resumed run
goes on counting and ``--stop-when-stable`` can tell when it stopped improving.
"""

from __future__ import annotations

from typing import Any

import optuna

from edgenas.cost import Costs
from edgenas.study import _records as R
from edgenas.study._frontier import hypervolume_2d, stable_for
from edgenas.study._objectives import Objective
from edgenas.study._trials import SearchTrial

__all__ = ["FrontTracker"]


class FrontTracker:
    """The front's measure after every training of a search on ``study``.

    Args:
        study: where the hypervolume's reference latency is kept once fixed.
        objective: what the search optimises.
        max_latency_ms: the latency limit, the hypervolume's reference when set.
        stop_when_stable: the trainings without improvement that end the search (recorded
            in results.json).
        metric_label: what the single-objective measure is the best of (`Metric.label`).
    """

    def __init__(
        self,
        study: optuna.Study,
        objective: Objective,
        max_latency_ms: float | None,
        stop_when_stable: int | None,
        metric_label: str = "accuracy",
    ) -> None:
        self._study = study
        self._metric_label = metric_label
        self._objective = objective
        self._limit = max_latency_ms
        self._stop_when_stable = stop_when_stable
        self._reference: float | None = None
        self.history: list[float] = []  # the measure after each training, in order
        self._finished: list[tuple[float, Costs]] = []  # (accuracy, costs) of usable trainings
        self._slowest_ms = 0.0

    @property
    def measure_is_share(self) -> bool:
        """Whether the measure is a best score in [0, 1] (shown as a percent), not a
        hypervolume or a weighted score."""
        return not self._objective.multi and self._objective.kind != "weighted"

    @property
    def measure_name(self) -> str:
        if self._objective.multi:
            return "hypervolume"
        if self._objective.kind == "weighted":
            return "best score"
        return f"best {self._metric_label}"

    def resume(self, records: list[R.TrialRecord]) -> None:
        """Start from the trials already in the study."""
        self.history = [r.hypervolume for r in records if r.hypervolume is not None]
        self._finished = [
            (r.accuracy, r.costs)
            for r in records
            if r.usable and r.accuracy is not None and r.costs is not None  # (for the types)
        ]
        self._slowest_ms = max((r.costs.latency_ms for r in records if r.costs), default=0.0)

    def saw(self, costs: Costs) -> None:
        """A candidate's costs were estimated (the slowest may become the reference)."""
        self._slowest_ms = max(self._slowest_ms, costs.latency_ms)

    def reference_ms(self) -> float | None:
        """The hypervolume's reference latency: fixed the first time a front needs it."""
        if self._reference is None:
            stored = self._study.user_attrs.get(R.STUDY_HV_REFERENCE)
            slowest = self._slowest_ms
            reference = stored or self._limit or (1.1 * slowest if slowest else None)
            if reference and stored is None:
                self._study.set_user_attr(R.STUDY_HV_REFERENCE, reference)
            self._reference = reference
        return self._reference

    def measure(self) -> float:
        """The hypervolume of the front (Pareto searches) or the best score so far."""
        if not self._finished:
            return 0.0
        if self._objective.multi:
            reference = self.reference_ms()
            points = [(a, c.latency_ms) for a, c in self._finished]
            return hypervolume_2d(points, reference) if reference else 0.0
        return max(self._objective.score(a, c) for a, c in self._finished)

    def note(
        self, trial: SearchTrial, accuracy: float | None = None, costs: Costs | None = None
    ) -> None:
        """Record the measure after a training (with its accuracy and costs when it completed)
        on its trial, before it is told, after which the trial cannot change."""
        if accuracy is not None and costs is not None:
            self._finished.append((accuracy, costs))
        value = self.measure()
        trial.set_user_attr(R.ATTR_HYPERVOLUME, value)
        self.history.append(value)

    def stable_for(self) -> int:
        """Trainings since the measure last improved."""
        return stable_for(self.history)

    def summary(self) -> dict[str, Any]:
        """The front's measure as results.json describes it."""
        reference = (
            self._reference or self._study.user_attrs.get(R.STUDY_HV_REFERENCE) or self._limit
            if self._objective.multi
            else None
        )
        return {
            "measure": self.measure_name,
            "reference_latency_ms": reference,
            "stop_when_stable": self._stop_when_stable,
        }
