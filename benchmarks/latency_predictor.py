"""Latency predictor: profile this machine, then check the predictor against measurements.

For each thread count: time a plan of the default space (``edgenas profile plan`` defaults:
the distinct convolutions of 2000 random architectures and 200 reference networks), then
measure 100 fresh random architectures end to end (three passes, median kept) and compare the
predictor, a FLOPs-proportional estimate and the plain sum of operator latencies with them, and
time 50 of the profile's own reference networks again (the ceiling the machine's noise sets).
Also times the predictor on 10,000 architectures. Writes the table to BENCHMARKS.md.

    python benchmarks/latency_predictor.py --threads 1 2 [--check-seed 20261204]

The check's architectures come from ``--check-seed``. Its default is a seed no revision of the
predictor was tuned on (revisions up to 2026-11-29 were checked on seed 1), and the check never
measures one of the profile's reference networks. Every run appends its figures to
``benchmarks/results/latency_predictor.json``. The section lists every recorded run, and its
1-thread predictor's ``log_ratio_sd`` is the latency error ``benchmarks/nb201_strategies.py``
gives ``edgenas bench nb201`` in realistic mode.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _section import write_section

from edgenas.arch import Genotype
from edgenas.cost import LatencyPredictor
from edgenas.device import device_info, profile_plan, read_plan
from edgenas.errors import EdgenasError
from edgenas.profile import check_profile, load_profile, write_plan
from edgenas.space import StagedSpace, load_space

ROOT = Path(__file__).resolve().parent.parent
MARK = "latency_predictor"
RECORDS = ROOT / "benchmarks" / "results" / "latency_predictor.json"
FRESH_SEED = 20261204  # no revision of the predictor has seen these architectures


def mutation_stream(space: StagedSpace, n: int, seed: int) -> list[Genotype]:
    """What an evolutionary search proposes: children of a population of 100, each differing
    from its parent in one label."""
    rng = np.random.default_rng(seed)
    population = [space.encode(space.sample(rng)) for _ in range(100)]
    labels = list(space.distributions())
    children = []
    while len(children) < n:
        params = dict(population[int(rng.integers(len(population)))])
        label = labels[int(rng.integers(len(labels)))]
        params[label] = rng.choice(space.distributions()[label].choices)  # type: ignore[attr-defined]
        try:
            child = space.decode(params)
        except EdgenasError:  # a choice the rest of the genotype cannot take
            continue
        children.append(child)
        population[int(rng.integers(len(population)))] = space.encode(child)
    return children


def throughput(profile: dict[str, Any], space: StagedSpace, n: int = 10_000) -> dict[str, float]:
    """Architectures per second of ``predict_many`` (medians of three runs, each with a new
    predictor): random architectures, where nearly every block is new to the predictor's
    cache; the same again (all cached); and a mutation stream as a search proposes it."""
    rng = np.random.default_rng(7)
    fresh = [space.sample(rng) for _ in range(n)]
    stream = mutation_stream(space, n, seed=8)
    rates: dict[str, list[float]] = {"random": [], "cached": [], "mutations": []}
    for _ in range(3):
        for name, genotypes, new in (("random", fresh, True), ("cached", fresh, False),
                                     ("mutations", stream, True)):  # fmt: skip
            if new:
                predictor = LatencyPredictor(profile, 3, 10)
            t0 = time.perf_counter()
            predictor.predict_many(genotypes)
            rates[name].append(len(genotypes) / (time.perf_counter() - t0))
    return {name: float(np.median(r)) for name, r in rates.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--architectures", type=int, default=2000)
    parser.add_argument("--references", type=int, default=200)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--check-seed", type=int, default=FRESH_SEED,
                        help="seed of the check's random architectures")  # fmt: skip
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "latency-bench")
    parser.add_argument("--no-write", action="store_true", help="print, do not touch BENCHMARKS.md")
    parser.add_argument(
        "--recheck",
        action="store_true",
        help="keep the plan and profiles of an earlier run; check again",
    )
    parser.add_argument("--reuse", action="store_true",
                        help="keep the plan, profiles and check figures of an earlier run in "
                        "--work; measure the throughput again")  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.work.mkdir(parents=True, exist_ok=True)
    space = load_space("edge")
    assert isinstance(space, StagedSpace)
    plan = args.work / "plan.zip"
    plan_file = args.work / "plan.json"
    if not ((args.reuse or args.recheck) and plan_file.exists()):
        t0 = time.perf_counter()
        counts = write_plan(space, plan, architectures=args.architectures,
                            references=args.references)  # fmt: skip
        plan_file.write_text(json.dumps({"counts": counts, "seconds": time.perf_counter() - t0}))
    written = json.loads(plan_file.read_text())
    counts, plan_s = written["counts"], written["seconds"]
    coverage = read_plan(plan)[0].get("coverage", {}).get("convolutions", float("nan"))
    print(f"plan: {counts} in {plan_s:.0f} s, coverage {coverage:.3f}", file=sys.stderr)

    rows, extra = [], []
    for threads in args.threads:
        out = args.work / f"profile-t{threads}.json"
        figures_file = args.work / f"check-t{threads}.json"
        reuse = (args.reuse or args.recheck) and figures_file.exists()
        if not reuse:
            out.unlink(missing_ok=True)
            t0 = time.perf_counter()
            profile_plan(plan, out, threads=threads, memory=False)
            profile_s = time.perf_counter() - t0
        else:
            profile_s = json.loads(figures_file.read_text())["profile_s"]
        if not reuse or args.recheck:
            t0 = time.perf_counter()
            figures = check_profile(load_profile(out), space, args.n, seed=args.check_seed)
            figures["check_seed"] = args.check_seed
            figures["profile_s"], figures["check_s"] = profile_s, time.perf_counter() - t0
            figures_file.write_text(json.dumps(figures))
        figures = json.loads(figures_file.read_text())
        rates = throughput(load_profile(out), space)
        print(threads, figures, rates, file=sys.stderr)
        estimates = [(figures[name], label) for name, label in (
            ("predictor", "predictor"), ("flops", "FLOPs-proportional"),
            ("block_sum", "sum of operators, uncalibrated"))]  # fmt: skip
        steady = figures.get("at_profile_speed", {})
        if "predictor" in steady:
            estimates.append((steady["predictor"],
                              "predictor, measurements at the profile's speed"))  # fmt: skip
        if "repeat" in figures:
            n_again = figures["repeat"]["n"]
            estimates.append((figures["repeat"], f"the profile's own timing of {n_again} "
                              "reference networks (the ceiling)"))  # fmt: skip
        if "repeat" in steady:
            estimates.append((steady["repeat"], "the same, at the profile's speed"))
        for f, label in estimates:
            rows.append(f"| {threads} | {label} | {100 * f['within_5']:.0f}% | "
                        f"{100 * f['within_10']:.0f}% | {f['mape']:.1f}% | "
                        f"{f['spearman']:.3f} |")  # fmt: skip
        extra.append(
            f"| {threads} | {figures['profile_s'] / 60:.1f} min | {figures['check_s'] / 60:.1f} min | "
            f"{100 * figures['coverage']:.1f}% | {100 * figures['calibration_residual']:.1f}% | "
            f"{rates['random']:,.0f} · {rates['cached']:,.0f} · {rates['mutations']:,.0f} | "
            f"{figures.get('speed_now_vs_profile', float('nan')):.2f} |"
        )
    info = device_info()
    records = json.loads(RECORDS.read_text()) if RECORDS.exists() else []
    if not (args.reuse and not args.recheck):  # a check ran: keep it, whatever it says
        for threads in args.threads:
            figures = json.loads((args.work / f"check-t{threads}.json").read_text())
            records.append({
                "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "cpu": info["device"]["cpu"], "threads": threads,
                "check_seed": figures.get("check_seed", 1), "n": figures["n"],
                "predictor": figures["predictor"],
                "at_profile_speed": figures.get("at_profile_speed", {}).get("predictor"),
            })  # fmt: skip
        RECORDS.parent.mkdir(parents=True, exist_ok=True)
        RECORDS.write_text(json.dumps(records, indent=1) + "\n")
    history = [
        f"| {r['date'][:10]} | {r['threads']} | {r['check_seed']} | {r['n']} "
        f"| {100 * r['predictor']['within_10']:.0f}% | {r['predictor']['mape']:.1f}% "
        f"| {r['predictor'].get('log_ratio_sd', float('nan')):.3f} |"
        for r in records
    ]
    text = "\n".join(
        [
            "## Latency predictor",
            "",
            f"{dt.date.today().isoformat()} · {info['device']['cpu']}, "
            f"{info['device']['cores']} cores · ONNX Runtime {info['runtime']['version']} (CPU) · "
            "`python benchmarks/latency_predictor.py --threads "
            + " ".join(map(str, args.threads))
            + (" --recheck" if args.recheck else " --reuse" if args.reuse else "")
            + "`"
            + (" (the profiles of the run before it, checked again later)" if args.recheck else "")
            + (
                " (the profiles and checks of the run just before it; throughput measured again)"
                if args.reuse and not args.recheck
                else ""
            ),
            "",
            f"Plan: the distinct convolutions of {args.architectures} random architectures of "
            f"the `edge` space ({counts.get('conv', 0)} models) and {args.references} reference "
            f"networks, written in {plan_s:.0f} s; its convolutions are {100 * coverage:.1f}% of "
            "those of other random architectures. Check: "
            f"{args.n} other random architectures (seed {args.check_seed}, none of them a "
            "reference network), each measured end to end in three passes "
            "(median pass kept). Throughput: `predict_many` on 10,000 architectures: random "
            "ones (nearly every block new to the predictor's cache), the same again (cached), "
            "and a mutation stream as an evolutionary search proposes it (children of a "
            "population of 100, one label changed), each with a new predictor. The machine's "
            "speed drifts: the profile's anchor model, timed during the check, gives the ratio "
            "in the last column, and the rows 'at the profile's speed' divide every "
            "measurement by that drift. The ceiling: the profile's own reference networks "
            "(up to 50), timed again in the check's passes, scored with their profiled latency as the "
            "prediction; no predictor built from the profile can do much better than the "
            "machine agrees with itself.",
            "",
            "| threads | estimate | within ±5% | within ±10% | MAPE | Spearman |",
            "| --- | --- | --- | --- | --- | --- |",
            *rows,
            "",
            "| threads | profiling (timing the plan) | check | convolutions found in the profile "
            "| calibration residual (references) | predictor throughput, architectures/s: random · cached · mutations "
            "| anchor model during the check: ratio to the profile |",
            "| --- | --- | --- | --- | --- | --- | --- |",
            *extra,
            "",
            "Every check recorded (from 2026-12-04 on; each run of the day, not the best), the "
            "predictor against measurements as they came. *log-ratio sd*: the standard "
            "deviation of log(predicted / measured), the latency error the realistic "
            "NAS-Bench-201 mode takes from the latest 1-thread run.",
            "",
            "| date | threads | check seed | architectures | within ±10% | MAPE | log-ratio sd |",
            "| --- | --- | --- | --- | --- | --- | --- |",
            *history,
        ]
    )
    print(text)
    if not args.no_write:
        write_section(MARK, text)


if __name__ == "__main__":
    main()
