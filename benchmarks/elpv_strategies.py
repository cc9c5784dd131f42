"""A real search on ELPV: one strategy against random at equal wall time, side by side.

Starts ``edgenas search elpv`` once per strategy at the same moment, with the same limits,
seed, epochs, resolution and time budget, one training thread each (so both see the same
machine), waits for both, and writes what each found to BENCHMARKS.md: candidates trained and
rejected, the best validation and holdout accuracy, its measured latency.

    python benchmarks/elpv_strategies.py --strategies guided random --budget 20m
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from _section import write_section

MARK = "elpv_strategies"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--strategies", nargs="+", default=["guided", "random"])
    p.add_argument("--budget", default="20m", help="search time budget of each")
    p.add_argument("--max-latency", default="1ms")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--resolution", default="64")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/elpv-strategies")
    p.add_argument("--reuse", action="store_true", help="write the section from finished runs")
    args = p.parse_args()

    procs = {}
    started = time.perf_counter()
    for name in args.strategies if not args.reuse else ():
        out = Path(args.out) / f"{name}-s{args.seed}"
        command = [sys.executable, "-m", "edgenas", "search", "elpv", "--strategy", name,
                   "--max-latency", args.max_latency, "--epochs", str(args.epochs),
                   "--resolution", args.resolution, "--time-budget", args.budget,
                   "--trials", "1000", "--threads", "1", "--seed", str(args.seed),
                   "--out", str(out)]  # fmt: skip
        out.parent.mkdir(parents=True, exist_ok=True)
        log = open(f"{out}.log", "w")  # noqa: SIM115 (closed with the process)
        procs[name] = (subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), out, log)
        print("started", " ".join(command[1:]), flush=True)
    rows = []
    for name in args.strategies:
        out = Path(args.out) / f"{name}-s{args.seed}"
        if name in procs:
            proc, _, log = procs[name]
            code = proc.wait()
            log.close()
            if code:
                sys.exit(f"{name} failed ({code}); see {out}.log")
        results = json.loads((out / "results.json").read_text())
        trials = results["trials"]
        trained = [t for t in trials if t["trained"]]
        best = results.get("best_details") or {}
        rows.append(
            {
                "strategy": name,
                "trained": len(trained),
                # Runs from before redrawn candidates were counted hold only those told.
                "rejected": results["summary"]["rejected"]
                if "redrawn" in results["summary"]
                else None,
                "pruned": sum(t["state"] == "pruned" for t in trials),
                "val": best.get("accuracy"),
                "holdout": best.get("holdout_accuracy"),
                "latency": best.get("latency_ms_measured"),
                "genotype": best.get("genotype"),
                "trial": best.get("trial"),
                "val_images": best.get("validation_images"),
            }
        )
    wall = time.perf_counter() - started
    timing = (
        f"both searches ran at once, one training thread each, {wall / 60:.1f} min in all"
        if not args.reuse
        else "both searches ran at once, one training thread each (section written from the "
        "finished runs)"
    )

    def pct(x: float | None) -> str:
        return "—" if x is None else f"{x * 100:.1f}%"

    text = [
        "## ELPV: strategies at equal wall time",
        "",
        f"{dt.date.today().isoformat()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores; {timing}.",
        "",
        f"`python benchmarks/elpv_strategies.py --strategies {' '.join(args.strategies)} "
        f"--budget {args.budget} --max-latency {args.max_latency} --epochs {args.epochs} "
        f"--resolution {args.resolution} --seed {args.seed}` (each runs `edgenas search elpv "
        f"--strategy NAME --time-budget {args.budget} ...`).",
        "",
        "| strategy | trained | rejected before training | stopped early | best val acc "
        "| its holdout acc | its latency (ms) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        latency = "—" if r["latency"] is None else f"{r['latency']:.3f}"
        text.append(
            f"| {r['strategy']} | {r['trained']} "
            f"| {'not counted' if r['rejected'] is None else r['rejected']} | {r['pruned']} "
            f"| {pct(r['val'])} | {pct(r['holdout'])} | {latency} |"
        )
    accs = [r["val"] for r in rows if r["val"] is not None]
    images = next((r["val_images"] for r in rows if r["val_images"]), None)
    if len(accs) > 1 and images:
        gap = max(accs) - min(accs)
        text += [
            "",
            f"The best validation accuracies differ by {gap * 100:.1f} points, "
            f"{gap * images:.0f} of {images} validation images, in one run per strategy: "
            "within what another seed could change. The number of candidates trained in "
            "the same time, and the tabular benchmark above (many seeds), say more.",
        ]
    text += ["", "Best architectures:", ""]
    text += [f"- {r['strategy']} (trial {r['trial']}): `{r['genotype']}`" for r in rows]
    write_section(MARK, "\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main()
