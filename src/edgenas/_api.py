"""``edgenas.search(...)``: the search from Python, with the CLI's vocabulary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgenas.cost import EnergyModel
from edgenas.search import SearchProgress, SearchResult, config_from_options, run_search
from edgenas.space import SearchSpace

__all__ = ["search"]


def search(
    data: str | Path,
    *,
    out: str | Path | None = None,
    max_latency: str | float | None = None,
    max_memory: str | float | None = None,
    max_size: str | float | None = None,
    max_macs: str | float | None = None,
    max_energy: str | float | None = None,
    energy: str | dict[str, float] | EnergyModel | None = None,
    space: str | SearchSpace = "edge",
    time_budget: str | float | None = None,
    progress: SearchProgress | None = None,
    **options: Any,
) -> SearchResult:
    """Run (or resume) a search; the arguments mean what the CLI's options of the same name do.

    Limits take numbers in ms / MB / MACs / mJ or strings with units (``"5ms"``, ``"2MB"``,
    ``"800uJ"``); ``max_energy`` limits the *estimated* energy per inference, whose coefficients
    ``energy`` sets (an :class:`~edgenas.cost.EnergyModel`, a dict or
    ``"pj_per_mac=150,pj_per_byte=50"``; default: a Cortex-A72-class CPU).
    ``time_budget`` takes seconds or a string with units (``"30m"``); further keyword arguments are fields of :class:`~edgenas.search.SearchConfig`
    (``trials``, ``epochs``, ``strategy``, ``objective``, ``weights``, ``seed``, ...).

    Example:
        >>> result = search("synthetic", max_latency="2ms", trials=8, epochs=1)  # doctest: +SKIP
        >>> [t.number for t in result.pareto]  # doctest: +SKIP
    """
    config = config_from_options(
        data, out=out, space=space, max_latency=max_latency, max_memory=max_memory,
        max_size=max_size, max_macs=max_macs, max_energy=max_energy, energy=energy,
        time_budget=time_budget, **options,
    )  # fmt: skip
    return run_search(config, progress)
