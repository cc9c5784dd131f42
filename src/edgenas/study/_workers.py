"""Trainings in parallel in local worker processes (``--workers N``).

The search process (the driver) stays the only writer of the study: it proposes, checks and
records every candidate. Each worker is a separate Python process (started with ``spawn``)
that loads the run's data once, then trains the candidates the driver sends it, one at a time.
After every epoch the worker sends its validation accuracy and waits for the driver's answer,
so early stopping and successive halving decide as they do in a single process. A worker that
dies (killed, out of memory) is replaced; its candidate is reported as lost.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

__all__ = ["WorkerPool", "WorkerSetup", "threads_per_worker"]


def threads_per_worker(workers: int, threads: int | None) -> int:
    """Training threads for each of ``workers`` processes: the cores shared out, not
    oversubscribed (or ``threads`` when set)."""
    if threads is not None:
        return threads
    return max(1, (os.cpu_count() or 1) // workers)


@dataclass(frozen=True)
class WorkerSetup:
    """What every worker needs to rebuild the run's data and train as the driver would."""

    data: str
    cache_dir: str | None
    seed: int
    val_fraction: float
    holdout_fraction: float
    fingerprint: str
    epochs: int
    data_fraction: float
    # What the search process's data has in effect: the workers train on the same inputs.
    augment: tuple[str, ...] | None = None  # None: the data's default
    resize: str = "pad"


def load_setup_data(setup: WorkerSetup) -> tuple[Any, Any]:
    """The run's data and fidelity as a worker rebuilds them; raises EdgenasError when the data
    read is not the data the search process read."""
    from edgenas.data import load_dataset
    from edgenas.errors import EdgenasError
    from edgenas.train import Fidelity

    data = load_dataset(
        setup.data,
        cache_dir=None if setup.cache_dir is None else Path(setup.cache_dir),
        seed=setup.seed,
        val_fraction=setup.val_fraction,
        holdout_fraction=setup.holdout_fraction,
        augment=setup.augment,
        resize=setup.resize,
    )
    if data.fingerprint() != setup.fingerprint:
        raise EdgenasError(f"the worker read other data ({data.fingerprint()})")
    return data, Fidelity(epochs=setup.epochs, data_fraction=setup.data_fraction)


def train_one(
    data: Any, fidelity: Any, genotype_text: str, config: Any, seed: int,
    report: Callable[[int, float], bool],
) -> tuple[Any, dict[str, Any]]:  # fmt: skip
    """Build and train one candidate as the search process would; returns the TrainResult and
    the weights on the CPU."""
    import torch

    from edgenas.arch import Genotype, build_model
    from edgenas.train import fit

    genotype = Genotype.parse(genotype_text)
    torch.manual_seed(seed)
    model = build_model(genotype, data.channels, data.num_classes, data.mean, data.std)
    result = fit(
        model, data, fidelity, resolution=genotype.resolution, seed=seed, config=config,
        report=report,
    )  # fmt: skip
    return result, {k: v.detach().cpu() for k, v in model.state_dict().items()}


