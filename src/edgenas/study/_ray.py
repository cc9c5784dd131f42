"""Trainings on a Ray cluster (``--executor ray``): the same interface as `WorkerPool`.

The search process (the driver) stays the only writer of the study; the cluster only trains.
Each slot is one Ray actor (`_TrainWorker`) that loads the run's data once, then trains the
candidates the driver hands it, one at a time, with ``num_cpus=threads`` and
``num_gpus=gpus_per_training`` reserved for it.

How an epoch report travels. The actor is threaded: its ``train`` method runs `fit` in one of
its threads and, after every epoch, puts ``("epoch", number, epoch, accuracy)`` on an event
queue and blocks until the driver's answer arrives. The driver always keeps exactly one
``next_event`` call outstanding per busy slot; inside `RayPool.wait` it ``ray.wait``\\ s on
those calls, hands each epoch to the runner's ``reporter`` (in this process, in order) and
sends the verdict back with ``answer.remote(number, epoch, go)``, then asks for the next
event. The last event of a training is ``("done", number, result, state_dict)`` or
``("error", number, message, traceback)``. So early stopping and successive halving decide
exactly as with local workers; no extra actor sits between the driver and a training.

A training whose actor, worker process or node dies ends its ``next_event`` call with a Ray
error; `wait` returns it as ``"lost"`` (the runner queues the candidate again, a bounded
number of times) and the slot gets a fresh actor, which Ray places wherever there is room.
Ray itself also restarts an actor that dies while idle (``max_restarts``), so a slot heals
without the driver noticing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import socket
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from edgenas.errors import ConfigError, EdgenasError
from edgenas.study._workers import WorkerSetup, load_setup_data, train_one

__all__ = ["RayPool"]

log = logging.getLogger(__name__)

# How long the driver waits in one ray.wait before looking again (keeps Ctrl-C responsive).
_POLL_S = 1.0
# The concurrent calls one actor serves: a training, the pending next_event, an answer, a ping.
_ACTOR_THREADS = 4


_START_ADVICE = (
    "start one with `ray start --head` (and `ray start --address=HEAD:PORT` on the other "
    "machines), or name a running one with --address"
)
# Seconds to wait for the cluster's port to accept a connection before ray.init, which
# otherwise retries an unreachable address for minutes.
_PROBE_S = 5.0


def _unreachable(address: str) -> str | None:
    """Why nothing listens at a Ray address, or None when something does (or it is unclear).

    ``"auto"`` is resolved as Ray does (``RAY_ADDRESS``, then the cluster ``ray start`` last
    started on this machine); an address that cannot be parsed is left to ``ray.init``.
    """
    target = address.removeprefix("ray://")
    if target == "auto":
        try:
            from ray._private.services import canonicalize_bootstrap_address

            resolved = canonicalize_bootstrap_address("auto")
        except Exception:
            return None  # a private helper that moved: let ray.init judge
        if resolved is None:
            return "no running Ray cluster was found on this machine, nor in RAY_ADDRESS"
        target = resolved
    host, _, port_text = target.rpartition(":")
    if not host or not port_text.isdigit():
        return None
    try:
        with socket.create_connection((host.strip("[]"), int(port_text)), timeout=_PROBE_S):
            return None
    except OSError as exc:
        return f"nothing answers at {host}:{port_text}: {exc.strerror or exc}"


class _TrainWorker:
    """One training slot on the cluster (wrapped by ``ray.remote`` in `RayPool`).

    It never raises out of ``__init__`` or ``train``: a failure to load the data is kept and
    reported by `ready` (and by any training asked of it), a failed training becomes an
    ``"error"`` event, so that a Ray error always means the process or node died.
    """

    def __init__(self, setup: WorkerSetup, threads: int) -> None:
        self._events: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self._answers: queue.Queue[tuple[int, int, bool]] = queue.Queue()
        self._threads = threads
        self._data: Any = None
        self._fidelity: Any = None
        self._problem: str | None = None
        try:
            import torch

            torch.set_num_threads(threads)
            self._data, self._fidelity = load_setup_data(setup)
        except Exception as exc:
            self._problem = f"{type(exc).__name__}: {exc}"

    def ready(self) -> tuple[int, str | None]:
        """This process's id, and why it cannot train (None when it can)."""
        return os.getpid(), self._problem

    def train(self, number: int, genotype_text: str, config: Any, seed: int) -> None:
        """Train one candidate; its epochs and its outcome go out through `next_event`."""
        if self._problem is not None:
            self._events.put(("fatal", number, self._problem))
            return

        def report(epoch: int, accuracy: float) -> bool:
            self._events.put(("epoch", number, epoch, accuracy))
            return self._answer(number, epoch)

        try:
            result, state = train_one(
                self._data, self._fidelity, genotype_text, config, seed, report
            )
            self._events.put(("done", number, result, state))
        except BaseException as exc:
            self._events.put(
                ("error", number, f"{type(exc).__name__}: {exc}", traceback.format_exc())
            )

    def _answer(self, number: int, epoch: int) -> bool:
        while True:
            got_number, got_epoch, go = self._answers.get()
            if (got_number, got_epoch) == (number, epoch):  # anything else is stale
                return go

    def next_event(self) -> tuple[Any, ...]:
        """Block until the training under way has something to say."""
        return self._events.get()

    def answer(self, number: int, epoch: int, go: bool) -> None:
        """The driver's verdict on an epoch: go on (True) or stop (False)."""
        self._answers.put((number, epoch, go))


