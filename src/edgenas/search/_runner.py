"""The search loop: ask → decode → estimate → (train) → tell, with budgets and resumption.

The runner is the single writer of the study. Everything it learns goes into the study (trial
user attributes) before anything else is written, so a crash at any moment loses at most the
candidate being trained, which the next run trains again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import optuna
import torch
from optuna.trial import TrialState

from edgenas._io import read_json, write_json
from edgenas.arch import Genotype, baseline, build_model, export_onnx
from edgenas.cost import Constraints, CostModel, Costs, EnergyModel, LatencyPredictor
from edgenas.errors import ConfigError, EdgenasError
from edgenas.search import _records as R
from edgenas.search._driver import ATTR_DRIVER, ATTR_HEARTBEAT, Driver, Heartbeat, abandoned
from edgenas.search._early_stop import EarlyStopping, EpochCurve
from edgenas.search._fidelity import FidelitySchedule, RungEntry
from edgenas.search._frontier import hypervolume_2d, stable_for
from edgenas.search._objectives import Objective
from edgenas.search._strategies import Check, make_sampler
from edgenas.search._training_space import TrainingSpace
from edgenas.search._warm import WarmStart, warm_start
from edgenas.space import SearchSpace, edge_space
from edgenas.train import Fidelity, TrainConfig, TrainResult, evaluate, fit

__all__ = ["SearchConfig", "SearchProgress", "SearchResult", "open_study", "run_search"]

log = logging.getLogger("edgenas.search")

STUDY_NAME = "edgenas"
SPEC_FILE = "spec.json"
RESULTS_FILE = "results.json"
BEST_ONNX = "best.onnx"
# Settings that change what a trial's numbers mean: a resumed run must keep them.
# (The data is compared by its fingerprint, so ./parts and parts are the same data.)
_SPEC_KEYS = ("data_fingerprint", "space", "constraints", "objective", "epochs", "data_fraction",
              "energy", "latency_profile", "search_training")  # fmt: skip


@dataclass
class SearchConfig:
    """Everything one search needs; the CLI fills it from its options."""

    data: str  # a folder, a CSV manifest, or a built-in: elpv, elpv4, synthetic
    out: Path | None = None  # run directory; default runs/<data name>
    space: SearchSpace = field(default_factory=edge_space)
    constraints: Constraints = field(default_factory=Constraints)
    objective: str = "accuracy"  # accuracy, pareto or weighted
    weights: dict[str, float] | None = None  # for the weighted objective
    strategy: str = "tpe"
    trials: int = 20  # candidates to train (rejected candidates cost no training, not counted)
    time_budget_s: float | None = None  # no new candidate is started after this
    epochs: int = 3  # training epochs per candidate
    data_fraction: float = 1.0  # share of the training split each candidate trains on
    seed: int = 0
    threads: int | None = None  # CPU threads for training; None: all cores
    latency_threads: int = 1  # ONNX Runtime threads when measuring latency
    energy: EnergyModel = field(default_factory=EnergyModel)  # coefficients of the estimate
    batch_size: int = 64
    train_device: str = "auto"  # training device: auto (CUDA when present), cpu, cuda
    # A device profile (edgenas-device): latency is predicted from it instead of measured here;
    # only the final Pareto front and the best are measured (here) at the end.
    device: Path | str | None = None
    baselines: tuple[str, ...] = ()  # baseline genotypes evaluated first (such as mobilenetv2:0.5)
    early_stopping: bool = True
    # Multi-fidelity: "none" (the early-stopping rule above), "sh" (asynchronous successive
    # halving over epochs) or "hyperband"; options as in "sh:eta=2,min_epochs=1".
    fidelity_schedule: str = "none"
    # "baselines", or an earlier run directory whose Pareto front is enqueued first.
    warm_start: str | Path | None = None
    # End once the front's hypervolume (best score, for one objective) has not improved for
    # this many trainings; None: never.
    stop_when_stable: int | None = None
    # Search learning rate, batch size, optimiser, weight decay and augmentation too (train.*).
    search_training: bool = False
    max_rejected: int | None = None  # proposals rejected by the constraints before giving up
    val_fraction: float = 0.15
    holdout_fraction: float = 0.15
    # Any SQLAlchemy URL (such as postgresql+psycopg://host/db) to keep the study in, so that
    # several searches or a dashboard share it; None: the run directory's study.db.
    storage: str | None = None
    # Trainings at once, each in its own process; the cores are shared out among them.
    workers: int = 1
    # Where trainings run: "local" (this process, or --workers processes) or "ray".
    executor: str = "local"
    # With executor "ray": a running cluster ("auto" for one `ray start` made here, or
    # HOST:PORT); None starts a Ray instance on this machine for the search.
    address: str | None = None

    def run_dir(self, data_name: str) -> Path:
        return Path(self.out) if self.out else Path("runs") / data_name


class SearchProgress(Protocol):
    """Receives what happens, for a live view or a log; every method is optional to act on."""

    def on_start(self, info: dict[str, Any]) -> None: ...
    def on_phase(self, text: str) -> None: ...
    def on_trial_start(self, number: int, genotype: str, costs: Costs) -> None: ...
    def on_epoch(self, number: int, epoch: int, epochs: int, accuracy: float) -> None: ...
    def on_trial_end(self, record: R.TrialRecord, records: list[R.TrialRecord]) -> None: ...


class _DirectTrial:
    """A candidate evaluated outside the sampler (a baseline the space cannot express).

    It collects what a trial would record and enters the study only when finished, through
    ``Study.add_trial``; a crash before that simply means evaluating it again.
    """

    def __init__(self, number: int, label: str) -> None:
        self.number = number
        self.params: dict[str, Any] = {}
        self.user_attrs: dict[str, Any] = {R.ATTR_BASELINE: label}

    def set_user_attr(self, key: str, value: Any) -> None:
        self.user_attrs[key] = value

    def set_constraint(self, key: str, value: float) -> None:
        pass  # strategies ignore trials without parameters; violations are in user_attrs

    def report(self, value: float, step: int) -> None:
        pass


class _Silent:
    def on_start(self, info: dict[str, Any]) -> None:
        pass

    def on_phase(self, text: str) -> None:
        pass

    def on_trial_start(self, number: int, genotype: str, costs: Costs) -> None:
        pass

    def on_epoch(self, number: int, epoch: int, epochs: int, accuracy: float) -> None:
        pass

    def on_trial_end(self, record: R.TrialRecord, records: list[R.TrialRecord]) -> None:
        pass


@dataclass(frozen=True)
class SearchResult:
    """What a search found: every trial, the Pareto front and the best, read from the study."""

    run_dir: Path
    trials: list[R.TrialRecord]
    pareto: list[R.TrialRecord]
    best: R.TrialRecord | None
    best_details: dict[str, Any] | None
    results: dict[str, Any]
    stopped_because: str

    @property
    def best_onnx(self) -> Path | None:
        path = self.run_dir / BEST_ONNX
        return path if self.best and path.exists() else None


def _storage_url(run_dir: Path) -> str:
    return f"sqlite:///{(run_dir / 'study.db').resolve()}"


def redact(url: str) -> str:
    """A database URL without its password, fit to print and to record."""
    import sqlalchemy

    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<a URL that does not parse>"


def open_study(
    run_dir: Path, directions: list[Any] | None = None, storage: str | None = None
) -> optuna.Study:
    """Open (or create, when ``directions`` are given) the study of a run directory: in its
    ``study.db``, or in ``storage`` (any SQLAlchemy URL) under the run directory's name.

    Raises:
        ConfigError: the database's driver is not installed, the URL is not one, the server
            cannot be reached, or the database is locked.
    """
    import sqlalchemy.exc

    url = storage or _storage_url(run_dir)
    name = STUDY_NAME if storage is None else f"{STUDY_NAME}:{Path(run_dir).resolve().name}"
    shown = "the run's study.db" if storage is None else f"--storage {redact(url)}"
    sqlite = url.startswith("sqlite")
    kwargs: dict[str, Any] = (
        {"connect_args": {"timeout": 60}} if sqlite else {"pool_pre_ping": True}
    )
    try:
        rdb = optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        if directions is None:
            return optuna.load_study(study_name=name, storage=rdb)
        return optuna.create_study(
            study_name=name, storage=rdb, directions=directions, load_if_exists=True
        )
    except ModuleNotFoundError as exc:
        extra = " (pip install 'edgenas[postgres]')" if url.startswith("postgres") else ""
        raise ConfigError(
            f"{shown}: its database driver {exc.name!r} is not installed{extra}"
        ) from None
    except sqlalchemy.exc.NoSuchModuleError:
        raise ConfigError(
            f"{shown}: SQLAlchemy has no driver for it installed; install the driver the URL "
            "names (for PostgreSQL: pip install 'edgenas[postgres]')"
        ) from None
    except sqlalchemy.exc.ArgumentError:
        raise ConfigError(
            f"{shown} is not a database URL; write one such as "
            "postgresql+psycopg://user@host:5432/edgenas"
        ) from None
    except sqlalchemy.exc.OperationalError as exc:
        first = str(exc.orig or exc).strip().splitlines()[0] if str(exc) else type(exc).__name__
        if "locked" in first:
            raise ConfigError(
                f"{shown} is locked by another process ({first}); wait for it, or give "
                "several searches a server database with --storage"
            ) from None
        raise ConfigError(
            f"cannot reach the study database {shown} ({first}): check that the server runs "
            "(or the file's folder exists) and the URL; a password goes in PGPASSWORD or "
            "~/.pgpass rather than the URL"
        ) from None


def open_run_study(run_dir: Path) -> optuna.Study:
    """The study of an existing run directory, wherever its spec.json says it is stored."""
    spec = read_json(Path(run_dir) / SPEC_FILE)
    storage = spec.get("storage") if isinstance(spec, dict) else None
    if storage is None and not (Path(run_dir) / "study.db").exists():
        raise ConfigError(
            f"{run_dir} holds no search (no study.db); give the directory a search wrote, "
            "such as runs/synthetic"
        )
    return open_study(Path(run_dir), storage=storage)


def _check_spec(run_dir: Path, spec: dict[str, Any]) -> None:
    path = run_dir / SPEC_FILE
    old = read_json(path)
    changed = [k for k in _SPEC_KEYS if old.get(k) != spec.get(k)] if isinstance(old, dict) else []
    if changed:
        raise ConfigError(
            f"{run_dir} holds a search with other settings ({', '.join(changed)} "
            "differ), so its trials cannot be compared with new ones. Re-run with the "
            "same settings to resume it, or choose another run directory with --out."
        )
    write_json(path, spec, indent=2)


def _load_device_profile(config: SearchConfig) -> dict[str, Any] | None:
    """The profile ``--device`` names, checked; warnings when it was made differently."""
    if config.device is None:
        return None
    from edgenas.profile import load_profile

    text = str(config.device)
    if text in ("auto", "cpu", "cuda") or text.startswith("cuda:"):
        raise ConfigError(
            f"device {text!r} is a training device; --device (device= in Python) takes a "
            "device profile such as pi4.json. Choose the training device with --train-device "
            "(train_device=)."
        )
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


def _same_machine(profile: dict[str, Any] | None) -> bool:
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


def _profile_identity(profile: dict[str, Any]) -> dict[str, Any]:
    return {
        "device": profile.get("device", {}).get("name"),
        "plan": profile.get("plan", {}).get("sha256"),
        "threads": profile.get("threads"),
    }


def _trial_seed(seed: int, number: int) -> int:
    digest = hashlib.sha256(f"{seed}:{number}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def _carried(attrs: dict[str, Any]) -> dict[str, Any]:
    """What a trial queued to run again keeps of the interrupted one: where it came from."""
    return {k: attrs[k] for k in (R.ATTR_BASELINE, R.ATTR_WARM_START) if k in attrs}


def _identity(genotype: str, params: dict[str, Any]) -> str:
    """What makes two candidates the same: the architecture, and the training when searched."""
    training = TrainingSpace.training(params)
    return f"{genotype} {json.dumps(training, sort_keys=True)}" if training else genotype


def _training_dict(config: TrainConfig) -> dict[str, Any]:
    """The training settings a candidate was trained with, as recorded on its trial."""
    return {
        "optimizer": config.optimizer,
        "lr": config.lr,
        "batch_size": config.batch_size,
        "weight_decay": config.weight_decay,
        "augment_strength": config.augment_strength if config.augment else 0.0,
    }


def _spent(records: list[R.TrialRecord]) -> int:
    """Trainings the budget counts: every training that ended (failures included), and those
    under way in other search processes on the study, but not an interrupted one, which is
    queued to run again and counts when it does."""
    return sum(
        r.state == "running"
        or (r.trained and not (r.state == "failed" and r.reason == R.INTERRUPTED))
        for r in records
    )


@dataclass
class _Job:
    """One training the runner decided on: what to train, and what the verdict needs."""

    trial: Any  # optuna.Trial or _DirectTrial
    genotype: Genotype
    identity: str
    costs: Costs
    train_config: TrainConfig
    bracket: int
    seed: int


# A candidate whose worker process dies this many times is recorded as failed.
MAX_LOST = 3
# How long a process may take between asking for a trial and recording itself on it.
RECORD_GRACE_S = 2.0


def _model_path(run_dir: Path, number: int) -> Path:
    return run_dir / "trials" / f"{number:05d}" / "model.pt"


class _Search:
    def __init__(self, config: SearchConfig, progress: SearchProgress) -> None:
        from edgenas.data import load_dataset

        self.config = config
        self.progress = progress
        self.objective = Objective(config.objective, config.weights or {}, config.constraints)
        if config.trials < 1:
            raise ConfigError(f"--trials must be at least 1, got {config.trials}")
        if config.epochs < 1:
            raise ConfigError(f"--epochs must be at least 1, got {config.epochs}")
        if not 0 < config.data_fraction <= 1:
            raise ConfigError(f"--data-fraction must be within (0, 1], got {config.data_fraction}")
        self.fidelity = Fidelity(epochs=config.epochs, data_fraction=config.data_fraction)
        self.schedule = FidelitySchedule.parse(config.fidelity_schedule, config.epochs)
        if self.schedule.active and not config.early_stopping:
            raise ConfigError(
                f"--no-early-stop trains every candidate fully, which --fidelity-schedule "
                f"{self.schedule.kind} exists to avoid: drop one of the two"
            )
        if self.schedule.active and not self.schedule.rungs(0):
            log.warning(
                "--fidelity-schedule %s has no rung below --epochs %d (the first is at epoch "
                "%d): every candidate trains all epochs; raise --epochs",
                self.schedule.kind,
                config.epochs,
                self.schedule.min_epochs,
            )
        if config.stop_when_stable is not None and (
            isinstance(config.stop_when_stable, bool)
            or not isinstance(config.stop_when_stable, int)
            or config.stop_when_stable < 1
        ):
            raise ConfigError(
                f"--stop-when-stable must be a whole number of trainings >= 1, got "
                f"{config.stop_when_stable!r}"
            )
        if (
            isinstance(config.workers, bool)
            or not isinstance(config.workers, int)
            or (config.workers < 1)
        ):
            raise ConfigError(f"--workers must be a whole number >= 1, got {config.workers!r}")
        if config.executor not in ("local", "ray"):
            raise ConfigError(f"--executor takes local or ray, got {config.executor!r}")
        if config.address is not None and config.executor != "ray":
            raise ConfigError("--address names a Ray cluster: add --executor ray")
        self.driver = Driver.this()
        self.executor: Any = None  # a pool of training processes with --workers > 1
        self.baselines = [baseline(b) for b in config.baselines]  # check names before any work
        self.profile = _load_device_profile(config)  # a bad profile is named before data loads
        self.train_config = TrainConfig(
            batch_size=config.batch_size, threads=config.threads, device=config.train_device
        )
        self.space: SearchSpace = (
            TrainingSpace(config.space, self.train_config)
            if config.search_training and not isinstance(config.space, TrainingSpace)
            else config.space
        )
        self.distributions = self.space.distributions()
        # A bad warm-start source is named before the data loads.
        self.warm: list[WarmStart] = (
            warm_start(str(config.warm_start), self.space, self._baseline_resolution())
            if config.warm_start is not None
            else []
        )
        progress.on_phase(f"loading data {config.data}")
        name_hint = Path(str(config.data)).stem if config.data else "run"
        provisional = config.run_dir(name_hint)
        self.data = load_dataset(
            config.data,
            cache_dir=provisional / "cache",
            seed=config.seed,
            val_fraction=config.val_fraction,
            holdout_fraction=config.holdout_fraction,
        )
        self.run_dir = provisional
        self.cost = CostModel(
            self.data.channels,
            self.data.num_classes,
            threads=int(self.profile["threads"]) if self.profile else config.latency_threads,
            cache_file=self.run_dir / "latency_cache.json",
            energy=config.energy,
            profile=self.profile,
            predictor=(
                LatencyPredictor(self.profile, self.data.channels, self.data.num_classes)
                if self.profile
                else None
            ),
        )
        predictor = self.cost.predictor
        if predictor is not None and len(predictor.references) < 3:
            plan = self.profile.get("plan", {}) if self.profile else {}
            log.warning(
                "the profile's reference networks were planned for %s channel(s) and %s "
                "classes, the data has %d and %d: predictions are not calibrated. Plan and time "
                "again with `edgenas profile plan --channels %d --classes %d`",
                plan.get("in_channels"),
                plan.get("num_classes"),
                self.data.channels,
                self.data.num_classes,
                self.data.channels,
                self.data.num_classes,
            )
        self.stopping = EarlyStopping(
            enabled=config.early_stopping and config.epochs > 1 and not self.schedule.active,
            cost_aware=self.objective.multi or self.objective.kind == "weighted",
            cost_fields=("latency_ms", "size_mb")
            + (("energy_mj",) if self.objective.uses_energy else ()),
        )
        self.spec: dict[str, Any] = {
            "data": str(config.data),
            "data_fingerprint": self.data.fingerprint(),
            "classes": list(self.data.class_names),
            "space": self.space.describe(),
            "constraints": config.constraints.to_dict(),
            "objective": {"kind": self.objective.kind, "weights": self.objective.weights},
            "epochs": config.epochs,
            "data_fraction": config.data_fraction,
            # Recorded so that finalize reproduces the split and the recipe (not compared on
            # resume: runs from before they were recorded still resume).
            "val_fraction": config.val_fraction,
            "holdout_fraction": config.holdout_fraction,
            "batch_size": config.batch_size,
            "strategy": config.strategy,
            "seed": config.seed,
            "latency": {"runtime": "onnxruntime", "threads": self.cost.threads, "batch": 1},
            # Only with a profile, so runs from before profiles existed still resume.
            "latency_profile": _profile_identity(self.profile) if self.profile else None,
            # Only where energy decides something, so runs from before it existed still resume.
            "energy": config.energy.to_dict()
            if self.objective.uses_energy or config.constraints.max_energy_mj is not None
            else None,
            # Only when searched, so runs from before it existed still resume.
            "search_training": isinstance(self.space, TrainingSpace) or None,
            # Recorded, not compared: they change how candidates are chosen and stopped, not
            # what a finished trial's numbers mean.
            "fidelity_schedule": str(config.fidelity_schedule),
            "warm_start": None if config.warm_start is None else str(config.warm_start),
            "stop_when_stable": config.stop_when_stable,
            # Where the study lives when not in study.db (without a password).
            "storage": None if config.storage is None else redact(config.storage),
        }
        _check_spec(self.run_dir, self.spec)
        self.study = open_study(self.run_dir, self.objective.directions, config.storage)
        self.hv_reference: float | None = None
        self._resume_front([])
        previous = len(self.study.get_trials(deepcopy=False))
        # A sampler restarted with the seed it had would propose the same first candidates
        # again; offsetting by the trials already told keeps a resumed search moving forward.
        self.study.sampler = make_sampler(
            config.strategy,
            self.space,
            config.seed + 7919 * previous,
            self.objective.multi,
            check=self._check,
            # Checks predict (a profile, or no latency needed) unless latency is measured here.
            cheap_check=self.cost.predictor is not None
            or (config.constraints.max_latency_ms is None and not self.objective.uses_latency),
        )

    def _check(self, params: Mapping[str, Any]) -> Check:
        """What a strategy may know of an assignment before training: whether its predicted
        (or already measured) costs meet the constraints, and its latency."""
        limits = self.config.constraints
        genotype = self.space.decode(params)
        analytic = self.cost.analytic(genotype)  # microseconds; latency may take a measurement
        if any(v > 0 for v in limits.violations(replace(analytic, latency_ms=0.0)).values()):
            return Check(False, math.nan)
        if limits.max_latency_ms is None and not self.objective.uses_latency:
            return Check(True, math.nan)
        latency = self.cost.latency_ms(genotype, limit_ms=limits.max_latency_ms)
        return Check(limits.max_latency_ms is None or latency <= limits.max_latency_ms, latency)

    # -- bookkeeping ----------------------------------------------------------------------
    def _records(self) -> list[R.TrialRecord]:
        return R.records_from_study(self.study)

    def _rank_point(self, accuracy: float, costs: Costs) -> tuple[float, ...]:
        """The values told to the study, each turned to "higher is better"."""
        values = self.objective.values(accuracy, costs)
        return tuple(
            v if d == optuna.study.StudyDirection.MAXIMIZE else -v
            for v, d in zip(values, self.objective.directions, strict=True)
        )

    @property
    def _measure_name(self) -> str:
        if self.objective.multi:
            return "hypervolume"
        return "best score" if self.objective.kind == "weighted" else "best accuracy"

    def _resume_front(self, records: list[R.TrialRecord]) -> None:
        """What the fidelity schedule and the front's measure know of earlier trainings."""
        self.front_history = [r.hypervolume for r in records if r.hypervolume is not None]
        self.finished = [
            (r.accuracy, r.costs)
            for r in records
            if r.state == "complete" and r.trained and r.feasible and r.accuracy is not None
            and r.costs is not None
        ]  # fmt: skip
        self.slowest_ms = max((r.costs.latency_ms for r in records if r.costs), default=0.0)
        self.rung_entries = [
            RungEntry(tuple(self._rank_point(a, r.costs) for a in r.history), r.bracket or 0)
            for r in records
            if r.trained and r.state in ("complete", "pruned") and r.costs and r.history
        ]
        self.bracket_ordinal = sum(r.bracket is not None for r in records)

    def _reference_ms(self) -> float | None:
        """The hypervolume's reference latency: fixed the first time a front needs it."""
        if self.hv_reference is None:
            stored = self.study.user_attrs.get(R.STUDY_HV_REFERENCE)
            limit = self.config.constraints.max_latency_ms
            reference = stored or limit or (1.1 * self.slowest_ms if self.slowest_ms else None)
            if reference and stored is None:
                self.study.set_user_attr(R.STUDY_HV_REFERENCE, reference)
            self.hv_reference = reference
        return self.hv_reference

    def _front_measure(self) -> float:
        """The hypervolume of the front (Pareto searches) or the best score so far."""
        if not self.finished:
            return 0.0
        if self.objective.multi:
            reference = self._reference_ms()
            points = [(a, c.latency_ms) for a, c in self.finished]
            return hypervolume_2d(points, reference) if reference else 0.0
        return max(self.objective.score(a, c) for a, c in self.finished)

    def _note_training(
        self,
        trial: optuna.Trial | _DirectTrial,
        accuracy: float | None = None,
        costs: Costs | None = None,
    ) -> None:
        """Record the front's measure after a training, on its trial (before it is told, after
        which the trial cannot change), so a resumed run goes on counting."""
        if accuracy is not None and costs is not None:
            self.finished.append((accuracy, costs))
        value = self._front_measure()
        trial.set_user_attr(R.ATTR_HYPERVOLUME, value)
        self.front_history.append(value)

    def _recover_interrupted(self) -> int:
        """Trials left RUNNING by a killed process: mark failed and queue them again (see
        `_driver` for how a dead process is told from a live one)."""
        trials = self.study.get_trials(deepcopy=False)
        if any(t.state == TrialState.RUNNING and ATTR_DRIVER not in t.user_attrs for t in trials):
            # Another process may have just asked for it and not yet recorded itself.
            time.sleep(RECORD_GRACE_S)
            trials = self.study.get_trials(deepcopy=False)
        queued = {
            t.user_attrs.get(R.ATTR_RETRY_OF) for t in trials if t.state == TrialState.WAITING
        }
        n = 0
        for t in trials:
            # Another live search process may be running it: leave it to that one.
            if t.state != TrialState.RUNNING or not abandoned(t.user_attrs):
                continue
            if t.number not in queued and t.params:
                attrs = {R.ATTR_RETRY_OF: t.number, **_carried(t.user_attrs)}
                self.study.enqueue_trial(t.params, user_attrs=attrs)
            self.study._storage.set_trial_user_attr(t._trial_id, R.ATTR_REASON, R.INTERRUPTED)
            self.study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
            n += 1
        return n

    def _queue_baselines(self) -> list[tuple[str, Genotype]]:
        """Queue the baselines not evaluated yet; return those the space cannot express.

        A baseline the space contains is enqueued with its parameters, so the strategy learns
        from it. One outside the space (another width, other stages) is still trained and
        recorded, as a trial without parameters that strategies ignore.
        """
        trials = self.study.get_trials(deepcopy=False)
        done = {t.user_attrs.get(R.ATTR_BASELINE) for t in trials if t.state != TrialState.FAIL}
        resolution = self._baseline_resolution()
        outside = []
        for spec, g in zip(self.config.baselines, self.baselines, strict=True):
            g = g.replace(resolution=resolution)
            label = f"{spec}@r{resolution}"
            if label in done:
                continue
            try:
                params = self.space.encode(g)
            except EdgenasError:
                outside.append((label, g))
                continue
            self.study.enqueue_trial(params, user_attrs={R.ATTR_BASELINE: label})
        return outside

    def _queue_warm_start(self) -> int:
        """Enqueue the warm-start candidates no trial holds yet (so a resumed run adds none)."""
        trials = self.study.get_trials(deepcopy=False)
        done = {t.user_attrs.get(R.ATTR_WARM_START) for t in trials} | {
            t.user_attrs.get(R.ATTR_BASELINE) for t in trials if t.state != TrialState.FAIL
        }
        queued = 0
        for w in self.warm:
            if w.label in done or (w.baseline is not None and w.baseline in done):
                continue
            attrs = {R.ATTR_WARM_START: w.label}
            if w.baseline is not None:
                attrs[R.ATTR_BASELINE] = w.baseline
            self.study.enqueue_trial(w.params, user_attrs=attrs)
            queued += 1
        return queued

    def _baseline_resolution(self) -> int:
        """The space's resolution closest to 96 (baselines are compared at the search's input)."""
        choices = list(getattr(self.distributions.get("res"), "choices", [96]))
        return int(min(choices, key=lambda r: abs(int(r) - 96)))

    # -- the loop -------------------------------------------------------------------------
    def run(self) -> SearchResult:
        config = self.config
        recovered = self._recover_interrupted()
        if recovered:
            log.warning("%d interrupted trial(s) will run again", recovered)
        outside_baselines = self._queue_baselines()
        warm = self._queue_warm_start()
        if warm:
            log.info("%d warm-start candidate(s) from %s go first", warm, config.warm_start)
        records = self._records()
        trained = _spent(records)
        known: dict[str, R.TrialRecord] = {
            _identity(r.genotype, r.params): r
            for r in records
            if r.genotype
            and r.state in ("complete", "infeasible", "pruned")
            and (r.trained or r.state == "infeasible")
        }
        curves = [
            EpochCurve(r.history, r.costs)
            for r in records
            if r.state == "complete" and r.trained and r.costs and r.history
        ]
        self._resume_front(records)
        started = time.monotonic()
        deadline = started + config.time_budget_s if config.time_budget_s else None
        max_rejected = config.max_rejected or 50 * config.trials + 200
        rejected_in_a_row = 0
        repeats_in_a_row = 0
        failures_in_a_row = 0
        self.progress.on_start(
            {
                "run_dir": str(self.run_dir),
                "data": self.data.name,
                "images": len(self.data),
                "classes": self.data.class_names,
                "trials": config.trials,
                "trained_before": trained,
                "deadline": deadline,
                "constraints": config.constraints.describe(),
                "objective": self.objective.kind,
                "strategy": config.strategy,
                "space_size": len(self.distributions),
                "fidelity_schedule": self.schedule.kind,
                "front_measure": self._measure_name,
                "stop_when_stable": config.stop_when_stable,
                "search_training": isinstance(self.space, TrainingSpace),
                "latency": (
                    f"predicted from {config.device} "
                    f"({self.profile.get('device', {}).get('name', 'unnamed device')}, "
                    f"{self.profile['threads']} thread(s))"
                    if self.profile
                    else f"measured here ({self.cost.threads} thread(s))"
                ),
            }
        )
        stopped_because = "the trial budget is spent"
        pool = self._pool()
        self.executor = pool
        try:
            with self._beating(pool):
                while True:
                    reason = self._stop_reason(
                        trained, deadline, repeats_in_a_row, rejected_in_a_row, max_rejected
                    )
                    finished: list[tuple[Any, str]] = []
                    if reason is None and (pool is None or pool.free):
                        trial: optuna.Trial | _DirectTrial
                        genotype = None
                        if outside_baselines:
                            label, genotype = outside_baselines.pop(0)
                            trial = _DirectTrial(len(self.study.get_trials(deepcopy=False)), label)
                        else:
                            trial = self.study.ask(self.distributions)
                            trial.set_user_attr(ATTR_DRIVER, self.driver.to_dict())
                        try:
                            outcome = self._evaluate(trial, known, curves, genotype)
                        except KeyboardInterrupt:
                            self._interrupt(trial)
                            raise
                        except EdgenasError:
                            self._tell(trial, state=TrialState.FAIL)
                            raise
                        except (
                            Exception
                        ) as exc:  # a candidate that breaks the trainer must not end the search
                            log.exception("trial %d failed", trial.number)
                            self._failed(trial, f"{type(exc).__name__}: {exc}")
                            outcome = "failed"
                        if outcome == "submitted":
                            continue
                        finished.append((trial, outcome))
                    elif pool is not None and pool.free < len(pool.workers):
                        for job, kind, payload in pool.wait():
                            finished.append(
                                (job.trial, self._collect(job, kind, payload, known, curves))
                            )
                    else:
                        if reason is not None:
                            stopped_because = reason
                        break
                    for trial, outcome in finished:
                        if outcome == "failed":
                            failures_in_a_row += 1
                            if failures_in_a_row >= 3:
                                raise EdgenasError(
                                    f"3 trainings in a row failed, the last one trial {trial.number} "
                                    "(see the log above and results.json): the search stops"
                                )
                        elif outcome != "lost":
                            failures_in_a_row = 0
                        repeats_in_a_row = repeats_in_a_row + 1 if outcome == "duplicate" else 0
                        if outcome in ("infeasible",):
                            rejected_in_a_row += 1
                        elif outcome != "duplicate":
                            rejected_in_a_row = 0
                        records = self._records()
                        # Several search processes may work this study: the budget counts them
                        # all, trainings under way included.
                        trained = _spent(records)
                        record = next(r for r in reversed(records) if r.number == trial.number)
                        self.progress.on_trial_end(record, records)
                        self._write_results(records, best=None)
        except KeyboardInterrupt:
            for job in self._inflight(pool):
                self._interrupt(job.trial)
            raise
        finally:
            self.executor = None
            if pool is not None:
                pool.close()
        return self._finish(stopped_because)

    def _stop_reason(
        self, trained: int, deadline: float | None, repeats: int, rejected: int, limit: int
    ) -> str | None:
        """Why no further candidate should start, or None."""
        config = self.config
        if trained >= config.trials:
            return "the trial budget is spent"
        if deadline is not None and time.monotonic() >= deadline:
            return "the time budget is spent"
        patience = config.stop_when_stable
        if patience is not None and stable_for(self.front_history) >= patience:
            return f"the front has not improved for {patience} trainings"
        if repeats >= limit:
            reason = (
                f"{repeats} proposals in a row were architectures already tried; the space may "
                "be exhausted"
            )
            log.warning(reason)
            return reason
        if rejected >= limit:
            reason = (
                f"{rejected} candidates in a row broke the constraints; the constraints may be "
                "too tight for this space"
            )
            log.warning(reason)
            return reason
        return None

    def _failed(self, trial: optuna.Trial | _DirectTrial, reason: str) -> None:
        trial.set_user_attr(R.ATTR_REASON, reason)
        trial.set_user_attr(R.ATTR_STATUS, "failed")
        self._note_training(trial)
        self._tell(trial, state=TrialState.FAIL)

    def _pool(self) -> Any:
        """The worker processes of ``--workers N`` (N > 1), the actors of ``--executor ray``,
        or None to train in this process."""
        if self.config.workers <= 1 and self.config.executor != "ray":
            return None
        from edgenas.search._workers import WorkerPool, WorkerSetup, threads_per_worker

        setup = WorkerSetup(
            data=str(self.config.data),
            cache_dir=str(self.run_dir / "cache"),
            seed=self.config.seed,
            val_fraction=self.config.val_fraction,
            holdout_fraction=self.config.holdout_fraction,
            fingerprint=self.data.fingerprint(),
            epochs=self.fidelity.epochs,
            data_fraction=self.fidelity.data_fraction,
        )
        if self.config.executor == "ray":
            from edgenas.search._ray import RayPool

            threads = self.config.threads or 1  # CPUs reserved per training on the cluster
            self.progress.on_phase(
                f"starting {self.config.workers} training slot(s) on Ray "
                f"({self.config.address or 'a local instance'}), {threads} CPU(s) each"
            )
            return RayPool(
                self.config.workers, setup, threads, address=self.config.address,
                gpus_per_training=1.0 if self.config.train_device.startswith("cuda") else 0.0,
            )  # fmt: skip
        threads = threads_per_worker(self.config.workers, self.config.threads)
        self.progress.on_phase(
            f"starting {self.config.workers} training workers, {threads} thread(s) each"
        )
        return WorkerPool(self.config.workers, setup, threads)

    @staticmethod
    def _inflight(pool: Any) -> list[_Job]:
        return [] if pool is None else [w.job for w in pool.workers if w.job is not None]

    def _beating(self, pool: Any) -> contextlib.AbstractContextManager[Any]:
        """With workers, one heartbeat for every trial under way in them."""
        if pool is None:
            return contextlib.nullcontext()
        storage = self.study._storage

        def beat() -> None:
            now = time.time()
            for job in self._inflight(pool):
                if not isinstance(job.trial, _DirectTrial):
                    storage.set_trial_user_attr(job.trial._trial_id, ATTR_HEARTBEAT, now)

        return Heartbeat(beat)

    def _collect(
        self,
        job: _Job,
        kind: str,
        payload: tuple[Any, ...],
        known: dict[str, R.TrialRecord],
        curves: list[EpochCurve],
    ) -> str:
        """Record what a worker returned for one job; returns the outcome."""
        trial = job.trial
        if kind == "done":
            result, state = payload
            return self._conclude(job, result, state, known, curves)
        if kind == "error":
            message, trace = payload
            log.error("trial %d failed in its worker:\n%s", trial.number, trace)
            self._failed(trial, message)
            return "failed"
        # The worker process died: run the candidate again, a bounded number of times.
        lost = int(trial.user_attrs.get(R.ATTR_LOST, 0)) + 1
        status = payload[0]
        if lost < MAX_LOST or isinstance(trial, _DirectTrial):
            log.warning(
                "trial %d: the process training it died (exit status %s); it runs again",
                trial.number, status,
            )  # fmt: skip
            if not isinstance(trial, _DirectTrial):
                attrs = {R.ATTR_RETRY_OF: trial.number, R.ATTR_LOST: lost,
                         **_carried(trial.user_attrs)}  # fmt: skip
                self.study.enqueue_trial(trial.params, user_attrs=attrs)
                trial.set_user_attr(R.ATTR_REASON, R.INTERRUPTED)
                self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            return "lost"
        self._failed(trial, f"its worker process died {lost} times (exit status {status})")
        return "failed"

    def _interrupt(self, trial: optuna.Trial | _DirectTrial) -> None:
        """Ctrl-C during a candidate: record it as interrupted and queue it for the next run."""
        if isinstance(trial, _DirectTrial):
            return  # not in the study yet: the next run evaluates it again
        with contextlib.suppress(Exception):
            attrs: dict[str, Any] = {R.ATTR_RETRY_OF: trial.number, **_carried(trial.user_attrs)}
            self.study.enqueue_trial(trial.params, user_attrs=attrs)
            trial.set_user_attr(R.ATTR_REASON, R.INTERRUPTED)
            self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            self._write_results(self._records(), best=None)

    def _tell(
        self,
        trial: optuna.Trial | _DirectTrial,
        values: list[float] | None = None,
        state: TrialState | None = None,
    ) -> None:
        if isinstance(trial, _DirectTrial):
            state = state or TrialState.COMPLETE
            self.study.add_trial(
                optuna.trial.create_trial(
                    state=state,
                    values=values if state == TrialState.COMPLETE else None,
                    params={},
                    distributions={},
                    user_attrs=trial.user_attrs,
                )
            )
        elif values is not None:
            self.study.tell(trial, values)
        else:
            self.study.tell(trial, state=state, skip_if_finished=True)

    def _evaluate(
        self,
        trial: optuna.Trial | _DirectTrial,
        known: dict[str, R.TrialRecord],
        curves: list[EpochCurve],
        genotype: Genotype | None = None,
    ) -> str:
        genotype = genotype or self.space.decode(trial.params)
        key = str(genotype)
        trial.set_user_attr(R.ATTR_GENOTYPE, key)
        limits = self.config.constraints
        # With the training searched too, one architecture under other settings is new.
        identity = _identity(key, trial.params)
        prior = known.get(identity)
        if prior is not None and prior.costs is not None:
            # The same architecture again (many assignments decode to one genotype): tell the
            # sampler what it already cost and scored, without measuring or training again.
            costs = prior.costs
            violations = limits.violations(costs)
            self._set_costs(trial, costs, violations)
            trial.set_user_attr(R.ATTR_REASON, f"same architecture as trial {prior.number}")
            if prior.state == "infeasible":
                trial.set_user_attr(R.ATTR_STATUS, "infeasible")
                self._tell(trial, self.objective.values(0.0, costs))
                return "infeasible"
            trial.set_user_attr(R.ATTR_STATUS, "duplicate")
            if prior.state == "pruned" or prior.accuracy is None:
                self._tell(trial, state=TrialState.PRUNED)
            else:
                trial.set_user_attr(R.ATTR_ACCURACY, prior.accuracy)
                self._tell(trial, self.objective.values(prior.accuracy, costs))
            return "duplicate"

        costs = self.cost.estimate(genotype, limit_ms=limits.max_latency_ms)
        violations = limits.violations(costs)
        self._set_costs(trial, costs, violations)
        self.slowest_ms = max(self.slowest_ms, costs.latency_ms)
        if any(v > 0 for v in violations.values()):
            trial.set_user_attr(R.ATTR_STATUS, "infeasible")
            trial.set_user_attr(R.ATTR_TRAINED, False)
            self._tell(trial, self.objective.values(0.0, costs))
            known[identity] = R.TrialRecord(
                trial.number, key, "infeasible", False, None, costs, 0, 0.0
            )
            return "infeasible"

        self.progress.on_trial_start(trial.number, key, costs)
        trial.set_user_attr(R.ATTR_TRAINED, True)
        train_config = self.train_config
        if isinstance(self.space, TrainingSpace):
            train_config = TrainingSpace.train_config(trial.params, self.train_config)
            trial.set_user_attr(R.ATTR_TRAINING, _training_dict(train_config))
        bracket = 0
        if self.schedule.kind == "hyperband":
            bracket = self.schedule.bracket_for(self.bracket_ordinal)
            self.bracket_ordinal += 1
            trial.set_user_attr(R.ATTR_BRACKET, bracket)
        job = _Job(trial, genotype, identity, costs, train_config, bracket,
                   _trial_seed(self.config.seed, trial.number))  # fmt: skip
        if self.executor is not None:
            self.executor.submit(job, self._reporter(job, curves))
            return "submitted"
        torch.manual_seed(job.seed)
        model = build_model(
            genotype, self.data.channels, self.data.num_classes, self.data.mean, self.data.std
        )
        with self._heartbeat(trial):
            result = fit(
                model,
                self.data,
                self.fidelity,
                resolution=genotype.resolution,
                seed=job.seed,
                config=train_config,
                report=self._reporter(job, curves),
            )
        return self._conclude(job, result, model.cpu().state_dict(), known, curves)

    def _reporter(self, job: _Job, curves: list[EpochCurve]) -> Callable[[int, float], bool]:
        """The per-epoch report of one training: records it, and says whether to go on."""
        trial, costs, bracket = job.trial, job.costs, job.bracket
        history: list[float] = []

        def report(epoch: int, accuracy: float) -> bool:
            history.append(accuracy)
            trial.set_user_attr(R.ATTR_HISTORY, list(history))
            if not self.objective.multi:
                trial.report(self.objective.score(accuracy, costs), epoch)
            self.progress.on_epoch(trial.number, epoch, self.fidelity.epochs, accuracy)
            if epoch >= self.fidelity.epochs:
                return True
            if self.schedule.active:
                point = self._rank_point(accuracy, costs)
                reason = self.schedule.should_stop(epoch, point, self.rung_entries, bracket)
                if reason:
                    name = "successive halving" if self.schedule.kind == "sh" else "hyperband"
                    trial.set_user_attr(R.ATTR_REASON, f"pruned by {name} at {reason}")
                    return False
                return True
            reason = self.stopping.should_stop(epoch, accuracy, costs, curves)
            if reason:
                trial.set_user_attr(R.ATTR_REASON, f"stopped early: {reason}")
                return False
            return True

        return report

    def _conclude(
        self,
        job: _Job,
        result: TrainResult,
        state_dict: Mapping[str, torch.Tensor],
        known: dict[str, R.TrialRecord],
        curves: list[EpochCurve],
    ) -> str:
        """Record a finished training and tell the study; returns the outcome."""
        trial, costs, key = job.trial, job.costs, str(job.genotype)
        trial.set_user_attr(R.ATTR_EPOCHS, result.epochs)
        trial.set_user_attr(R.ATTR_SECONDS, result.seconds)
        trial.set_user_attr(R.ATTR_HISTORY, list(result.history))
        if result.accuracy is not None:
            trial.set_user_attr(R.ATTR_ACCURACY, result.accuracy)
        if result.status == "diverged":
            trial.set_user_attr(R.ATTR_STATUS, "failed")
            trial.set_user_attr(R.ATTR_REASON, result.reason or "training diverged")
            self._note_training(trial)
            self._tell(trial, state=TrialState.FAIL)
            return "failed"
        self.rung_entries.append(
            RungEntry(tuple(self._rank_point(a, costs) for a in result.history), job.bracket)
        )
        if result.status == "stopped" or result.accuracy is None:
            trial.set_user_attr(R.ATTR_STATUS, "pruned")
            self._note_training(trial)
            self._tell(trial, state=TrialState.PRUNED)
            known[job.identity] = R.TrialRecord(
                trial.number, key, "pruned", True, result.accuracy, costs, result.epochs, 0.0
            )
            return "pruned"
        # Weights first, then the verdict: a crash in between only means training again.
        path = _model_path(self.run_dir, trial.number)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(dict(state_dict), path)
        trial.set_user_attr(R.ATTR_STATUS, "complete")
        self._note_training(trial, result.accuracy, costs)
        self._tell(trial, self.objective.values(result.accuracy, costs))
        known[job.identity] = R.TrialRecord(
            trial.number,
            key,
            "complete",
            True,
            result.accuracy,
            costs,
            result.epochs,
            0.0,
            history=result.history,
        )
        curves.append(EpochCurve(tuple(result.history), costs))
        return "complete"

    def _heartbeat(
        self, trial: optuna.Trial | _DirectTrial
    ) -> contextlib.AbstractContextManager[Any]:
        """Keeps the trial's heartbeat fresh while it trains, so other processes on the
        study see it is alive."""
        if isinstance(trial, _DirectTrial):
            return contextlib.nullcontext()
        storage, trial_id = self.study._storage, trial._trial_id

        def beat() -> None:
            storage.set_trial_user_attr(trial_id, ATTR_HEARTBEAT, time.time())

        return Heartbeat(beat)

    def _set_costs(
        self, trial: optuna.Trial | _DirectTrial, costs: Costs, violations: dict[str, float]
    ) -> None:
        trial.set_user_attr(R.ATTR_COSTS, costs.to_dict())
        trial.set_user_attr(R.ATTR_VIOLATIONS, violations)
        for name, value in violations.items():
            trial.set_constraint(name, value)

    # -- the end --------------------------------------------------------------------------
    def _ranked_candidates(self, records: list[R.TrialRecord]) -> list[R.TrialRecord]:
        pool = [
            r for r in records
            if r.state == "complete" and r.trained and r.feasible and r.accuracy is not None
            and r.costs is not None and _model_path(self.run_dir, r.number).exists()
        ]  # fmt: skip

        def key(r: R.TrialRecord) -> tuple[float, float]:
            assert r.costs is not None and r.accuracy is not None
            return (-self.objective.score(r.accuracy, r.costs), r.costs.latency_ms)

        return sorted(pool, key=key)

    def _finish(self, stopped_because: str) -> SearchResult:
        records = self._records()
        best_details: dict[str, Any] | None = None
        best: R.TrialRecord | None = None
        limit = self.config.constraints.max_latency_ms
        tried: list[dict[str, Any]] = []
        predicted = self.cost.predictor is not None
        if predicted:
            self._measure_front(records)
        # With a profile of another device, a measurement here says nothing of the device's
        # limit: the prediction decides, and the measurement is recorded beside it.
        measured_decides = not predicted or _same_machine(self.profile)
        for candidate in self._ranked_candidates(records)[:5]:
            self.progress.on_phase(f"checking trial {candidate.number}: latency measured again")
            genotype = Genotype.parse(candidate.genotype or "")
            measured = self.cost.latency_ms(genotype, fresh=True)
            tried.append({"trial": candidate.number, "latency_ms_measured": measured})
            if limit is not None and measured_decides and measured > limit:
                log.warning(
                    "trial %d measured %.3f ms again, over the %.3g ms limit: next candidate",
                    candidate.number,
                    measured,
                    limit,
                )
                continue
            best = candidate
            best_details = self._check_best(candidate, genotype, measured)
            break
        if best_details is not None:
            best_details["candidates_checked"] = tried
            self.study.set_user_attr(R.STUDY_BEST, best_details)
        results = self._write_results(records, best_details)
        front = R.pareto_front(records)
        return SearchResult(
            self.run_dir, records, front, best, best_details, results, stopped_because
        )

    def _measure_front(self, records: list[R.TrialRecord]) -> None:
        """Latency predicted during the search is measured here for the Pareto front."""
        done = dict(self.study.user_attrs.get(R.STUDY_FRONT, {}))
        for r in R.pareto_front(records):
            if str(r.number) in done or not r.genotype:
                continue
            self.progress.on_phase(f"trial {r.number} of the front: latency measured")
            done[str(r.number)] = self.cost.latency_ms(Genotype.parse(r.genotype), fresh=True)
            self.study.set_user_attr(R.STUDY_FRONT, done)

    def _check_best(
        self, record: R.TrialRecord, genotype: Genotype, measured: float
    ) -> dict[str, Any]:
        self.progress.on_phase(f"trial {record.number}: holdout accuracy and ONNX export")
        model = build_model(
            genotype, self.data.channels, self.data.num_classes, self.data.mean, self.data.std
        )
        model.load_state_dict(torch.load(_model_path(self.run_dir, record.number)))
        model.eval()
        images = self.data.images(genotype.resolution)
        holdout = torch.as_tensor(self.data.splits.holdout)
        labels = torch.as_tensor(self.data.labels)[holdout]
        holdout_accuracy = evaluate(model, images[holdout], labels)
        onnx_bytes = export_onnx(model, self.run_dir / BEST_ONNX)
        max_diff = _onnx_matches(model, onnx_bytes, images[holdout[:16]])
        return {
            "trial": record.number,
            "genotype": record.genotype,
            "accuracy": record.accuracy,
            "holdout_accuracy": holdout_accuracy,
            "holdout_images": len(holdout),
            "validation_images": len(self.data.splits.val),
            "latency_ms": record.costs.latency_ms if record.costs else None,
            "latency_ms_measured": measured,
            "latency_ms_predicted": (
                record.costs.latency_ms if record.costs and self.cost.predictor else None
            ),
            "onnx": BEST_ONNX,
            "onnx_max_abs_diff": max_diff,
            **({"training": record.training} if record.training else {}),
        }

    def _write_results(
        self, records: list[R.TrialRecord], best: dict[str, Any] | None
    ) -> dict[str, Any]:
        if best is None:
            best = self.study.user_attrs.get(R.STUDY_BEST)
        measured = {int(k): v for k, v in self.study.user_attrs.get(R.STUDY_FRONT, {}).items()}
        frontier = {
            "measure": self._measure_name,
            "reference_latency_ms": (
                self.hv_reference
                or self.study.user_attrs.get(R.STUDY_HV_REFERENCE)
                or self.config.constraints.max_latency_ms
                if self.objective.multi
                else None
            ),
            "stop_when_stable": self.config.stop_when_stable,
        }
        results = R.results_dict(records, self.config.constraints, best, self._run_info(),
                                 measured, frontier)  # fmt: skip
        write_json(self.run_dir / RESULTS_FILE, results, indent=2, default=_json_default)
        return results

    def _run_info(self) -> dict[str, Any]:
        return {
            "data": self.spec["data"],
            "classes": self.spec["classes"],
            "objective": self.objective.kind,
            "strategy": self.config.strategy,
            "space": self.space.name,
            "epochs": self.config.epochs,
            "seed": self.config.seed,
            "latency": {
                **self.spec["latency"],
                "source": "predicted" if self.profile else "measured",
                **(
                    {"profile": str(self.config.device), **_profile_identity(self.profile)}
                    if self.profile
                    else {}
                ),
            },
            "energy": {**self.config.energy.to_dict(), "estimate": True},
            "fidelity_schedule": self.spec["fidelity_schedule"],
            "warm_start": self.spec["warm_start"],
            "search_training": isinstance(self.space, TrainingSpace),
        }


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _onnx_matches(model: torch.nn.Module, onnx_bytes: bytes, images_uint8: torch.Tensor) -> float:
    """Largest absolute difference between PyTorch's and ONNX Runtime's logits."""
    import onnxruntime as ort

    x = images_uint8.float() / 255.0
    with torch.inference_mode():
        expected = model(x).numpy()
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    return float(np.abs(got - expected).max())


def run_search(config: SearchConfig, progress: SearchProgress | None = None) -> SearchResult:
    """Run (or resume) a search and return what it found."""
    return _Search(config, progress or _Silent()).run()


def load_result(run_dir: Path) -> tuple[optuna.Study, list[R.TrialRecord], dict[str, Any]]:
    """The study, its trial records and the saved spec of a run directory (for ``show``)."""
    run_dir = Path(run_dir)
    study = open_run_study(run_dir)
    spec = read_json(run_dir / SPEC_FILE)
    if not isinstance(spec, dict):
        spec = {}
    return study, R.records_from_study(study), spec
