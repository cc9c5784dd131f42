"""Warm starts: candidates a search enqueues before its strategy proposes any.

``baselines`` gives the registered hand-designed baselines; a run directory gives the Pareto
front of an earlier search (on other data, or for another device). Each is encoded in the
current space, so the strategy learns from it like from its own proposals; those the space
cannot hold are named in a warning and left out (``--baseline`` trains one regardless).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgenas._io import read_json
from edgenas.arch import BASELINES, Genotype, baseline
from edgenas.errors import ConfigError, EdgenasError
from edgenas.search import _records as R
from edgenas.space import SearchSpace

__all__ = ["WarmStart", "warm_start"]

log = logging.getLogger("edgenas.search")

BASELINES_SOURCE = "baselines"


@dataclass(frozen=True)
class WarmStart:
    """One candidate to enqueue: where it came from and its assignment in the current space."""

    label: str  # recorded on the trial, so a resumed run does not enqueue it again
    params: dict[str, Any]
    baseline: str | None = None  # the baseline label, for a registered baseline


def _resolutions(space: SearchSpace) -> list[int]:
    return [int(r) for r in getattr(space.distributions().get("res"), "choices", ())]


def _front_genotypes(source: str) -> list[tuple[int, str]]:
    """(trial number, genotype) of the Pareto front of the run ``source`` names."""
    path = Path(source)
    if not path.exists():
        raise ConfigError(
            f"--warm-start {source!r} is neither 'baselines' nor an existing run directory; give "
            "'baselines' or the directory an earlier edgenas search wrote (such as runs/synthetic)"
        )
    results_file = path if path.is_file() else path / "results.json"
    results = read_json(results_file)
    if isinstance(results, dict) and isinstance(results.get("pareto"), list):
        trials = {t.get("number"): t for t in results.get("trials", []) if isinstance(t, dict)}
        return [
            (int(n), str(trials[n]["genotype"]))
            for n in results["pareto"]
            if n in trials and trials[n].get("genotype")
        ]
    if path.is_dir() and ((path / "study.db").exists() or (path / "spec.json").exists()):
        from edgenas.search._runner import open_run_study

        front = R.pareto_front(R.records_from_study(open_run_study(path)))
        return [(r.number, r.genotype) for r in front if r.genotype]
    raise ConfigError(
        f"--warm-start {source!r} holds no search results (no readable results.json or "
        "study.db); give the directory an earlier edgenas search wrote, or 'baselines'"
    )


def warm_start(source: str, space: SearchSpace, baseline_resolution: int) -> list[WarmStart]:
    """The candidates ``source`` names (``baselines`` or a run directory), in the space.

    Raises:
        ConfigError: ``source`` is neither word nor run directory, or the directory holds no
            results.
    """
    text = str(source).strip()
    if not text:
        raise ConfigError("--warm-start needs 'baselines' or a run directory")
    out: list[WarmStart] = []
    misfits: list[str] = []
    if text.lower() == BASELINES_SOURCE:
        for name in BASELINES:
            label = f"{name}@r{baseline_resolution}"
            try:
                params = space.encode(baseline(name, resolution=baseline_resolution))
            except EdgenasError:
                misfits.append(label)
                continue
            out.append(WarmStart(label, params, baseline=label))
        if misfits:
            log.warning(
                "--warm-start baselines: left out, as they do not fit the search space: %s "
                "(--baseline NAME trains a baseline regardless)",
                ", ".join(misfits),
            )
        return out
    front = _front_genotypes(text)
    if not front:
        log.warning("--warm-start %s: that run has no Pareto front yet; nothing to enqueue", text)
        return out
    resolutions = _resolutions(space)
    name = Path(text).resolve().name if Path(text).is_dir() else Path(text).resolve().parent.name
    for number, notation in front:
        label = f"{name} trial {number}"
        try:
            genotype = Genotype.parse(notation)
            if resolutions and genotype.resolution not in resolutions:
                # Another data set may have searched other input sizes: the nearest one here.
                nearest = min(resolutions, key=lambda r: abs(r - genotype.resolution))
                genotype = genotype.replace(resolution=nearest)
            out.append(WarmStart(label, space.encode(genotype)))
        except EdgenasError:
            misfits.append(f"{label} ({notation})")
    if misfits:
        log.warning(
            "--warm-start %s: %d of the %d front members do not fit the search space and are "
            "left out: %s",
            text,
            len(misfits),
            len(front),
            "; ".join(misfits),
        )
    return out
