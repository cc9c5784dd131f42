"""Limits that nothing in the space can meet, found before a search starts; rejections in a
row explained while it runs.

Without this, a limit no architecture meets makes the strategies redraw and measure candidate
after candidate, in silence, for as long as their patience lasts (hours where latency is
measured). Before the first proposal, `check_reachable` looks at the cheapest architectures of
the space (its smallest one where the space knows it, and a few hundred random ones) with the
analytic costs, which take microseconds, then times the cheapest once; if that breaks a limit,
the search stops at once and says by how much, and what would fit. `RejectionStreak` warns, when
candidates keep breaking the limits, which limits and by how much.
"""

from __future__ import annotations

import contextlib
import logging
import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from edgenas.arch import Genotype
from edgenas.cost import Constraints, CostModel, Costs
from edgenas.errors import ConfigError
from edgenas.space import SearchSpace, StagedSpace

__all__ = ["RejectionStreak", "cheapest_candidates", "check_reachable"]

log = logging.getLogger("edgenas.search")

# Random architectures looked at besides the space's smallest (analytic costs: milliseconds).
SAMPLES = 256
# The cheapest by MACs whose latency is estimated (a measurement each without a profile).
TIMED = 3
# Each limit: the cost it bounds, its unit, and the option that sets it.
LIMITS: dict[str, tuple[str, str, str]] = {
    "max_latency_ms": ("latency_ms", "ms", "--max-latency"),
    "max_memory_mb": ("peak_memory_mb", "MB", "--max-memory"),
    "max_size_mb": ("size_mb", "MB", "--max-size"),
    "max_macs": ("macs", "MACs", "--max-macs"),
    "max_params": ("params", "parameters", "max_params"),
    "max_energy_mj": ("energy_mj", "mJ", "--max-energy"),
}
# Rejections in a row after which a warning says what is rejected (then at 4×, 16×, ...).
STREAK_WARN = 25
SHRINK_HINT = (
    "or search smaller networks (a lower --resolution, a smaller --max-depth, or a space "
    "with narrower stages)"
)


def _amount(value: float, unit: str) -> str:
    """``value`` for a message: counts with an SI prefix, others with 3 significant digits."""
    if unit in ("MACs", "parameters"):
        for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if abs(value) >= scale:
                return f"{value / scale:.3g}{prefix} {unit}"
        return f"{value:.3g} {unit}"
    return f"{value:.3g} {unit}"


def _inner(space: SearchSpace) -> SearchSpace:
    """The architecture space of a space that searches the training too."""
    return getattr(space, "inner", space)


def cheapest_candidates(space: SearchSpace, seed: int = 0) -> list[Genotype]:
    """The architectures a check of reachability looks at: the space's smallest (a staged
    space knows it) and `SAMPLES` random ones; empty for a space whose candidates are not
    networks edgenas builds."""
    arch_space = _inner(space)
    found: list[Genotype] = []
    if isinstance(arch_space, StagedSpace):
        from edgenas.oneshot import smallest_subnet

        found.append(smallest_subnet(arch_space))
    rng = np.random.default_rng(seed)
    with contextlib.suppress(NotImplementedError):
        found += [arch_space.sample(rng) for _ in range(SAMPLES)]
    return [g for g in found if isinstance(g, Genotype)]


def check_reachable(
    space: SearchSpace, limits: Constraints, cost: CostModel, *, seed: int = 0
) -> None:
    """Stop a search whose limits no architecture of ``space`` can meet, before it starts.

    Raises:
        ConfigError: which limit, the cheapest architecture found and its cost, and what
            would fit.
    """
    active = limits.active()
    if not active:
        return
    candidates = cheapest_candidates(space, seed)
    if not candidates:
        return
    analytic = [(g, cost.analytic(g)) for g in candidates]
    for name, limit in active.items():
        if name == "max_latency_ms":
            continue
        metric, unit, option = LIMITS[name]
        genotype, costs = min(analytic, key=lambda gc: getattr(gc[1], metric))
        value = getattr(costs, metric)
        if math.isfinite(value) and value > limit:
            raise ConfigError(_unreachable(option, limit, value, unit, genotype))
    if "max_latency_ms" in active:
        limit = active["max_latency_ms"]
        by_macs = sorted(analytic, key=lambda gc: gc[1].macs)[:TIMED]
        timed = [(cost.latency_ms(g, limit_ms=limit), g) for g, _ in by_macs]
        value, genotype = min(timed, key=lambda t: t[0])
        if value > limit:
            how = "predicted" if cost.predictor is not None else "measured here"
            raise ConfigError(_unreachable("--max-latency", limit, value, "ms", genotype, how=how))


def _unreachable(
    option: str, limit: float, value: float, unit: str, genotype: Genotype, how: str = ""
) -> str:
    times = value / limit if limit > 0 else math.inf
    return (
        f"no architecture of the space can meet {option} {_amount(limit, unit)}: the cheapest "
        f"found, {genotype}, {'takes' if unit == 'ms' else 'has'} {_amount(value, unit)}"
        f"{f' ({how})' if how else ''}, {times:.3g}× the limit. Allow at least "
        f"{_amount(value, unit)} with {option}, {SHRINK_HINT}"
    )


@dataclass
class RejectionStreak:
    """Candidates in a row that broke the limits before training, and by how much. Warns the
    first time a streak reaches `STREAK_WARN`, then when one reaches 4× as many, and so on: a
    few warnings a search, however many short streaks a tight limit gives."""

    limits: Constraints
    count: int = 0
    _excess: dict[str, list[float]] = field(default_factory=dict)
    _warn_at: int = STREAK_WARN

    def feasible(self) -> None:
        """A candidate met the limits: the streak ends."""
        self.count = 0
        self._excess.clear()

    def rejected(self, costs: Costs) -> None:
        """A candidate broke a limit: count it, and warn when the streak is long."""
        self.count += 1
        for name, excess in self.limits.violations(costs).items():
            if excess > 0 and math.isfinite(excess):
                self._excess.setdefault(name, []).append(excess)
        if self.count >= self._warn_at:
            self._warn_at *= 4
            log.warning("%s", self.describe())

    def describe(self) -> str:
        """What the streak rejected, by limit: how many broke it and the median excess."""
        active = self.limits.active()
        parts = []
        for name, excesses in sorted(self._excess.items(), key=lambda kv: -len(kv[1])):
            _metric, unit, option = LIMITS[name]
            typical = active[name] * (1 + statistics.median(excesses))
            parts.append(
                f"{len(excesses)} over {option} {_amount(active[name], unit)} (median "
                f"{_amount(typical, unit)})"
            )
        return (
            f"{self.count} candidates in a row broke the limits before training: "
            f"{'; '.join(parts) or 'see results.json'}. The search goes on; if it stays stuck, "
            f"loosen the limit {SHRINK_HINT}"
        )


def analytic_excess(limits: Constraints, costs: Costs) -> Mapping[str, float]:
    """The limits other than latency that ``costs`` break, with their relative excess."""
    without_latency = replace(costs, latency_ms=0.0)
    return {k: v for k, v in limits.violations(without_latency).items() if v > 0}
