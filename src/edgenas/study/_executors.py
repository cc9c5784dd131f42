"""Where trainings run: one contract (`Executor`), three places.

`InProcess` trains in the search process itself, `WorkerPool` (``--workers N``) in local
worker processes, `RayPool` (``--executor ray``) on a Ray cluster. The search hands each a
`Job` and a reporter that answers every epoch (go on, or stop); whatever the executor, the
search process stays the only writer of the study.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from edgenas.arch import Genotype
from edgenas.cost import Costs
from edgenas.study._trials import SearchTrial
from edgenas.study._workers import WorkerPool, WorkerSetup, threads_per_worker, train_one
from edgenas.train import Fidelity, TrainConfig

if TYPE_CHECKING:
    from edgenas.study._config import SearchProgress
    from edgenas.study._setup import SearchSetup

__all__ = ["Ended", "Executor", "InProcess", "Job", "Reporter", "Sequential", "make_executor"]

#: Answers one epoch of a training (epoch, validation score of the metric): True to go on.
Reporter = Callable[[int, float], bool]


@dataclass
class Job:
    """One training the search decided on: what to train, and what the verdict needs."""

    trial: SearchTrial
    genotype: Genotype
    identity: str
    costs: Costs
    train_config: TrainConfig
    bracket: int
    seed: int
    # A one-shot search's final model: the subnet as judged ("judged", no training), fine-tuned
    # from the weights it inherits ("inherited") or trained from scratch ("scratch"); None for
    # any other training.
    start: str | None = None


#: How a job ended: ``(job, "done", (TrainResult, state_dict))``, ``(job, "error", (message,
#: traceback))`` or ``(job, "lost", (exit status or None,))`` when its process died.
Ended = tuple[Job, str, tuple[Any, ...]]


class Executor(Protocol):
    """Trains jobs; `submit` starts one when `free`, `wait` collects those that ended."""

    @property
    def free(self) -> int:
        """How many more jobs it can take now."""
        ...

    def in_flight(self) -> list[Job]:
        """The jobs submitted and not yet returned by `wait`."""
        ...

    def submit(self, job: Job, reporter: Reporter) -> None:
        """Start training ``job``; ``reporter`` answers each of its epochs."""
        ...

    def wait(self) -> list[Ended]:
        """Block until at least one job in flight ends (none when none is in flight)."""
        ...

    def close(self) -> None:
        """Stop whatever it started."""
        ...


class Sequential:
    """An executor that works in this process, one job at a time: `submit` runs the job to its
    end (`run`, for subclasses to say what running is) and `wait` returns it.

    An exception out of the job (Ctrl-C included) leaves `submit` with the job dropped, for the
    search to record against its trial.
    """

    def __init__(self) -> None:
        self._job: Job | None = None
        self._ended: Ended | None = None

    @property
    def free(self) -> int:
        return int(self._job is None)

    def in_flight(self) -> list[Job]:
        return [] if self._job is None else [self._job]

    def run(self, job: Job, reporter: Reporter) -> tuple[Any, ...]:
        """Do ``job``; returns ``(TrainResult, state_dict or None)``."""
        raise NotImplementedError

    def submit(self, job: Job, reporter: Reporter) -> None:
        self._job = job
        try:
            payload = self.run(job, reporter)
        except BaseException:
            self._job = None
            raise
        self._ended = (job, "done", payload)

    def wait(self) -> list[Ended]:
        ended, self._ended, self._job = self._ended, None, None
        return [] if ended is None else [ended]

    def close(self) -> None:
        self._job = self._ended = None


class InProcess(Sequential):
    """Trains in this process, one candidate at a time."""

    def __init__(self, data: Any, fidelity: Fidelity) -> None:
        super().__init__()
        self._data = data
        self._fidelity = fidelity

    def run(self, job: Job, reporter: Reporter) -> tuple[Any, ...]:
        return train_one(
            self._data, self._fidelity, str(job.genotype), job.train_config, job.seed, reporter
        )


def make_executor(setup: SearchSetup, progress: SearchProgress) -> Executor:
    """The executor the config asks for: Ray actors with ``executor="ray"``, worker
    processes with ``workers > 1``, else this process."""
    config = setup.config
    if config.workers <= 1 and config.executor != "ray":
        return InProcess(setup.data, setup.fidelity)
    worker_setup = WorkerSetup(
        data=str(config.data),
        cache_dir=str(setup.run.cache),
        seed=config.seed,
        val_fraction=config.val_fraction,
        holdout_fraction=config.holdout_fraction,
        fingerprint=setup.data.fingerprint(),
        epochs=setup.fidelity.epochs,
        data_fraction=setup.fidelity.data_fraction,
        augment=setup.data.augment,
        resize=setup.data.resize,
    )
    if config.executor == "ray":
        from edgenas.study._ray import RayPool

        threads = config.threads or 1  # CPUs reserved per training on the cluster
        progress.on_phase(
            f"starting {config.workers} training slot(s) on Ray "
            f"({config.address or 'a local instance'}), {threads} CPU(s) each"
        )
        return RayPool(
            config.workers, worker_setup, threads, address=config.address,
            gpus_per_training=1.0 if config.train_device.startswith("cuda") else 0.0,
        )  # fmt: skip
    threads = threads_per_worker(config.workers, config.threads)
    progress.on_phase(f"starting {config.workers} training workers, {threads} thread(s) each")
    return WorkerPool(config.workers, worker_setup, threads)