@dataclass
class _Slot:
    """The driver's view of one actor: the job it trains (None when idle) and the call that
    will bring its next event."""

    actor: Any
    started: Any  # the ``ready`` call made when the actor was created
    job: Any = None
    reporter: Callable[[int, float], bool] | None = None
    pending: Any = None  # the outstanding ``next_event`` call
    pid: int | None = None


class RayPool:
    """``slots`` trainings at once on a Ray cluster, driven from this process.

    Args:
        slots: trainings in parallel (one actor each).
        setup: what every actor needs to load the run's data as the driver did.
        threads: CPUs reserved for, and torch threads used by, each training.
        address: the cluster (``"auto"``: the one ``ray start`` started on this machine or
            named by ``RAY_ADDRESS``; ``"host:port"``; ``"ray://host:port"``); None starts a
            private local Ray instance. When Ray is already initialised in this process, it is
            used as it is.
        gpus_per_training: GPUs reserved for each training (fractions share a GPU).
        max_retries: how often Ray restarts a slot's actor that dies while idle.
        num_cpus: CPUs of the local instance started when ``address`` is None (all by default).
        start_timeout: seconds to wait for every slot to be placed and to load the data.
    """

    def __init__(
        self,
        slots: int,
        setup: WorkerSetup,
        threads: int,
        *,
        address: str | None = "auto",
        gpus_per_training: float = 0.0,
        max_retries: int = 3,
        num_cpus: int | None = None,
        start_timeout: float = 300.0,
    ) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError("--executor ray needs Ray: pip install 'edgenas[ray]'") from None
        if slots < 1:
            raise ConfigError(f"a Ray pool needs at least one slot, got {slots!r}")
        if gpus_per_training < 0:
            raise ConfigError(f"GPUs per training must be >= 0, got {gpus_per_training!r}")
        self._ray = ray
        self._setup = setup
        self._threads = threads
        self._started_ray = False
        self._closed = False
        if not ray.is_initialized():
            self._connect(address, num_cpus)
        self._actor_class: Any = ray.remote(_TrainWorker).options(
            num_cpus=threads,
            num_gpus=gpus_per_training,
            max_restarts=max_retries,
            max_task_retries=0,  # a training that died is the runner's to re-queue, not Ray's
            max_concurrency=_ACTOR_THREADS,
        )
        self._describe = f"{threads} CPU(s)" + (
            f" and {gpus_per_training:g} GPU(s)" if gpus_per_training else ""
        )
        self.workers: list[_Slot] = []
        try:
            self.workers = [self._start() for _ in range(slots)]
            self._await_ready(self.workers, start_timeout)
        except BaseException:
            self.close()
            raise

    def _connect(self, address: str | None, num_cpus: int | None) -> None:
        ray = self._ray
        if address is not None:
            problem = _unreachable(address)
            if problem is not None:
                raise ConfigError(
                    f"--executor ray: cannot reach the Ray cluster at {address!r} ({problem}); "
                    f"{_START_ADVICE}"
                )
        try:
            if address is None:
                ray.init(
                    address="local", num_cpus=num_cpus, include_dashboard=False,
                    log_to_driver=False,
                )  # fmt: skip
            else:
                ray.init(address=address, log_to_driver=False)
        except Exception as exc:
            where = (
                "a local Ray instance could not start"
                if address is None
                else (f"cannot reach the Ray cluster at {address!r}")
            )
            cause = " ".join(str(exc).split())[:300]
            raise ConfigError(
                f"--executor ray: {where} ({type(exc).__name__}: {cause}); {_START_ADVICE}"
            ) from None
        self._started_ray = True

    def _start(self) -> _Slot:
        actor = self._actor_class.remote(self._setup, self._threads)
        return _Slot(actor, actor.ready.remote())

    def _await_ready(self, slots: list[_Slot], timeout: float) -> None:
        """Wait until every slot's actor runs and holds the data; name what went wrong."""
        ray = self._ray
        refs = [s.started for s in slots]
        done, waiting = ray.wait(refs, num_returns=len(refs), timeout=timeout)
        if waiting:
            raise EdgenasError(
                f"only {len(done)} of {len(refs)} Ray training workers started within "
                f"{timeout:g} s: the cluster has no room for {len(refs)} trainings of "
                f"{self._describe} each (see `ray status`), or loading the data takes longer"
            )
        for slot in slots:
            try:
                slot.pid, problem = ray.get(slot.started)
            except ray.exceptions.RayError as exc:
                raise EdgenasError(
                    f"a Ray training worker could not start: {type(exc).__name__}: {exc}"
                ) from None
            if problem is not None:
                raise EdgenasError(f"a Ray training worker could not load the data: {problem}")

    @property
    def free(self) -> int:
        return sum(s.job is None for s in self.workers)

    def in_flight(self) -> list[Any]:
        """The jobs submitted and not yet returned by `wait`."""
        return [s.job for s in self.workers if s.job is not None]

    @property
    def pids(self) -> list[int | None]:
        """Process ids of the actors, where known (they may run on other machines)."""
        return [s.pid for s in self.workers]

    def submit(self, job: Any, reporter: Callable[[int, float], bool]) -> None:
        """Hand ``job`` (a search ``Job``) to an idle slot; ``reporter`` answers its epochs."""
        slot = next(s for s in self.workers if s.job is None)
        config = replace(job.train_config, threads=self._threads)
        slot.actor.train.remote(job.trial.number, str(job.genotype), config, job.seed)
        slot.pending = slot.actor.next_event.remote()
        slot.job, slot.reporter = job, reporter

    def wait(self) -> list[tuple[Any, str, tuple[Any, ...]]]:
        """Block until at least one job ends, answering epoch reports meanwhile.

        Returns ``(job, kind, payload)`` per ended job: ``"done"`` with (TrainResult,
        state_dict), ``"error"`` with (message, traceback), ``"lost"`` with (None,) when the
        actor, its process or its node died (Ray tells no exit status); a lost slot gets a new
        actor.
        """
        ray = self._ray
        ended: list[tuple[Any, str, tuple[Any, ...]]] = []
        while not ended:
            busy = [s for s in self.workers if s.job is not None]
            if not busy:
                return ended
            ready, _ = ray.wait([s.pending for s in busy], num_returns=1, timeout=_POLL_S)
            if not ready:
                continue
            ready, _ = ray.wait([s.pending for s in busy], num_returns=len(busy), timeout=0)
            for slot in busy:
                if slot.pending in ready:
                    outcome = self._receive(slot)
                    if outcome is not None:
                        ended.append(outcome)
        return ended

    def _receive(self, slot: _Slot) -> tuple[Any, str, tuple[Any, ...]] | None:
        """Act on one slot's event; the job's outcome when it ended."""
        ray = self._ray
        job = slot.job
        try:
            event = ray.get(slot.pending)
        except ray.exceptions.RayTaskError as exc:  # next_event itself failed: not expected
            self._replace(slot)
            return job, "error", (f"{type(exc).__name__}: {exc}", str(exc))
        except ray.exceptions.RayError as exc:  # the actor, its process or its node died
            log.warning("trial %s: its Ray worker died (%s)", job.trial.number, type(exc).__name__)
            self._replace(slot)
            return job, "lost", (None,)
        kind = event[0]
        if kind == "epoch":
            assert slot.reporter is not None
            go = bool(slot.reporter(event[2], event[3]))
            slot.actor.answer.remote(event[1], event[2], go)
            slot.pending = slot.actor.next_event.remote()
            return None
        if kind == "fatal":
            raise EdgenasError(f"a Ray training worker could not load the data: {event[2]}")
        slot.job, slot.reporter, slot.pending = None, None, None
        return job, kind, tuple(event[2:])

    def _replace(self, slot: _Slot) -> None:
        """Give the slot a fresh actor; it starts while the driver goes on (calls queue)."""
        with contextlib.suppress(Exception):
            self._ray.kill(slot.actor, no_restart=True)
        fresh = self._start()
        slot.actor, slot.started, slot.pid = fresh.actor, fresh.started, None
        slot.job, slot.reporter, slot.pending = None, None, None

    def close(self) -> None:
        """Kill the actors; disconnect from (or stop) Ray only when this pool started it."""
        if self._closed:
            return
        self._closed = True
        for slot in self.workers:
            with contextlib.suppress(Exception):
                self._ray.kill(slot.actor, no_restart=True)
        self.workers = []
        if self._started_ray:
            with contextlib.suppress(Exception):
                self._ray.shutdown()
            self._started_ray = False
