"""Latency predictor: profile this machine, then check the predictor against measurements.

For each thread count: time a plan of the default space (``edgenas profile plan`` defaults:
the distinct convolutions of 2000 random architectures and 200 reference networks), then
measure 100 fresh random architectures end to end (three passes, median kept) and compare the
predictor, a FLOPs-proportional estimate and the plain sum of operator latencies with them. Also
times the predictor on 10,000 architectures. Writes the table to BENCHMARKS.md.

    python benchmarks/latency_predictor.py --threads 1 2
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

from edgenas.config import load_space
from edgenas.cost import LatencyPredictor
from edgenas.device import device_info, profile_plan
from edgenas.profile import check_profile, load_profile, write_plan

ROOT = Path(__file__).resolve().parent.parent
MARK = "latency_predictor"


def write_section(text: str) -> None:
    path = ROOT / "BENCHMARKS.md"
    body = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"<!-- {MARK} -->\n{text.rstrip()}\n<!-- /{MARK} -->"
    pattern = re.compile(rf"<!-- {MARK} -->.*?<!-- /{MARK} -->", re.S)
    body = (
        pattern.sub(block, body) if pattern.search(body) else body.rstrip() + "\n\n" + block + "\n"
    )
    path.write_text(body)


def throughput(profile: dict, genotypes: list, repeats: int = 3) -> tuple[float, float]:
    """Architectures per second of ``predict_many``: cold (a new predictor, every block new to
    its cache) and warm (the same architectures again, blocks cached, as in a long search);
    medians of ``repeats``."""
    cold, warm = [], []
    for _ in range(repeats):
        predictor = LatencyPredictor(profile, 3, 10)
        t0 = time.perf_counter()
        predictor.predict_many(genotypes)
        cold.append(len(genotypes) / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        predictor.predict_many(genotypes)
        warm.append(len(genotypes) / (time.perf_counter() - t0))
    return float(np.median(cold)), float(np.median(warm))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--architectures", type=int, default=2000)
    parser.add_argument("--references", type=int, default=200)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "latency-bench")
    parser.add_argument("--no-write", action="store_true", help="print, do not touch BENCHMARKS.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.work.mkdir(parents=True, exist_ok=True)
    space = load_space("edge")
    plan = args.work / "plan.zip"
    t0 = time.perf_counter()
    counts = write_plan(space, plan, architectures=args.architectures, references=args.references)
    plan_s = time.perf_counter() - t0
    print(f"plan: {counts} in {plan_s:.0f} s", file=sys.stderr)

    rows, extra = [], []
    for threads in args.threads:
        out = args.work / f"profile-t{threads}.json"
        out.unlink(missing_ok=True)
        t0 = time.perf_counter()
        profile_plan(plan, out, threads=threads, memory=False)
        profile_s = time.perf_counter() - t0
        profile = load_profile(out)
        t0 = time.perf_counter()
        figures = check_profile(profile, space, args.n, seed=1)
        check_s = time.perf_counter() - t0
        rng = np.random.default_rng(7)
        fresh = [space.sample(rng) for _ in range(10_000)]
        cold, warm = throughput(profile, fresh)
        print(threads, figures, f"{cold:.0f}/s cold, {warm:.0f}/s warm", file=sys.stderr)
        for name, label in (("predictor", "predictor"), ("flops", "FLOPs-proportional"),
                            ("block_sum", "sum of operators, uncalibrated")):  # fmt: skip
            f = figures[name]
            rows.append(f"| {threads} | {label} | {100 * f['within_5']:.0f}% | "
                        f"{100 * f['within_10']:.0f}% | {f['mape']:.1f}% | "
                        f"{f['spearman']:.3f} |")  # fmt: skip
        extra.append(
            f"| {threads} | {profile_s / 60:.1f} min | {check_s / 60:.1f} min | "
            f"{100 * figures['coverage']:.1f}% | {100 * figures['calibration_residual']:.1f}% | "
            f"{cold:,.0f} cold · {warm:,.0f} warm |"
        )
    info = device_info()
    text = "\n".join(
        [
            "## Latency predictor",
            "",
            f"{dt.date.today().isoformat()} · {info['device']['cpu']}, "
            f"{info['device']['cores']} cores · ONNX Runtime {info['runtime']['version']} (CPU) · "
            "`python benchmarks/latency_predictor.py --threads "
            + " ".join(map(str, args.threads))
            + "`",
            "",
            f"Plan: the distinct convolutions of {args.architectures} random architectures of "
            f"the `edge` space ({counts.get('conv', 0)} models) and {args.references} reference "
            f"networks, written in {plan_s:.0f} s. Check: {args.n} other random architectures, "
            "each measured end to end in three passes (median pass kept).",
            "",
            "| threads | estimate | within ±5% | within ±10% | MAPE | Spearman |",
            "| --- | --- | --- | --- | --- | --- |",
            *rows,
            "",
            "| threads | profiling (timing the plan) | check | convolutions found in the profile "
            "| calibration residual (references) | predictor throughput (architectures/s, 10,000 random) |",
            "| --- | --- | --- | --- | --- | --- |",
            *extra,
        ]
    )
    print(text)
    if not args.no_write:
        write_section(text)


if __name__ == "__main__":
    main()
