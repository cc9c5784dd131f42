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
    "weighted": "maximise a weighted score of accuracy, latency and size (--weights)",
}

_WEIGHT_KEYS = ("accuracy", "latency", "size")


def parse_weights(text: str | dict[str, float] | None) -> dict[str, float]:
    """``"accuracy=0.6,latency=0.3,size=0.1"`` → a dict; the default is 0.6 / 0.3 / 0.1."""
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
            c = self.constraints
            if w.get("latency") and c.max_latency_ms is None:
                raise ConfigError(
                    "the weighted objective normalises latency by --max-latency: set it, "
                    "or give latency no weight (--weights accuracy=0.8,size=0.2)"
                )
            if w.get("size") and c.max_size_mb is None:
                raise ConfigError(
                    "the weighted objective normalises size by --max-size: set it, "
                    "or give size no weight (--weights accuracy=0.7,latency=0.3)"
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
        if w.get("latency") and c.max_latency_ms:
            score += w["latency"] * (1.0 - costs.latency_ms / c.max_latency_ms)
        if w.get("size") and c.max_size_mb:
            score += w["size"] * (1.0 - costs.size_mb / c.max_size_mb)
        return score

    def values(self, accuracy: float, costs: Costs) -> list[float]:
        if self.kind == "pareto":
            return [accuracy, costs.latency_ms]
        return [self.score(accuracy, costs)]
