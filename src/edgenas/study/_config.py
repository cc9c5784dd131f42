"""What a search is asked to do (`SearchConfig`), what it reports on the way
(`SearchProgress`) and what it returns (`SearchResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from edgenas.arch import baseline
from edgenas.cost import Constraints, Costs, EnergyModel
from edgenas.errors import ConfigError
from edgenas.space import SearchSpace, StagedSpace, edge_space, load_space
from edgenas.study._fidelity import FidelitySchedule
from edgenas.study._objectives import OBJECTIVES, Objective
from edgenas.study._records import BestCheck, TrialRecord
from edgenas.study._strategies import STRATEGIES
from edgenas.study._study import RunDir, redact, url_error
from edgenas.train import CLASS_WEIGHTS, Metric, TrainConfig

__all__ = ["SearchConfig", "SearchProgress", "SearchResult", "SilentProgress"]

EXECUTORS = ("local", "ray")
TRAINING_DEVICES = ("auto", "cpu", "cuda")
# More threads than any edge device has, or than one training uses well; beyond it a typo
# (such as 1000 for 100) would start that many threads.
MAX_THREADS = 256
# Optuna's samplers take seeds below 2**32, and a resumed search adds 7919 per trial already
# told to its seed: 2**31 - 1 leaves room for any resumption.
MAX_SEED = 2**31 - 1


@dataclass
class SearchConfig:
    """Everything one search needs; the CLI fills it from its options.

    The settings are checked when the config is made (and again by `dataclasses.replace`);
    what needs reading files (the device profile, the data, a warm-start run) is checked when
    the search starts.

    Raises:
        ConfigError: a setting is out of range or contradicts another, naming the option.
    """

    data: str  # a folder, a CSV manifest, or a built-in: elpv, elpv4, synthetic
    out: Path | None = None  # run directory; default runs/<data name>
    space: SearchSpace = field(default_factory=edge_space)
    constraints: Constraints = field(default_factory=Constraints)
    objective: str = "accuracy"  # accuracy, pareto or weighted
    weights: dict[str, float] | None = None  # for the weighted objective
    # The validation score the search ranks, stops and chooses by: accuracy (top-1),
    # balanced-accuracy, macro-f1 or recall:CLASS (a class of the data). The objective's
    # "accuracy", the trials' accuracy and the best's holdout accuracy are this score.
    metric: str = "accuracy"
    # Weights of the classes in the training loss: none, or balanced (rare classes weigh more).
    class_weights: str = "none"
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
    # The augmentations that keep an image's class: a comma-separated list of flip-h, flip-v,
    # rot90, shift, brightness, contrast, or "none"; None: the data's default (all six for the
    # built-in data sets, shift,brightness,contrast for a folder or manifest).
    augment: str | None = None
    # How an image of another aspect ratio becomes the square input: "pad" (the long side to
    # the resolution, black borders), "crop" (the short side, centre-cropped) or "squash".
    resize: str = "pad"
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
    # One-shot search: train one weight-sharing supernet (RUN/supernet.pt), judge subnets by
    # the weights they inherit, then train the best few (``epochs`` each).
    one_shot: bool = False
    # A trained supernet.pt to reuse instead of training one (needs one_shot).
    supernet: Path | str | None = None
    supernet_epochs: int = 60  # epochs of the supernet's training (fewer if the time is short)
    subnets: int = 2000  # subnets judged by inherited weights in a one-shot search
    # One-shot candidates made into models at the end, each as judged, fine-tuned from its
    # inherited weights and retrained from scratch; the best on validation is kept.
    finetune: int = 3

    def __post_init__(self) -> None:
        # In the order the options are best corrected in: what is optimised, then the budget,
        # then how candidates are trained and where.
        if self.objective not in OBJECTIVES:
            raise ConfigError(
                f"--objective {self.objective!r} is unknown; choose from {', '.join(OBJECTIVES)}"
            )
        self.parsed_objective()
        self.parsed_metric()
        if self.class_weights not in CLASS_WEIGHTS:
            raise ConfigError(
                f"--class-weights {self.class_weights!r} is unknown; choose from "
                f"{', '.join(CLASS_WEIGHTS)}"
            )
        if self.strategy not in STRATEGIES:
            raise ConfigError(
                f"--strategy {self.strategy!r} is unknown; choose from "
                f"{', '.join(sorted(STRATEGIES))}"
            )
        load_space(self.space)  # a space made in Python: its resolutions are checked too
        if not _whole(self.trials):
            raise ConfigError(f"--trials must be at least 1, got {self.trials!r}")
        if self.time_budget_s is not None and not (
            _number(self.time_budget_s) and 0 < self.time_budget_s < float("inf")
        ):
            raise ConfigError(
                f"--time-budget must be positive, such as 30m, got {self.time_budget_s!r} s"
            )
        if self.max_rejected is not None and not _whole(self.max_rejected):
            raise ConfigError(
                f"max_rejected must be a whole number >= 1, got {self.max_rejected!r}"
            )
        if not _whole(self.epochs):
            raise ConfigError(f"--epochs must be at least 1, got {self.epochs!r}")
        if not (_number(self.data_fraction) and 0 < self.data_fraction <= 1):
            raise ConfigError(f"--data-fraction must be within (0, 1], got {self.data_fraction!r}")
        schedule = self.parsed_schedule()
        if schedule.active and not self.early_stopping:
            raise ConfigError(
                f"--no-early-stop trains every candidate fully, which --fidelity-schedule "
                f"{schedule.kind} exists to avoid: drop one of the two"
            )
        if self.stop_when_stable is not None and not _whole(self.stop_when_stable):
            raise ConfigError(
                f"--stop-when-stable must be a whole number of trainings >= 1, got "
                f"{self.stop_when_stable!r}"
            )
        self._check_training()
        self._check_data()
        if not _whole(self.workers):
            raise ConfigError(f"--workers must be a whole number >= 1, got {self.workers!r}")
        if self.executor not in EXECUTORS:
            raise ConfigError(f"--executor takes local or ray, got {self.executor!r}")
        if self.address is not None and self.executor != "ray":
            raise ConfigError("--address names a Ray cluster: add --executor ray")
        for name in self.baselines:
            baseline(name)  # an unknown name is named before any work
        self._check_one_shot()
        if not _whole(self.latency_threads, high=MAX_THREADS):
            raise ConfigError(
                f"--latency-threads must be a whole number from 1 to {MAX_THREADS} (the "
                f"threads of the device's runtime), got {self.latency_threads!r}"
            )
        if self.storage is not None:
            _check_storage(self.storage)
        text = str(self.device)
        if self.device is not None and (text in TRAINING_DEVICES or text.startswith("cuda:")):
            raise ConfigError(
                f"device {text!r} is a training device; --device (device= in Python) takes a "
                "device profile such as pi4.json. Choose the training device with --train-device "
                "(train_device=)."
            )

    def _check_training(self) -> None:
        if not _whole(self.seed, low=0, high=MAX_SEED):
            raise ConfigError(
                f"--seed must be a whole number from 0 to {MAX_SEED}, got {self.seed!r}"
            )
        if self.threads is not None and not _whole(self.threads, high=MAX_THREADS):
            raise ConfigError(
                f"--threads must be a whole number from 1 to {MAX_THREADS} (leave it out to "
                f"use every core), got {self.threads!r}"
            )
        # TrainConfig holds the rules (a batch of one breaks BatchNorm); the option is named.
        try:
            TrainConfig(batch_size=self.batch_size, device=self.train_device)
        except ConfigError as exc:
            message = str(exc).replace("TrainConfig.batch_size", "--batch-size")
            raise ConfigError(message.replace("TrainConfig.device", "--train-device")) from None

    def _check_data(self) -> None:
        from edgenas.data import parse_augment, parse_resize

        if self.augment is not None:
            parse_augment(self.augment, "--augment")
        parse_resize(self.resize, "--resize")

    def _check_one_shot(self) -> None:
        if self.supernet is not None and not self.one_shot:
            raise ConfigError("--supernet reuses a supernet for a one-shot search: add --one-shot")
        for option, value in (
            ("--supernet-epochs", self.supernet_epochs),
            ("--subnets", self.subnets),
            ("--finetune", self.finetune),
        ):
            if not _whole(value):
                raise ConfigError(f"{option} must be a whole number >= 1, got {value!r}")
        if not self.one_shot:
            return
        if not isinstance(self.space, StagedSpace):
            raise ConfigError(
                f"--one-shot needs a staged space (edge, or a TOML space of stages); the space "
                f"{self.space.name!r} is not one"
            )
        if self.search_training:
            raise ConfigError(
                "--one-shot judges architectures by shared weights, all trained alike: drop "
                "--search-training"
            )
        if self.fidelity_schedule != "none":
            raise ConfigError(
                "--one-shot judges subnets without training them: drop --fidelity-schedule"
            )
        if self.workers > 1 or self.executor != "local":
            raise ConfigError(
                "--one-shot runs in this process for now: drop --workers and --executor ray"
            )

    def parsed_objective(self) -> Objective:
        """The objective the settings name, with its weights and constraints."""
        return Objective(self.objective, self.weights or {}, self.constraints)

    def parsed_metric(self) -> Metric:
        """The validation score the settings name (its class is checked against the data's
        when the search starts)."""
        return Metric.parse(self.metric)

    def parsed_schedule(self) -> FidelitySchedule:
        """The fidelity schedule the settings name, over ``epochs``."""
        return FidelitySchedule.parse(self.fidelity_schedule, self.epochs)

    def run_dir(self, data_name: str) -> Path:
        """The run directory: ``out``, or ``runs/<data_name>``."""
        return Path(self.out) if self.out else Path("runs") / data_name


def _whole(value: Any, low: int = 1, high: int | None = None) -> bool:
    """Whether ``value`` is a whole number from ``low`` to ``high`` (and not a bool, which
    Python counts as one)."""
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and value >= low
        and (high is None or value <= high)
    )


def _number(value: Any) -> bool:
    """Whether ``value`` is a real number (not a bool, and not text such as ``"0.5"``)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_storage(url: str) -> None:
    """A ``--storage`` URL that parses and names a driver installed here, checked before
    anything is written (reaching the server is left to opening the study)."""
    import sqlalchemy.exc

    shown = redact(url)
    try:
        dialect = sqlalchemy.engine.make_url(url).get_dialect()
        # Importing the driver, as opening the study would (dbapi() before SQLAlchemy 2).
        load_driver: Any = getattr(dialect, "import_dbapi", None) or dialect.dbapi
        load_driver()
    except (
        ModuleNotFoundError,
        sqlalchemy.exc.NoSuchModuleError,
        sqlalchemy.exc.ArgumentError,
    ) as exc:
        raise url_error(exc, url, f"--storage {shown}") from None


