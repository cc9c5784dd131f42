"""A `SearchConfig` from options as the command line and ``edgenas.search()`` give them: limits
with units, a space by name, durations and weights as text."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edgenas.cost import Constraints, EnergyModel, parse_duration
from edgenas.errors import ConfigError
from edgenas.space import SearchSpace, load_space
from edgenas.study._objectives import parse_weights
from edgenas.study._runner import SearchConfig

__all__ = ["config_from_options"]


@contextmanager
def _named(key: str) -> Iterator[None]:
    """Name the option (``--max-latency``) in the error of the value given for ``key``."""
    try:
        yield
    except ConfigError as exc:
        raise ConfigError(f"--{key.replace('_', '-')}: {exc}") from None


def config_from_options(
    data: str | Path,
    *,
    out: str | Path | None = None,
    space: str | SearchSpace = "edge",
    blocks: str | None = None,
    kernels: str | None = None,
    max_depth: int | None = None,
    resolutions: str | None = None,
    max_latency: str | float | None = None,
    max_memory: str | float | None = None,
    max_size: str | float | None = None,
    max_macs: str | float | None = None,
    max_energy: str | float | None = None,
    energy: str | dict[str, float] | EnergyModel | None = None,
    weights: str | dict[str, float] | None = None,
    time_budget: str | float | None = None,
    **fields: Any,
) -> SearchConfig:
    """The search that options name, read once for the command line and for Python alike.

    Limits take numbers in ms / MB / MACs / mJ or strings with units (``"5ms"``, ``"2MB"``,
    ``"800uJ"``); ``space`` is a space or its name for `load_space`, narrowed by ``blocks``,
    ``kernels``, ``max_depth`` and ``resolutions``; ``energy`` the coefficients of the energy
    estimate (`EnergyModel.parse`); ``weights`` those of the weighted objective, as a dict or
    ``"accuracy=0.6,latency=0.4"``; ``time_budget`` seconds or a string with units (``"30m"``).
    Further keyword arguments are fields of `SearchConfig` (``trials``, ``epochs``, ...).

    Example:
        >>> config = config_from_options("synthetic", max_latency="2ms", time_budget="30m")
        >>> config.constraints.max_latency_ms, config.time_budget_s
        (2.0, 1800.0)
    """
    # In the order the command line has always read them: of several bad options, the same
    # one is named.
    limits = {"max_latency": max_latency, "max_memory": max_memory, "max_size": max_size,
              "max_macs": max_macs, "max_energy": max_energy}  # fmt: skip
    for key, value in limits.items():
        if value is not None:
            with _named(key):
                Constraints.parse(**{key: value})
    constraints = Constraints.parse(**limits)
    search_space = load_space(
        space, blocks=blocks, kernels=kernels, max_depth=max_depth, resolutions=resolutions
    )
    parsed_weights = parse_weights(weights) if weights else None
    if isinstance(time_budget, str):
        with _named("time_budget"):
            time_budget = parse_duration(time_budget) if time_budget else None
    return SearchConfig(
        data=str(data),
        out=Path(out) if out is not None else None,
        space=search_space,
        constraints=constraints,
        weights=parsed_weights,
        time_budget_s=None if time_budget is None else float(time_budget),
        energy=EnergyModel.parse(energy),
        **fields,
    )