def _worker_main(conn: Connection, setup: WorkerSetup) -> None:
    try:
        data, fidelity = load_setup_data(setup)
    except Exception as exc:
        conn.send(("fatal", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready",))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        number, genotype_text, config, seed = message

        def report(epoch: int, accuracy: float, number: int = number) -> bool:
            conn.send(("epoch", number, epoch, accuracy))
            return bool(conn.recv())

        try:
            result, state = train_one(data, fidelity, genotype_text, config, seed, report)
            conn.send(("done", number, result, state))
        except Exception as exc:
            conn.send(("error", number, f"{type(exc).__name__}: {exc}", traceback.format_exc()))


@dataclass
class _Worker:
    process: Any
    conn: Connection
    job: Any = None
    reporter: Callable[[int, float], bool] | None = None


class WorkerPool:
    """``size`` worker processes; `submit` hands one a job, `wait` collects finished ones."""

    def __init__(self, size: int, setup: WorkerSetup, threads: int) -> None:
        self._ctx = mp.get_context("spawn")
        self._setup = setup
        self._threads = threads
        self.workers = [self._start() for _ in range(size)]
        for w in self.workers:
            self._ready(w)

    def _start(self) -> _Worker:
        parent, child = self._ctx.Pipe()
        env_threads = str(self._threads)
        # Threads are set before torch loads in the child (OMP reads them at import).
        previous = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
        os.environ.update({"OMP_NUM_THREADS": env_threads, "MKL_NUM_THREADS": env_threads})
        try:
            process = self._ctx.Process(
                target=_worker_main, args=(child, self._setup), daemon=True,
                name="edgenas-worker",
            )  # fmt: skip
            process.start()
        finally:
            for k, v in previous.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        child.close()
        return _Worker(process, parent)

    def _ready(self, worker: _Worker) -> None:
        from edgenas.errors import EdgenasError

        try:
            message = worker.conn.recv()
        except (EOFError, OSError):
            raise EdgenasError(
                f"a training worker exited while loading the data (status "
                f"{worker.process.exitcode}); run with --workers 1 to see why"
            ) from None
        if message[0] != "ready":
            raise EdgenasError(f"a training worker could not start: {message[1]}")

    @property
    def free(self) -> int:
        return sum(w.job is None for w in self.workers)

    def in_flight(self) -> list[Any]:
        """The jobs submitted and not yet returned by `wait`."""
        return [w.job for w in self.workers if w.job is not None]

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self.workers]

    def submit(self, job: Any, reporter: Callable[[int, float], bool]) -> None:
        """Hand ``job`` (a search ``Job``) to a free worker; ``reporter`` answers its epochs."""
        from dataclasses import replace

        index = next(i for i, w in enumerate(self.workers) if w.job is None)
        config = replace(job.train_config, threads=self._threads)
        message = (job.trial.number, str(job.genotype), config, job.seed)
        try:
            self.workers[index].conn.send(message)
        except OSError:  # it died while idle: start another
            self._replace(self.workers[index])
            self.workers[index].conn.send(message)
        self.workers[index].job, self.workers[index].reporter = job, reporter

    def wait(self) -> list[tuple[Any, str, tuple[Any, ...]]]:
        """Block until at least one job ends, answering epoch reports meanwhile.

        Returns ``(job, kind, payload)`` per ended job: ``"done"`` with (TrainResult,
        state_dict), ``"error"`` with (message, traceback), ``"lost"`` with (exit status,)
        when the worker process died; a lost worker is replaced.
        """
        ended: list[tuple[Any, str, tuple[Any, ...]]] = []
        while not ended:
            busy = [w for w in self.workers if w.job is not None]
            if not busy:
                return ended
            ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
            for w in busy:
                if w.conn not in ready and w.process.sentinel not in ready:
                    continue
                try:
                    if not w.conn.poll():
                        if w.process.is_alive():
                            continue
                        raise EOFError
                    message = w.conn.recv()
                except (EOFError, OSError):
                    ended.append((w.job, "lost", (w.process.exitcode,)))
                    self._replace(w)
                    continue
                kind = message[0]
                if kind == "epoch":
                    assert w.reporter is not None
                    with contextlib.suppress(OSError):
                        w.conn.send(w.reporter(message[2], message[3]))
                elif kind in ("done", "error"):
                    ended.append((w.job, kind, tuple(message[2:])))
                    w.job, w.reporter = None, None
        return ended

    def _replace(self, worker: _Worker) -> None:
        with contextlib.suppress(Exception):
            worker.process.join(timeout=1)
        fresh = self._start()
        self._ready(fresh)
        self.workers[self.workers.index(worker)] = fresh

    def close(self) -> None:
        for w in self.workers:
            with contextlib.suppress(Exception):
                w.conn.send(None)
        for w in self.workers:
            w.process.join(timeout=5)
            if w.process.is_alive():
                w.process.kill()
                w.process.join(timeout=5)
