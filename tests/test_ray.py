"""``--executor ray``: trainings on a Ray cluster report every epoch to the driver, stop when
it says so, and a training whose worker dies comes back as lost while its slot recovers."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# Skipped where Ray is not installed, unless EDGENAS_REQUIRE_RAY=1 (as .ci/run sets) makes that,
# and a missing ray command, a failure.
_REQUIRED = os.environ.get("EDGENAS_REQUIRE_RAY") == "1"
try:
    import ray
except ImportError:
    if _REQUIRED:
        raise ImportError(
            "Ray is not installed, and EDGENAS_REQUIRE_RAY=1 requires its tests: "
            "pip install 'edgenas[ray]'"
        ) from None
    pytest.skip("Ray is not installed (pip install 'edgenas[ray]')", allow_module_level=True)

import torch  # noqa: E402

from edgenas.arch import Genotype, baseline, build_model  # noqa: E402
from edgenas.data import load_dataset  # noqa: E402
from edgenas.study._ray import RayPool  # noqa: E402
from edgenas.study._workers import WorkerSetup  # noqa: E402
from edgenas.train import TrainConfig, TrainResult  # noqa: E402

GENOTYPE = baseline("mobilenetv3-small:0.5", 32)


@dataclass
class _Trial:
    number: int


@dataclass
class _Job:
    """What RayPool reads of the runner's ``_Job``."""

    trial: _Trial
    genotype: Genotype
    train_config: TrainConfig
    seed: int


def _setup(epochs: int) -> WorkerSetup:
    return WorkerSetup(
        data="synthetic",
        cache_dir=None,
        seed=0,
        val_fraction=0.15,
        holdout_fraction=0.15,
        fingerprint=load_dataset("synthetic", seed=0).fingerprint(),
        epochs=epochs,
        data_fraction=1.0,
    )


def _job(number: int) -> _Job:
    return _Job(_Trial(number), GENOTYPE, TrainConfig(threads=1, device="cpu"), seed=number)


def _recorder(go_on_after: int | None = None) -> tuple[list[tuple[int, float]], Any]:
    seen: list[tuple[int, float]] = []

    def reporter(epoch: int, accuracy: float) -> bool:
        seen.append((epoch, accuracy))
        return go_on_after is None or epoch < go_on_after

    return seen, reporter


def _wait_all(pool: RayPool) -> list[tuple[Any, str, tuple[Any, ...]]]:
    ended = []
    while pool.free < len(pool.workers):
        ended.extend(pool.wait())
    return ended


@pytest.fixture(scope="class")
def local_pool() -> Iterator[RayPool]:
    if ray.is_initialized():
        pytest.skip("Ray is already initialised in this process")
    pool = RayPool(2, _setup(epochs=2), threads=1, address=None, num_cpus=2)
    try:
        yield pool
    finally:
        pool.close()
    assert not ray.is_initialized()  # it started Ray, so it shut it down


class TestLocalRay:
    """A private local Ray instance (two CPUs), two slots."""

    def test_epochs_reach_the_driver_in_order_and_the_weights_come_back(
        self, local_pool: RayPool
    ) -> None:
        seen, reporter = _recorder()
        job = _job(7)
        local_pool.submit(job, reporter)
        assert local_pool.free == 1
        ended = _wait_all(local_pool)
        assert [(j, kind) for j, kind, _ in ended] == [(job, "done")]
        result, state = ended[0][2]
        assert isinstance(result, TrainResult)
        assert result.status == "complete" and result.epochs == 2
        assert [epoch for epoch, _ in seen] == [1, 2]
        assert [accuracy for _, accuracy in seen] == list(result.history)
        data = load_dataset("synthetic", seed=0)
        model = build_model(GENOTYPE, data.channels, data.num_classes, data.mean, data.std)
        model.load_state_dict(state)
        assert all(t.device == torch.device("cpu") for t in state.values())

    def test_a_no_from_the_driver_stops_the_training_and_two_run_at_once(
        self, local_pool: RayPool
    ) -> None:
        stopped_seen, stop_after_one = _recorder(go_on_after=1)
        full_seen, go_on = _recorder()
        stopped, full = _job(1), _job(2)
        local_pool.submit(stopped, stop_after_one)
        local_pool.submit(full, go_on)
        assert local_pool.free == 0
        ended = {j.trial.number: (kind, payload) for j, kind, payload in _wait_all(local_pool)}
        kind, (result, _) = ended[1]
        assert kind == "done" and result.status == "stopped" and result.epochs == 1
        assert [epoch for epoch, _ in stopped_seen] == [1]
        kind, (result, _) = ended[2]
        assert kind == "done" and result.status == "complete" and result.epochs == 2
        assert [epoch for epoch, _ in full_seen] == [1, 2]
        assert local_pool.free == 2


