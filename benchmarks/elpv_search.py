"""ELPV: a search under a latency limit against the four baselines trained the same way.

Runs ``edgenas.search`` on the built-in ELPV data for a fixed time budget, then trains each
baseline (same data split, recipe, epochs and resolution), and writes holdout accuracy, latency
measured on this machine, parameters and time side by side to BENCHMARKS.md.

    python benchmarks/elpv_search.py --budget 12m --max-latency 1ms --epochs 6 --resolution 64
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import torch
from _section import write_section

import edgenas
from edgenas.arch import baseline, build_model
from edgenas.cost import CostModel, analytic_costs, parse_latency
from edgenas.data import load_dataset
from edgenas.device import device_info
from edgenas.finalize import wilson_interval
from edgenas.study import open_study
from edgenas.train import Fidelity, TrainConfig, evaluate, fit

MARK = "elpv_search"


def train_baseline(name: str, data: edgenas.data.ImageDataset, args: argparse.Namespace,
                   cost: CostModel) -> dict[str, object]:  # fmt: skip
    g = baseline(name, args.resolution)
    torch.manual_seed(args.seed)
    model = build_model(g, data.channels, data.num_classes, data.mean, data.std)
    started = time.perf_counter()
    result = fit(model, data, Fidelity(epochs=args.epochs), resolution=g.resolution,
                 seed=args.seed, config=TrainConfig())  # fmt: skip
    seconds = time.perf_counter() - started
    holdout = torch.as_tensor(data.splits.holdout)
    accuracy = evaluate(model, data.images(g.resolution)[holdout],
                        torch.as_tensor(data.labels)[holdout])  # fmt: skip
    return {
        "name": name,
        "val": result.accuracy,
        "holdout": accuracy,
        "latency": cost.latency_ms(g, fresh=True),
        "params": analytic_costs(g, data.channels, data.num_classes).params,
        "seconds": seconds,
        "genotype": str(g),
    }


def result_study_trials(run_dir: str) -> list[optuna.trial.FrozenTrial]:
    return open_study(Path(run_dir)).get_trials(deepcopy=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", default="12m", help="search time budget")
    parser.add_argument("--max-latency", default="1ms")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--width", default="0.5", help="baseline width multiplier")
    parser.add_argument("--strategy", default="tpe")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/bench-elpv")
    parser.add_argument("--no-write", action="store_true", help="print, do not touch BENCHMARKS.md")
    args = parser.parse_args()
    limit = parse_latency(args.max_latency)

    started = time.perf_counter()
    result = edgenas.search(
        "elpv", out=args.out, max_latency=limit, time_budget=args.budget,
        trials=10_000, epochs=args.epochs, strategy=args.strategy, seed=args.seed,
        space=edgenas.edge_space(resolutions=str(args.resolution)),
    )  # fmt: skip
    # From the study's own clock, so a search resumed after an interruption is timed whole.
    finished = [t for t in result_study_trials(args.out) if t.datetime_complete]
    search_seconds = (
        (
            max(t.datetime_complete for t in finished) - min(t.datetime_start for t in finished)
        ).total_seconds()
        if finished
        else time.perf_counter() - started
    )
    best = result.best_details
    trained = sum(t.trained for t in result.trials)

    data = load_dataset("elpv", cache_dir=Path(args.out) / "cache", seed=args.seed)
    cost = CostModel(data.channels, data.num_classes, threads=1)
    rows = [train_baseline(f"{name}:{args.width}", data, args, cost)
            for name in edgenas.arch.BASELINES]  # fmt: skip

    machine = device_info()["device"]
    holdout_labels = data.labels[data.splits.holdout]

    def holdout_text(accuracy: float) -> str:
        low, high = wilson_interval(round(accuracy * len(holdout_labels)), len(holdout_labels))
        return f"{100 * accuracy:.1f}% [{100 * low:.1f}, {100 * high:.1f}]"

    lines = [
        "## ELPV: search against baselines",
        "",
        f"Measured {dt.date.today().isoformat()} on {machine['cpu']}, {machine['cores']} cores, "
        f"torch {torch.__version__}, Python {sys.version.split()[0]}. Latency: ONNX Runtime, "
        "1 thread, batch 1, median of repeats, measured again after training.",
        "",
        f"Command: `python benchmarks/elpv_search.py --budget {args.budget} --max-latency "
        f"{args.max_latency} --epochs {args.epochs} --resolution {args.resolution} "
        f"--width {args.width} --strategy {args.strategy} --seed {args.seed}`",
        "",
        f"The search ({args.strategy}) ran {search_seconds / 60:.1f} min: {len(result.trials)} "
        f"candidates proposed, {trained} trained, "
        f"{sum(t.state == 'infeasible' for t in result.trials)} rejected by the "
        f"{limit:g} ms limit without training, "
        f"{sum(t.state == 'pruned' for t in result.trials)} stopped early. Every model below "
        f"was trained {args.epochs} epochs at {args.resolution}×{args.resolution} with the same "
        f"recipe and split (holdout: {len(holdout_labels)} images the search never saw; "
        f"validation: {len(data.splits.val)}). Holdout intervals are 95% Wilson intervals. The "
        f"edgenas best's validation accuracy is the highest of the {trained} candidates trained, "
        "all scored on the same validation images, so it is biased upward (the winner of many "
        "draws); its holdout accuracy, measured once, is not.",
        "",
        "| model | holdout acc [95%] | val acc | latency (ms) | ≤ limit | params | train time (s) |",
        "| --- | ---: | ---: | ---: | :---: | ---: | ---: |",
    ]
    if best:
        lat = best["latency_ms_measured"]
        lines.append(
            f"| **edgenas best** (trial {best['trial']}) | {holdout_text(best['holdout_accuracy'])} "
            f"| {100 * best['accuracy']:.1f}% (best of {trained}) | {lat:.3f} "
            f"| {'yes' if lat <= limit else 'no'} "
            f"| {result.best.costs.params if result.best and result.best.costs else 0:,} "
            f"| {result.best.train_seconds if result.best else 0:.0f} |"
        )
    else:
        lines.append("| edgenas best | no candidate met the limit | | | | | |")
    for r in rows:
        lat = float(r["latency"])  # type: ignore[arg-type]
        lines.append(
            f"| {r['name']} | {holdout_text(float(r['holdout']))} | "  # type: ignore[arg-type]
            f"{100 * float(r['val']):.1f}% | {lat:.3f} | {'yes' if lat <= limit else 'no'} | "  # type: ignore[arg-type]
            f"{int(r['params']):,} | {float(r['seconds']):.0f} |"  # type: ignore[call-overload, arg-type]
        )
    majority = float((holdout_labels == np.bincount(holdout_labels).argmax()).mean())
    half_width = 1.96 * math.sqrt(0.75 * 0.25 / len(holdout_labels))
    lines.append(f"| always the majority class | {holdout_text(majority)} | | | | | |")
    lines += [
        "",
        f"With {len(holdout_labels)} holdout images, a 95% interval on an accuracy near 75% is "
        f"±{100 * half_width:.1f} points: differences smaller than that are noise.",
    ]
    if best:
        lines += ["", f"Best genotype: `{best['genotype']}`"]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section(MARK, text)


if __name__ == "__main__":
    main()
