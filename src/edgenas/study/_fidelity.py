"""Multi-fidelity schedules: successive halving and Hyperband over training epochs.

The search is sequential (ask, train, tell), so successive halving runs asynchronously, as in
ASHA (Li et al., 2020): a candidate is trained epoch by epoch and, at each rung (``min_epochs``,
``min_epochs·η``, ``min_epochs·η²``, … below ``--epochs``), goes on only while it ranks in the
top ``1/η`` of the candidates that reached that rung so far, itself included. Until ``η``
candidates have reached a rung only the best one so far goes on, as Optuna's
``SuccessiveHalvingPruner`` does, since a stopped training cannot be resumed later.

Hyperband (Li et al., 2018) hedges the choice of the first rung: brackets start at
``min_epochs·ηˢ`` for s = 0, 1, …, and candidates are given to the brackets in turn; each
bracket is successive halving among its own candidates. The last bracket trains every
candidate fully.

Candidates are ranked by what the study is told: the accuracy (or weighted score) at the rung,
and for Pareto searches (accuracy, latency) by non-dominated sorting, then crowding distance
within a front, as NSGA-II orders a population.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edgenas.errors import ConfigError
from edgenas.study._pareto import crowding_distance, non_dominated_fronts

__all__ = ["FIDELITY_SCHEDULES", "FidelitySchedule", "RungEntry", "ranked_ahead"]

#: Schedule names ``--fidelity-schedule`` accepts, with what each means.
FIDELITY_SCHEDULES: dict[str, str] = {
    "none": "train every candidate for --epochs, stopping those clearly behind finished ones",
    "sh": "asynchronous successive halving over epochs",
    "hyperband": "successive-halving brackets with different first rungs, used in turn",
}


@dataclass(frozen=True)
class RungEntry:
    """A trained candidate as a rung sees it: its validation history and the point to rank.

    ``points[e - 1]`` is the candidate's ranking point after epoch ``e``: the values told to the
    study with every value turned to "higher is better" (latency negated).
    """

    points: tuple[tuple[float, ...], ...]
    bracket: int = 0


def ranked_ahead(mine: tuple[float, ...], others: Sequence[tuple[float, ...]]) -> int:
    """How many of ``others`` rank strictly ahead of ``mine`` (every objective maximised).

    One objective: those with a higher value. Several: those in an earlier non-dominated front,
    and those in the same front with a larger crowding distance. Ties favour ``mine``.
    """
    if len(mine) == 1:
        return sum(o[0] > mine[0] for o in others)
    points = [mine, *others]
    ahead = 0
    for front in non_dominated_fronts(points):
        if 0 not in front:
            ahead += len(front)
            continue
        crowding = crowding_distance(points, front)
        return ahead + sum(crowding[i] > crowding[0] for i in front if i != 0)
    raise AssertionError("every point belongs to a front")  # pragma: no cover


@dataclass(frozen=True)
class FidelitySchedule:
    """When a candidate's training is checked against others, and the rule that stops it.

    Example:
        >>> s = FidelitySchedule.parse("hyperband", epochs=9)
        >>> [s.rungs(b) for b in range(s.brackets)]
        [(1, 3), (3,), ()]
    """

    kind: str = "none"  # none, sh or hyperband
    epochs: int = 3  # the full training (--epochs); the last epoch is no rung
    eta: int = 3  # reduction factor: the top 1/η of a rung goes on
    min_epochs: int = 1  # the first rung (of the first bracket)

    def __post_init__(self) -> None:
        if self.kind not in FIDELITY_SCHEDULES:
            raise ConfigError(
                f"--fidelity-schedule {self.kind!r} is unknown; choose from "
                f"{', '.join(FIDELITY_SCHEDULES)} (sh and hyperband take options such as "
                "sh:eta=2,min_epochs=1)"
            )
        if isinstance(self.eta, bool) or not isinstance(self.eta, int) or self.eta < 2:
            raise ConfigError(f"--fidelity-schedule: eta must be an integer >= 2, got {self.eta!r}")
        if self.min_epochs < 1 or isinstance(self.min_epochs, bool):
            raise ConfigError(
                f"--fidelity-schedule: min_epochs must be an integer >= 1, got {self.min_epochs!r}"
            )

    @classmethod
    def parse(cls, text: str | FidelitySchedule | None, epochs: int) -> FidelitySchedule:
        """``"sh"``, ``"hyperband"``, ``"none"``, optionally with ``:eta=N,min_epochs=M``."""
        if isinstance(text, FidelitySchedule):
            return text if text.epochs == epochs else cls(text.kind, epochs, text.eta,
                                                          text.min_epochs)  # fmt: skip
        kind, _, options = (text or "none").strip().lower().partition(":")
        values = {"eta": 3, "min_epochs": 1}
        for part in filter(None, (p.strip() for p in options.split(","))):
            name, sep, number = part.partition("=")
            name = name.strip().replace("-", "_")
            if not sep or name not in values:
                raise ConfigError(
                    f"--fidelity-schedule option {part!r} is not understood; use eta=N and "
                    "min_epochs=M, such as sh:eta=2,min_epochs=1"
                )
            try:
                values[name] = int(number)
            except ValueError:
                raise ConfigError(
                    f"--fidelity-schedule: {name}={number!r} is not a whole number"
                ) from None
        if kind == "none" and options:
            raise ConfigError("--fidelity-schedule none takes no options")
        return cls(kind, epochs, values["eta"], values["min_epochs"])

    @property
    def active(self) -> bool:
        return self.kind != "none"

    @property
    def brackets(self) -> int:
        """How many brackets candidates are given to in turn (1 for successive halving)."""
        if self.kind != "hyperband":
            return 1
        n, first = 1, self.min_epochs
        while first * self.eta <= self.epochs:
            n, first = n + 1, first * self.eta
        return n

    def rungs(self, bracket: int = 0) -> tuple[int, ...]:
        """The epochs after which a candidate of ``bracket`` is checked (all below ``epochs``)."""
        if not self.active:
            return ()
        rung, out = self.min_epochs * self.eta**bracket, []
        while rung < self.epochs:
            out.append(rung)
            rung *= self.eta
        return tuple(out)

    def bracket_for(self, ordinal: int) -> int:
        """The bracket of the ``ordinal``-th candidate trained under this schedule (round-robin)."""
        return ordinal % self.brackets

    def should_stop(
        self,
        epoch: int,
        point: tuple[float, ...],
        others: Sequence[RungEntry],
        bracket: int = 0,
    ) -> str | None:
        """The reason to stop a candidate after ``epoch`` (1-based), or None to go on.

        ``point`` is the candidate's ranking point at this epoch; ``others`` are the other
        candidates trained so far (complete or stopped), of any bracket.
        """
        rungs = self.rungs(bracket)
        if epoch not in rungs:
            return None
        rivals = [
            e.points[epoch - 1]
            for e in others
            if len(e.points) >= epoch and (self.kind != "hyperband" or e.bracket == bracket)
        ]
        reached = len(rivals) + 1
        keep = max(1, reached // self.eta)
        ahead = ranked_ahead(point, rivals)
        if ahead < keep:
            return None
        where = f"bracket {bracket}, " if self.kind == "hyperband" else ""
        return (
            f"{where}rung {rungs.index(epoch) + 1} (epoch {epoch}): {ahead} of the {reached} "
            f"candidates that reached it rank ahead; only the top {keep} go on"
        )
