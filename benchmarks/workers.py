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

    python benchmarks/workers.py [--data synthetic] [--trials 8] [--epochs 2] [--repeats 2]
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
import time
from pathlib import Path

from _section import cpu_name, write_section

MARK = "workers"


# name -> (workers, extra options)
SETUPS = {
    "1 worker": (1, []),
    "2 workers": (2, []),
    "Ray, 2 slots": (2, ["--executor", "ray", "--threads", "1"]),
}


def run_once(args: argparse.Namespace, name: str, out: Path) -> dict[str, float]:
    shutil.rmtree(out, ignore_errors=True)
    workers, extra = SETUPS[name]
    command = [sys.executable, "-m", "edgenas", "search", args.data, "--trials", str(args.trials),
               "--workers", str(workers), "--strategy", "random", "--epochs", str(args.epochs),
               "--resolution", str(args.resolution), "--no-early-stop", "--seed", "0",
               "--out", str(out), *extra]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
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
    args = p.parse_args()

    runs: dict[str, list[dict[str, float]]] = {name: [] for name in SETUPS}
    for r in range(args.repeats):
        for i, name in enumerate(SETUPS):
            m = run_once(args, name, Path(args.work) / f"setup{i}-r{r}")
            runs[name].append(m)
            print(f"{name} repeat {r}: {m}", flush=True)

    def med(name: str, key: str) -> float:
        return statistics.median(m[key] for m in runs[name])

    rows = ["| trainings run by | trainings per hour | wall s | mean training s | overhead per trial s |",
            "| --- | --- | --- | --- | --- |"]  # fmt: skip
    for name in SETUPS:
        rows.append(
            f"| {name} | {med(name, 'per_hour'):.0f} | {med(name, 'wall'):.1f} | "
            f"{med(name, 'train_mean'):.2f} | {med(name, 'overhead'):.2f} |"
        )
    speedup = med("2 workers", "per_hour") / med("1 worker", "per_hour")
    ray_ratio = med("Ray, 2 slots", "per_hour") / med("1 worker", "per_hour")
    text = "\n".join(
        [
            "## Trainings per hour: 1 and 2 local workers, and Ray",
            "",
            f"{dt.date.today().isoformat()} · {cpu_name()}, {os.cpu_count()} cores · "
            f"`python benchmarks/workers.py --data {args.data} --trials {args.trials} "
            f"--epochs {args.epochs} --repeats {args.repeats}`",
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
        ]
    )
    write_section(MARK, text)
    print(text)


if __name__ == "__main__":
    main()