class SearchProgress(Protocol):
    """Receives what happens, for a live view or a log; every method is optional to act on."""

    def on_start(self, info: dict[str, Any]) -> None: ...
    def on_phase(self, text: str) -> None: ...
    def on_trial_start(self, number: int, genotype: str, costs: Costs) -> None: ...
    def on_epoch(self, number: int, epoch: int, epochs: int, accuracy: float) -> None: ...
    def on_trial_end(self, record: TrialRecord, records: list[TrialRecord]) -> None: ...


class SilentProgress:
    """A `SearchProgress` that shows nothing."""

    def on_start(self, info: dict[str, Any]) -> None:
        pass

    def on_phase(self, text: str) -> None:
        pass

    def on_trial_start(self, number: int, genotype: str, costs: Costs) -> None:
        pass

    def on_epoch(self, number: int, epoch: int, epochs: int, accuracy: float) -> None:
        pass

    def on_trial_end(self, record: TrialRecord, records: list[TrialRecord]) -> None:
        pass


@dataclass(frozen=True)
class SearchResult:
    """What a search found: every trial, the Pareto front and the best, read from the study."""

    run_dir: Path
    trials: list[TrialRecord]
    pareto: list[TrialRecord]
    best: TrialRecord | None
    best_check: BestCheck | None  # the best's holdout accuracy, latency measured again, ONNX
    results: dict[str, Any]
    stopped_because: str

    @property
    def best_details(self) -> dict[str, Any] | None:
        """`best_check` as ``results.json`` holds it (``best_details``)."""
        return None if self.best_check is None else self.best_check.to_json()

    @property
    def best_onnx(self) -> Path | None:
        path = RunDir(self.run_dir).best_onnx
        return path if self.best and path.exists() else None
