"""Trainings per hour with 1 and 2 local workers and with Ray, measured side by side, and the
time the runner adds per trial.

Runs the same search (same seed, so the same candidates) with ``--workers 1``,
``--workers 2`` and ``--executor ray --workers 2`` (a Ray instance on this machine, one CPU
per training) in turn, ``--repeats`` times each, one after the other on an otherwise quiet
machine, and writes the medians to BENCHMARKS.md:

- trainings per hour: trained candidates ÷ wall time of the whole command;
- runner overhead per trial: wall time not spent inside training (start-up, data loading,
  proposals, cost checks, recording, the final measurement of the best), ÷ trials, where
  training time is the trials' own ``train_seconds`` divided by the number of workers.

With ``--before REV`` the 1- and 2-worker searches also run on the code as it was at that git
revision (checked out in a temporary worktree and put first on ``PYTHONPATH``), interleaved with
the current code's, so that a change's effect on throughput is measured side by side.

    python benchmarks/workers.py [--data synthetic] [--trials 8] [--epochs 2] [--repeats 2]
                                 [--before REV]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from _section import cpu_name, git_commit, write_section

MARK = "workers"
ROOT = Path(__file__).resolve().parent.parent


# name -> (workers, extra options)
SETUPS = {
    "1 worker": (1, []),
    "2 workers": (2, []),
    "Ray, 2 slots": (2, ["--executor", "ray", "--threads", "1"]),
}


@contextmanager
def checkout(revision: str) -> Iterator[dict[str, str]]:
    """The environment that makes ``python -m edgenas`` run the code at ``revision``."""
    commit = git_commit(revision)
    folder = Path(tempfile.mkdtemp(prefix="edgenas-before-")) / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", str(folder), commit], cwd=ROOT,
                   check=True, capture_output=True)  # fmt: skip
    try:
        env = {**os.environ, "PYTHONPATH": str(folder / "src")}
        where = subprocess.run([sys.executable, "-c", "import edgenas; print(edgenas.__file__)"],
                               env=env, check=True, capture_output=True, text=True).stdout  # fmt: skip
        if not where.startswith(str(folder)):
            raise RuntimeError(f"the old tree is not the one imported: {where}")
        yield env
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(folder)], cwd=ROOT,
                       check=False)  # fmt: skip
        shutil.rmtree(folder.parent, ignore_errors=True)


def run_once(
    args: argparse.Namespace, name: str, out: Path, env: dict[str, str] | None = None
) -> dict[str, float]:
    shutil.rmtree(out, ignore_errors=True)
    workers, extra = SETUPS[name.removesuffix(BEFORE)]
    command = [sys.executable, "-m", "edgenas", "search", args.data, "--trials", str(args.trials),
               "--workers", str(workers), "--strategy", "random", "--epochs", str(args.epochs),
               "--resolution", str(args.resolution), "--no-early-stop", "--seed", "0",
               "--out", str(out), *extra]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)
    wall = time.perf_counter() - started
    results = json.loads((out / "results.json").read_text())
    trained = [t for t in results["trials"] if t["trained"]]
    training = sum(t.get("train_seconds") or 0.0 for t in trained)
    return {
        "wall": wall,
        "trained": len(trained),
        "per_hour": len(trained) / wall * 3600,
        "overhead": (wall - training / workers) / max(len(results["trials"]), 1),
        "train_mean": training / max(len(trained), 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="synthetic")
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--work", default="runs/bench-workers")
    p.add_argument("--before", help="also run 1 and 2 workers on the code at this git revision")
    args = p.parse_args()
    if args.before:
        with checkout(args.before) as env:
            runs = measure(args, env)
    else:
        runs = measure(args, None)
    write(args, runs)


# Suffix of the setups that run the code at --before.
BEFORE = ", before"


def measure(
    args: argparse.Namespace, before_env: dict[str, str] | None
) -> dict[str, list[dict[str, float]]]:
    names = list(SETUPS)
    if before_env is not None:
        names[2:2] = [n + BEFORE for n in ("1 worker", "2 workers")]
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for r in range(args.repeats):
        for i, name in enumerate(names):
            env = before_env if name.endswith(BEFORE) else None
            m = run_once(args, name, Path(args.work) / f"setup{i}-r{r}", env)
            runs[name].append(m)
            print(f"{name} repeat {r}: {m}", flush=True)
    return runs


def write(args: argparse.Namespace, runs: dict[str, list[dict[str, float]]]) -> None:
    def med(name: str, key: str) -> float:
        return statistics.median(m[key] for m in runs[name])

    rows = ["| trainings run by | trainings per hour | wall s | mean training s | overhead per trial s |",
            "| --- | --- | --- | --- | --- |"]  # fmt: skip
    for name in runs:
        label = f"{name} {args.before}" if name.endswith(BEFORE) else name
        rows.append(
            f"| {label} | {med(name, 'per_hour'):.0f} | {med(name, 'wall'):.1f} | "
            f"{med(name, 'train_mean'):.2f} | {med(name, 'overhead'):.2f} |"
        )
    speedup = med("2 workers", "per_hour") / med("1 worker", "per_hour")
    ray_ratio = med("Ray, 2 slots", "per_hour") / med("1 worker", "per_hour")
    versus: list[str] = []
    if args.before:
        gains = "; ".join(
            f"{name}: **{med(name, 'per_hour') / med(name + BEFORE, 'per_hour'):.2f}×**"
            for name in ("1 worker", "2 workers")
        )
        versus = [
            "",
            f"Against the code at {args.before} (same searches, interleaved), trainings per "
            f"hour now: {gains}.",
        ]
    text = "\n".join(
        [
            "## Trainings per hour: 1 and 2 local workers, and Ray",
            "",
            f"{dt.date.today().isoformat()} · {cpu_name()}, {os.cpu_count()} cores · "
            f"`python benchmarks/workers.py --data {args.data} --trials {args.trials} "
            f"--epochs {args.epochs} --repeats {args.repeats}"
            f"{f' --before {args.before}' if args.before else ''}`",
            "",
            f"The same search (seed 0, random strategy, {args.trials} candidates, "
            f"{args.epochs} epochs at {args.resolution} px, no early stopping) run by one "
            "worker (all cores), two local workers (half the cores each) and two Ray slots "
            f"(one CPU each, a Ray instance started on this machine), in turn, {args.repeats} "
            "times each; medians.",
            "",
            *rows,
            "",
            f"Two local workers: **{speedup:.2f}×** the trainings per hour of one; Ray with two "
            f"slots: {ray_ratio:.2f}×. Overhead per trial is the wall time outside training "
            "(start-up, Ray's start-up included, data loading, proposals, cost checks, "
            "recording, the final check of the best) spread over the trials.",
            *versus,
        ]
    )
    write_section(MARK, text)
    print(text)


if __name__ == "__main__":
    main()