def test_an_unreachable_cluster_is_a_one_line_config_error() -> None:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    code = (
        "from edgenas.study._ray import RayPool\n"
        "from edgenas.errors import ConfigError\n"
        "try:\n"
        f"    RayPool(1, None, 1, address='127.0.0.1:{_free_port()}')\n"
        "except ConfigError as exc:\n"
        "    print(exc)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout + proc.stderr
    assert "127.0.0.1" in lines[0] and "ray start --head" in lines[0]


# --- a real two-node cluster on loopback ---------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ray_cli() -> str:
    found = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    if found is None:
        message = "the ray command is not installed (pip install 'edgenas[ray]')"
        if _REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    return found


# Recent Ray turns token authentication on for `ray start`; the throwaway loopback cluster and
# the drivers that join it (this process included) run without it.
_NO_AUTH = {"RAY_AUTH_MODE": "disabled"}


def _ray_node(*args: str, temp_dir: str) -> subprocess.Popen[bytes]:
    """``ray start --block`` in a process group of its own, so teardown stops exactly it."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | _NO_AUTH
    return subprocess.Popen(
        [_ray_cli(), "start", "--block", "--disable-usage-stats", f"--temp-dir={temp_dir}", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _stop(node: subprocess.Popen[bytes]) -> None:
    """Kill the node's process group (``ray start`` and the daemons it started), by its id."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(node.pid, signal.SIGKILL)
    node.wait(timeout=20)


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A head and a worker node, one CPU each, on this machine; yields the head's address."""
    if ray.is_initialized():
        pytest.skip("Ray is already initialised in this process")
    saved = {k: os.environ.get(k) for k in _NO_AUTH}
    os.environ.update(_NO_AUTH)
    temp_dir = tempfile.mkdtemp(prefix="edgenas-ray-")  # short: Ray puts sockets in it
    port = _free_port()
    address = f"127.0.0.1:{port}"
    nodes = [
        _ray_node(
            "--head",
            f"--port={port}",
            "--num-cpus=1",
            "--include-dashboard=false",
            temp_dir=temp_dir,
        )
    ]
    try:
        _until_nodes(address, 1, nodes)
        nodes.append(
            _ray_node(
                f"--address={address}",
                "--num-cpus=1",
                temp_dir=temp_dir,
            )
        )
        _until_nodes(address, 2, nodes)
        yield address
    finally:
        for node in reversed(nodes):
            _stop(node)
        shutil.rmtree(temp_dir, ignore_errors=True)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _until_nodes(address: str, count: int, nodes: list[subprocess.Popen[bytes]]) -> None:
    """Wait until the cluster at ``address`` has ``count`` live nodes."""
    probe = (
        "import ray, sys\n"
        f"ray.init(address={address!r}, log_to_driver=False)\n"
        "print(sum(n['Alive'] for n in ray.nodes()))\n"
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        for node in nodes:
            if node.poll() is not None:
                pytest.fail(f"a ray node exited at start (status {node.returncode})")
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc = subprocess.run(
                [sys.executable, "-c", probe], capture_output=True, text=True, timeout=30
            )
        if proc.returncode == 0 and proc.stdout.strip() == str(count):
            return
        time.sleep(1)
    pytest.fail(f"the Ray cluster at {address} did not reach {count} nodes")


def _actor_pids() -> list[int]:
    """Processes that run a training slot's actor (Ray titles them ray::_TrainWorker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "cmdline").read_bytes().startswith(b"ray::_TrainWorker"):
                    found.append(int(entry.name))
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the actor through /proc")
def test_search_on_a_cluster_survives_a_killed_worker_and_counts_each_training_once(
    cluster: str, tmp_path: Path
) -> None:
    from _cli import EDGENAS, QUICK
    from optuna.trial import TrialState

    from edgenas.study import _records as R
    from edgenas.study import open_study

    run = tmp_path / "run"
    command = [*EDGENAS, "search", "synthetic", "--executor", "ray", "--address", cluster,
               "--workers", "1", "--threads", "1", "--trials", "2", "--strategy", "random",
               "--no-early-stop", "--out", str(run), *QUICK[:-1], "4"]  # fmt: skip
    # stderr to a file, not a pipe: nobody reads a pipe while the search runs, and a full one
    # would stop the search mid-way
    log = tmp_path / "stderr.txt"
    with log.open("w") as sink:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=sink, text=True)
    killed = None
    study = None
    deadline = time.monotonic() + 300
    while killed is None and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
        if not (run / "study.db").exists():
            continue
        with contextlib.suppress(Exception):
            # opened once: on a busy machine, opening it at every look could miss the training
            study = study or open_study(run)
            trials = study.get_trials()
            if any(t.state == TrialState.RUNNING and t.user_attrs.get(R.ATTR_HISTORY)
                   for t in trials):  # fmt: skip
                pids = _actor_pids()
                if pids:
                    os.kill(pids[0], signal.SIGKILL)  # the worker training it dies
                    killed = pids[0]
    proc.wait(timeout=600)
    err = log.read_text()
    tail = "\n".join(err.strip().splitlines()[-15:])
    assert killed is not None, f"no training was seen under way (exit {proc.returncode}):\n{tail}"
    assert proc.returncode == 0, err
    trials = open_study(run).get_trials()
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 2
    lost = [t for t in trials if t.state == TrialState.FAIL]
    assert len(lost) == 1 and lost[0].user_attrs[R.ATTR_REASON] == R.INTERRUPTED
    retry = [t for t in trials if t.user_attrs.get(R.ATTR_RETRY_OF) == lost[0].number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    assert "the process training it died" in err
