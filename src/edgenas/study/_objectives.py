"""What a search optimises: the values told to the study for each candidate."""

from __future__ import annotations

from dataclasses import dataclass, field

from optuna.study import StudyDirection

from edgenas.cost import Constraints, Costs
from edgenas.errors import ConfigError

__all__ = ["OBJECTIVES", "Objective", "parse_weights"]

#: Objective names the CLI accepts, with what each means.
OBJECTIVES: dict[str, str] = {
    "accuracy": "maximise validation accuracy subject to the constraints",
    "pareto": "accuracy against latency (a Pareto front), subject to the constraints",
    "weighted": "maximise a weighted score of accuracy, latency, size and estimated energy "
    "(--weights)",
}

_WEIGHT_KEYS = ("accuracy", "latency", "size", "energy")

# weight -> (Costs field, Constraints limit it is normalised by, the option that sets it)
_NORMALISED = {
    "latency": ("latency_ms", "max_latency_ms", "--max-latency"),
    "size": ("size_mb", "max_size_mb", "--max-size"),
    "energy": ("energy_mj", "max_energy_mj", "--max-energy"),
}


def parse_weights(text: str | dict[str, float] | None) -> dict[str, float]:
    """``"accuracy=0.6,latency=0.3,size=0.1"`` → a dict; the default is 0.6 / 0.3 / 0.1.

    ``energy`` weighs the estimated energy per inference, so
    ``accuracy=0.7,energy=0.3`` (with ``--max-energy``) searches for accuracy against energy.
    """
    if text is None:
        return {"accuracy": 0.6, "latency": 0.3, "size": 0.1}
    if isinstance(text, dict):
        items = list(text.items())
    else:
        items = []
        for part in text.split(","):
            name, sep, number = part.partition("=")
            if not sep:
                raise ConfigError(f"--weights part {part!r} must look like latency=0.3")
            try:
                items.append((name.strip(), float(number)))
            except ValueError:
                raise ConfigError(f"--weights: {number!r} is not a number") from None
    weights = {}
    for key, value in items:
        if key not in _WEIGHT_KEYS:
            raise ConfigError(f"--weights: {key!r} is unknown; use {', '.join(_WEIGHT_KEYS)}")
        if value < 0:
            raise ConfigError(f"--weights: {key} must not be negative")
        weights[key] = float(value)
    if not any(weights.values()):
        raise ConfigError("--weights: at least one weight must be positive")
    return weights


@dataclass(frozen=True)
class Objective:
    """Maps a candidate's accuracy and costs to the values told to the study."""

    kind: str = "accuracy"
    weights: dict[str, float] = field(default_factory=dict)
    constraints: Constraints = field(default_factory=Constraints)

    def __post_init__(self) -> None:
        if self.kind not in OBJECTIVES:
            raise ConfigError(
                f"objective {self.kind!r} is unknown; choose from {', '.join(OBJECTIVES)}"
            )
        if self.kind == "weighted":
            w = parse_weights(self.weights or None)
            object.__setattr__(self, "weights", w)
            for key, (_, limit, option) in _NORMALISED.items():
                if w.get(key) and getattr(self.constraints, limit) is None:
                    others = ",".join(f"{k}={v:g}" for k, v in w.items() if k != key and v)
                    others = others or "accuracy=1"
                    raise ConfigError(
                        f"the weighted objective normalises {key} by {option}: set it, "
                        f"or give {key} no weight (such as --weights {others})"
                    )

    @property
    def uses_energy(self) -> bool:
        """Whether the estimated energy enters the values told to the study."""
        return self.kind == "weighted" and bool(self.weights.get("energy"))

    @property
    def uses_latency(self) -> bool:
        """Whether latency enters the values told to the study."""
        return self.kind == "pareto" or (
            self.kind == "weighted" and bool(self.weights.get("latency"))
        )

    @property
    def directions(self) -> list[StudyDirection]:
        if self.kind == "pareto":
            return [StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE]
        return [StudyDirection.MAXIMIZE]

    @property
    def names(self) -> list[str]:
        return {"pareto": ["accuracy", "latency_ms"], "weighted": ["score"]}.get(
            self.kind, ["accuracy"]
        )

    @property
    def multi(self) -> bool:
        return len(self.directions) > 1

    def score(self, accuracy: float, costs: Costs) -> float:
        """The weighted score (higher is better); for other objectives, the accuracy."""
        if self.kind != "weighted":
            return accuracy
        w, c = self.weights, self.constraints
        score = w.get("accuracy", 0.0) * accuracy
        for key, (cost, limit, _) in _NORMALISED.items():
            if w.get(key) and getattr(c, limit):
                score += w[key] * (1.0 - getattr(costs, cost) / getattr(c, limit))
        return score

    def values(self, accuracy: float, costs: Costs) -> list[float]:
        """The values told to the study, in the order of :attr:`directions`."""
        if self.kind == "pareto":
            return [accuracy, costs.latency_ms]
        return [self.score(accuracy, costs)]

    def ranking_point(self, accuracy: float, costs: Costs) -> tuple[float, ...]:
        """The values told to the study, each turned to "higher is better" (latency negated):
        the point a fidelity rung ranks candidates by (see ``ranked_ahead``).

        Example:
            >>> Objective("pareto").ranking_point(0.9, Costs(12.0, 30.0, 2.0, 10**6, 10**8))
            (0.9, -12.0)
        """
        return tuple(
            v if d == StudyDirection.MAXIMIZE else -v
            for v, d in zip(self.values(accuracy, costs), self.directions, strict=True)
        )
