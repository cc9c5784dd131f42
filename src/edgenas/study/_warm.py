"""Warm starts: candidates a search enqueues before its strategy proposes any.

``baselines`` gives the registered hand-designed baselines; a run directory gives the Pareto
front of an earlier search (on other data, or for another device). Each is encoded in the
current space, so the strategy learns from it like from its own proposals; those the space
cannot hold are named in a warning and left out (``--baseline`` trains one regardless).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from edgenas._io import read_json
from edgenas.arch import BASELINES, Genotype, baseline
from edgenas.errors import ConfigError, EdgenasError
from edgenas.space import SearchSpace
from edgenas.study import _records as R
from edgenas.study._study import RunDir, open_run_study

__all__ = ["WarmStart", "queue_baselines", "queue_warm_start", "warm_start"]

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
    run = RunDir(path)
    results_file = path if path.is_file() else run.results
    results = read_json(results_file)
    if isinstance(results, dict) and isinstance(results.get("pareto"), list):
        trials = {t.get("number"): t for t in results.get("trials", []) if isinstance(t, dict)}
        return [
            (int(n), str(trials[n]["genotype"]))
            for n in results["pareto"]
            if n in trials and trials[n].get("genotype")
        ]
    if path.is_dir() and (run.study_db.exists() or run.spec.exists()):
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


def queue_warm_start(study: optuna.Study, warm: Sequence[WarmStart]) -> int:
    """Enqueue the warm-start candidates no trial holds yet (so a resumed run adds none);
    returns how many."""
    trials = study.get_trials(deepcopy=False)
    done = {t.user_attrs.get(R.ATTR_WARM_START) for t in trials} | {
        t.user_attrs.get(R.ATTR_BASELINE) for t in trials if t.state != TrialState.FAIL
    }
    queued = 0
    for w in warm:
        if w.label in done or (w.baseline is not None and w.baseline in done):
            continue
        attrs = {R.ATTR_WARM_START: w.label}
        if w.baseline is not None:
            attrs[R.ATTR_BASELINE] = w.baseline
        study.enqueue_trial(w.params, user_attrs=attrs)
        queued += 1
    return queued


def queue_baselines(
    study: optuna.Study,
    space: SearchSpace,
    baselines: Sequence[tuple[str, Genotype]],
    resolution: int,
) -> list[tuple[str, Genotype]]:
    """Queue the baselines (name, genotype) not evaluated yet, at ``resolution``; return
    (label, genotype) of those the space cannot express.

    A baseline the space contains is enqueued with its parameters, so the strategy learns
    from it. One outside the space (another width, other stages) is still trained and
    recorded, as a trial without parameters that strategies ignore.
    """
    trials = study.get_trials(deepcopy=False)
    done = {t.user_attrs.get(R.ATTR_BASELINE) for t in trials if t.state != TrialState.FAIL}
    outside = []
    for name, g in baselines:
        g = g.replace(resolution=resolution)
        label = f"{name}@r{resolution}"
        if label in done:
            continue
        try:
            params = space.encode(g)
        except EdgenasError:
            outside.append((label, g))
            continue
        study.enqueue_trial(params, user_attrs={R.ATTR_BASELINE: label})
    return outside
