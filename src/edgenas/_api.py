"""``edgenas.search(...)``: the search from Python, with the CLI's vocabulary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgenas.study import SearchProgress, SearchResult, config_from_options, run_search

__all__ = ["search"]


def search(
    data: str | Path, *, progress: SearchProgress | None = None, **options: Any
) -> SearchResult:
    """Run (or resume) a search; the arguments mean what the CLI's options of the same name do
    (they are read by :func:`~edgenas.study.config_from_options`, as the CLI's are).

    ``out`` is the run directory. Limits (``max_latency``, ``max_memory``, ``max_size``,
    ``max_macs``, ``max_energy``) take numbers in ms / MB / MACs / mJ or strings with units
    (``"5ms"``, ``"2MB"``, ``"800uJ"``); ``max_energy`` limits the *estimated* energy per
    inference, whose coefficients ``energy`` sets (an :class:`~edgenas.cost.EnergyModel`, a dict
    or ``"pj_per_mac=150,pj_per_byte=50"``; default: a Cortex-A72-class CPU). ``space`` is a
    `SearchSpace` or a name for `load_space` (default ``"edge"``), narrowed by ``blocks``,
    ``kernels``, ``max_depth`` and ``resolutions``. ``time_budget`` takes seconds or a string
    with units (``"30m"``). Further keyword arguments are fields of
    :class:`~edgenas.study.SearchConfig` (``trials``, ``epochs``, ``strategy``, ``objective``,
    ``weights``, ``seed``, ...). ``progress`` receives the search's events as it runs.

    Example:
        >>> result = search("synthetic", max_latency="2ms", trials=8, epochs=1)  # doctest: +SKIP
        >>> [t.number for t in result.pareto]  # doctest: +SKIP
    """
    return run_search(config_from_options(data, **options), progress)
