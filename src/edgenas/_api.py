"""``edgenas.search(...)``: the search from Python, with the CLI's vocabulary."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgenas.errors import ConfigError
from edgenas.study import SearchProgress, SearchResult, config_from_options, run_search

__all__ = ["search"]


def search(
    data: Any,
    *,
    progress: SearchProgress | None = None,
    class_names: Sequence[str] | None = None,
    **options: Any,
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
    ``weights``, ``seed``, ...). ``metric`` (``"balanced-accuracy"``, ``"macro-f1"``,
    ``"recall:CLASS"``; default ``"accuracy"``) is the validation score searched for, and
    ``class_weights="balanced"`` weighs rare classes more in training, as ``--metric`` and
    ``--class-weights`` do. ``progress`` receives the search's events as it runs.

    ``data`` is what the CLI takes (a folder, a CSV manifest, a built-in name), or images and
    labels from Python: a pair ``(images, labels)`` of arrays or tensors, or a torch
    ``Dataset`` of ``(image, label)`` pairs (see `edgenas.data.save_arrays`; ``class_names``
    names the class indices). They are saved once in the run directory's ``cache/`` as an
    array folder, which the search's worker processes and ``edgenas finalize`` map, and split
    and cached as a folder is; giving the same data again resumes the search.

    Example:
        >>> result = search("synthetic", max_latency="2ms", trials=8, epochs=1)  # doctest: +SKIP
        >>> [t.number for t in result.pareto]  # doctest: +SKIP
    """
    if not isinstance(data, (str, os.PathLike)):
        from edgenas.data import save_arrays

        out = Path(options.get("out") or Path("runs") / _data_name(data))
        options["out"] = out
        data = save_arrays(data, out / "cache", class_names=class_names, name=_data_name(data))
    elif class_names is not None:
        raise ConfigError(
            "class_names names the classes of images and labels given as arrays; a folder, "
            "manifest or built-in data set names its own"
        )
    return run_search(config_from_options(data, **options), progress)


def _data_name(data: Any) -> str:
    return "arrays" if isinstance(data, (tuple, list)) else type(data).__name__
