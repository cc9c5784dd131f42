"""Preparing a search: what its config names is read and checked against the run directory.

`SearchConfig` checks itself when it is made; what needs files (the device profile, a
warm-start run, the data, a spec already in the run directory) is read here, in the order
that names a mistake before the slow work: the profile and the warm start before the data,
the data before the run directory's spec.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgenas._io import read_json
from edgenas.arch import Genotype, baseline
from edgenas.cost import CostModel, LatencyPredictor
from edgenas.errors import ConfigError
from edgenas.space import SearchSpace
from edgenas.study._config import SearchConfig, SearchProgress
from edgenas.study._early_stop import EarlyStopping
from edgenas.study._fidelity import FidelitySchedule
from edgenas.study._objectives import Objective
from edgenas.study._reach import check_reachable
from edgenas.study._strategies import make_sampler
from edgenas.study._study import RunDir, check_spec, redact
from edgenas.study._training_space import TrainingSpace
from edgenas.study._warm import WarmStart, warm_start
from edgenas.train import Fidelity, TrainConfig, majority_baseline

if TYPE_CHECKING:
    from edgenas.data import ImageDataset

__all__ = ["SearchSetup", "prepare_search", "profile_identity", "same_machine"]

log = logging.getLogger("edgenas.search")


@dataclass(frozen=True)
class SearchSetup:
    """What a search works with, prepared once from its config."""

    config: SearchConfig
    objective: Objective
    schedule: FidelitySchedule
    fidelity: Fidelity
    train_config: TrainConfig  # the training of every candidate, unless training is searched
    space: SearchSpace  # the config's space, wrapped in a TrainingSpace when training is searched
    distributions: dict[str, Any]
    baselines: tuple[tuple[str, Genotype], ...]  # (name, genotype) of the --baseline options
    profile: dict[str, Any] | None  # the device profile latency is predicted from
    warm: tuple[WarmStart, ...]
    data: ImageDataset
    run: RunDir
    cost: CostModel
    stopping: EarlyStopping
    spec: dict[str, Any]  # recorded in the run directory's spec.json

    @property
    def searches_training(self) -> bool:
        return isinstance(self.space, TrainingSpace)

    @property
    def baseline_resolution(self) -> int:
        return baseline_resolution(self.distributions)


def baseline_resolution(distributions: dict[str, Any]) -> int:
    """The space's resolution closest to 96 (baselines are compared at the search's input)."""
    choices = list(getattr(distributions.get("res"), "choices", [96]))
    return int(min(choices, key=lambda r: abs(int(r) - 96)))


def load_device_profile(config: SearchConfig) -> dict[str, Any] | None:
    """The profile ``--device`` names, checked; warnings when it was made differently."""
    if config.device is None:
        return None
    from edgenas.profile import load_profile

    text = str(config.device)
    profile = load_profile(Path(text), threads=None)
    if config.latency_threads != 1 and config.latency_threads != profile["threads"]:
        log.warning(
            "--latency-threads %d is ignored: latency is predicted for the %d thread(s) the "
            "profile %s was timed with",
            config.latency_threads,
            profile["threads"],
            text,
        )
    return profile


def same_machine(profile: dict[str, Any] | None) -> bool:
    """Whether the profile was timed on this machine, with this runtime."""
    from edgenas.device import device_info

    if not profile:
        return True
    here = device_info()
    return (
        profile.get("device", {}).get("cpu") == here["device"]["cpu"]
        and profile.get("device", {}).get("cores") == here["device"]["cores"]
        and profile.get("runtime", {}).get("version") == here["runtime"]["version"]
    )


def profile_identity(profile: dict[str, Any]) -> dict[str, Any]:
    """What tells one device profile from another, as spec.json and results.json record it."""
    return {
        "device": profile.get("device", {}).get("name"),
        "plan": profile.get("plan", {}).get("sha256"),
        "threads": profile.get("threads"),
    }


def prepare_search(config: SearchConfig, progress: SearchProgress) -> SearchSetup:
    """Read what ``config`` names, build the cost model and record the spec in the run
    directory.

    Raises:
        ConfigError: a file the config names is missing or wrong, or the run directory holds
            a search with other settings.
    """
    from edgenas.data import load_dataset

    objective = config.parsed_objective()
    fidelity = Fidelity(epochs=config.epochs, data_fraction=config.data_fraction)
    schedule = config.parsed_schedule()
    if schedule.active and not schedule.rungs(0):
        log.warning(
            "--fidelity-schedule %s has no rung below --epochs %d (the first is at epoch "
            "%d): every candidate trains all epochs; raise --epochs",
            schedule.kind,
            config.epochs,
            schedule.min_epochs,
        )
    baselines = tuple((name, baseline(name)) for name in config.baselines)
    profile = load_device_profile(config)  # a bad profile is named before data loads
    train_config = TrainConfig(
        batch_size=config.batch_size, threads=config.threads, device=config.train_device,
        metric=config.metric, class_weights=config.class_weights,
    )  # fmt: skip
    space: SearchSpace = (
        TrainingSpace(config.space, train_config)
        if config.search_training and not isinstance(config.space, TrainingSpace)
        else config.space
    )
    distributions = space.distributions()
    # Nothing is written in the run directory before every setting is known to work: a
    # strategy that cannot search this space (grid over a large one) is named now, not once
    # the study exists, and so is a supernet that is not there.
    try:
        make_sampler(config.strategy, space, config.seed, objective.multi)
    except ConfigError as exc:
        raise ConfigError(f"--strategy {config.strategy}: {exc}") from None
    supernet = Path(str(config.supernet)) if config.supernet is not None else None
    if supernet is not None and not supernet.is_file():
        what = "is a folder, not a file" if supernet.is_dir() else "does not exist"
        raise ConfigError(
            f"--supernet {supernet} {what}; give the supernet.pt of an earlier one-shot search"
        )
    # A bad warm-start source is named before the data loads.
    warm = (
        warm_start(str(config.warm_start), space, baseline_resolution(distributions))
        if config.warm_start is not None
        else []
    )
    progress.on_phase(f"loading data {config.data}")
    run = RunDir(config.run_dir(Path(str(config.data)).stem if config.data else "run"))
    data = load_dataset(
        config.data,
        cache_dir=run.cache,
        seed=config.seed,
        val_fraction=config.val_fraction,
        holdout_fraction=config.holdout_fraction,
        augment=config.augment,
        resize=config.resize,
    )
    # recall:CLASS names a class of the data, known only now.
    config.parsed_metric().check_classes(data.class_names)
    cost = _cost_model(config, profile, data, run)
    # A limit no architecture meets stops here, before the run directory records anything.
    check_reachable(space, config.constraints, cost, seed=config.seed)
    stopping = EarlyStopping(
        enabled=config.early_stopping and config.epochs > 1 and not schedule.active,
        cost_aware=objective.multi or objective.kind == "weighted",
        cost_fields=("latency_ms", "size_mb") + (("energy_mj",) if objective.uses_energy else ()),
    )
    spec = _spec(config, objective, space, data, cost, profile)
    _warn_data_settings_changed(run, spec)
    check_spec(run, spec)
    return SearchSetup(
        config=config,
        objective=objective,
        schedule=schedule,
        fidelity=fidelity,
        train_config=train_config,
        space=space,
        distributions=distributions,
        baselines=baselines,
        profile=profile,
        warm=tuple(warm),
        data=data,
        run=run,
        cost=cost,
        stopping=stopping,
        spec=spec,
    )


def _cost_model(
    config: SearchConfig, profile: dict[str, Any] | None, data: ImageDataset, run: RunDir
) -> CostModel:
    cost = CostModel(
        data.channels,
        data.num_classes,
        threads=int(profile["threads"]) if profile else config.latency_threads,
        cache_file=run.latency_cache,
        energy=config.energy,
        profile=profile,
        predictor=(LatencyPredictor(profile, data.channels, data.num_classes) if profile else None),
    )
    predictor = cost.predictor
    if predictor is not None and len(predictor.references) < 3:
        plan = profile.get("plan", {}) if profile else {}
        log.warning(
            "the profile's reference networks were planned for %s channel(s) and %s "
            "classes, the data has %d and %d: predictions are not calibrated. Plan and time "
            "again with `edgenas profile plan --channels %d --classes %d`",
            plan.get("in_channels"),
            plan.get("num_classes"),
            data.channels,
            data.num_classes,
            data.channels,
            data.num_classes,
        )
    return cost


def _warn_data_settings_changed(run: RunDir, spec: dict[str, Any]) -> None:
    """Name a resumed run's change of augmentation or resizing: recorded, not compared, so the
    run resumes, but its earlier trials trained on other inputs."""
    old = read_json(run.spec)
    if not isinstance(old, dict):
        return
    for key in ("augment", "resize"):
        if key in old and old[key] != spec[key]:
            log.warning(
                "--%s: %s trained its earlier trials with %s, the new ones train with %s; "
                "their accuracies are compared as they are",
                key,
                run.root,
                _setting(old[key]),
                _setting(spec[key]),
            )


def _setting(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value)) or "none"
    return str(value)


def _majority(config: SearchConfig, data: ImageDataset) -> dict[str, Any]:
    """The majority-class baseline of the validation and holdout splits, by the metric."""
    labels = np.asarray(data.labels)
    metric = config.parsed_metric()
    return {
        split: majority_baseline(labels[index], data.class_names, metric)
        for split, index in (("validation", data.splits.val), ("holdout", data.splits.holdout))
        if len(index)
    }


def _spec(
    config: SearchConfig,
    objective: Objective,
    space: SearchSpace,
    data: ImageDataset,
    cost: CostModel,
    profile: dict[str, Any] | None,
) -> dict[str, Any]:
    """The run's settings as spec.json records them."""
    return {
        "data": str(config.data),
        "data_fingerprint": data.fingerprint(),
        "classes": list(data.class_names),
        "space": space.describe(),
        "constraints": config.constraints.to_dict(),
        "objective": {"kind": objective.kind, "weights": objective.weights},
        # What a trial's score is and how classes weigh in training (compared on resume; a
        # run from before they were recorded scored top-1 accuracy, unweighted).
        "metric": config.parsed_metric().name,
        "class_weights": config.class_weights,
        # What always answering the most frequent class scores (recorded, not compared).
        "majority_baseline": _majority(config, data),
        "epochs": config.epochs,
        "data_fraction": config.data_fraction,
        # Recorded so that finalize reproduces the split and the recipe (not compared on
        # resume: runs from before they were recorded still resume).
        "val_fraction": config.val_fraction,
        "holdout_fraction": config.holdout_fraction,
        # What the data allowed and how it was made square, in effect (recorded, not compared;
        # a run without them augmented as its data's default and squashed).
        "augment": list(data.augment),
        "resize": data.resize,
        "batch_size": config.batch_size,
        "strategy": config.strategy,
        "seed": config.seed,
        "latency": {"runtime": "onnxruntime", "threads": cost.threads, "batch": 1},
        # Only with a profile, so runs from before profiles existed still resume.
        "latency_profile": profile_identity(profile) if profile else None,
        # Only where energy decides something, so runs from before it existed still resume.
        "energy": config.energy.to_dict()
        if objective.uses_energy or config.constraints.max_energy_mj is not None
        else None,
        # Only when searched, so runs from before it existed still resume.
        "search_training": isinstance(space, TrainingSpace) or None,
        # Recorded, not compared: they change how candidates are chosen and stopped, not
        # what a finished trial's numbers mean.
        "fidelity_schedule": str(config.fidelity_schedule),
        "warm_start": None if config.warm_start is None else str(config.warm_start),
        "stop_when_stable": config.stop_when_stable,
        # Where the study lives when not in study.db (without a password).
        "storage": None if config.storage is None else redact(config.storage),
    }
