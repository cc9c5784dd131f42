"""ELPV with four defect levels: the model a search chooses by plain accuracy against the one
it chooses by balanced accuracy (and with the loss's classes weighted), same budget and seed.

``elpv4`` labels each solar cell by its annotated defect probability (0, 1/3, 2/3, 1); most
cells are at 0 and the smallest class holds about 4% of them, so a model that misses most
defects still scores well on accuracy. Each setting runs the same search (strategy, trials,
epochs, resolution, latency limit, seed); the chosen best's validation and holdout figures are
read from ``results.json`` (``best_details``: ``validation_report``, ``holdout_report``). The
holdout is never used to choose: it only reports. Every run is listed, and kept in
``benchmarks/results/elpv4_metric.json``. A run folder under ``--work`` that finished before is
read back rather than trained again, so more seeds can be added to earlier ones.

    python benchmarks/elpv4_metric.py [--trials 10] [--epochs 4] [--resolution 64]
        [--max-latency 1ms] [--seeds 0] [--work runs/elpv4-metric]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from _section import cpu_name, write_section

import edgenas
from edgenas.finalize import wilson_interval

MARK = "elpv4_metric"
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "elpv4_metric.json"
SETTINGS = {
    "accuracy": {"metric": "accuracy"},
    "balanced accuracy": {"metric": "balanced-accuracy"},
    "balanced accuracy, balanced class weights": {
        "metric": "balanced-accuracy",
        "class_weights": "balanced",
    },
}


def run(name: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    out = args.work / f"{name.replace(' ', '_').replace(',', '')}-seed{seed}"
    started = time.perf_counter()
    result = edgenas.search(
        "elpv4",
        out=out,
        trials=args.trials,
        epochs=args.epochs,
        max_latency=args.max_latency,
        strategy=args.strategy,
        space=edgenas.edge_space(resolutions=str(args.resolution)),
        seed=seed,
        **SETTINGS[name],
    )
    details = result.best_details or {}
    return {
        "setting": name,
        "seed": seed,
        "options": SETTINGS[name],
        "trained": sum(t.trained for t in result.trials),
        "minutes": (time.perf_counter() - started) / 60,
        "best": result.best.number if result.best else None,
        "genotype": result.best.genotype if result.best else None,
        "validation": details.get("validation_report"),
        "holdout": details.get("holdout_report"),
        "majority": result.results.get("majority_baseline"),
    }


def _mean_ci(values: list[float], *, signed: bool = False) -> str:
    """Mean [95% interval of the mean, Student's t] in percent (points when ``signed``)."""
    from scipy import stats

    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{100 * mean:+.1f}" if signed else _pct(mean)
    half = stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    if signed:
        return f"{100 * mean:+.1f} points [{100 * (mean - half):+.1f}, {100 * (mean + half):+.1f}]"
    return f"{_pct(mean)} [{100 * (mean - half):.1f}, {100 * (mean + half):.1f}]"


def _pct(value: float | None) -> str:
    return "–" if value is None or math.isnan(value) else f"{100 * value:.1f}%"


def _recalls(report: dict[str, Any]) -> str:
    parts = []
    for name in report["classes"]:
        row = report["per_class"][name]
        found = report["confusion_matrix"][report["classes"].index(name)]
        hits = found[report["classes"].index(name)]
        parts.append(f"{name} {_pct(row['recall'])} ({hits}/{row['support']})")
    return " · ".join(parts)


def section(runs: list[dict[str, Any]], args: argparse.Namespace, command: str) -> str:
    first = runs[0]
    majority = first["majority"]["holdout"]
    holdout_images = first["holdout"]["images"]
    lines = [
        "## elpv4: choosing by balanced accuracy against plain accuracy",
        "",
        f"Machine: {cpu_name()}, {os.cpu_count()} cores; {dt.date.today().isoformat()}. "
        f"Command: `{command}`. Each setting: strategy {args.strategy}, {args.trials} "
        f"trainings of {args.epochs} epochs at {args.resolution} px, latency ≤ "
        f"{args.max_latency}, seeds {', '.join(str(s) for s in args.seeds)}; the same seed "
        f"gives the same split and the same first proposals.",
        "",
        f"Always answering {majority['class']!r} scores accuracy {_pct(majority['accuracy'])} "
        f"and balanced accuracy {_pct(majority['balanced_accuracy'])} on the holdout "
        f"({holdout_images} images).",
        "",
        "| chosen by | seed | holdout balanced acc. | holdout acc. [95% CI] "
        "| holdout recall per class (found/images) | val balanced acc. | val acc. |",
        "| --- | --- | ---: | --- | --- | ---: | ---: |",
    ]
    for r in runs:
        hold, val = r["holdout"], r["validation"]
        correct = round(hold["accuracy"] * hold["images"])
        low, high = wilson_interval(correct, hold["images"])
        lines.append(
            f"| {r['setting']} | {r['seed']} | {_pct(hold['balanced_accuracy'])} | "
            f"{_pct(hold['accuracy'])} [{100 * low:.1f}, {100 * high:.1f}] | "
            f"{_recalls(hold)} | {_pct(val['balanced_accuracy'])} | {_pct(val['accuracy'])} |"
        )
    if len(args.seeds) > 1:
        lines += [
            "",
            f"Over the {len(args.seeds)} seeds: the mean with its 95% interval (Student's t), "
            "the median, and the change against choosing by accuracy, paired by seed "
            "(seeds better / equal / worse).",
            "",
            "| chosen by | holdout balanced acc., mean [95% CI] | median | holdout acc., mean "
            "[95% CI] | balanced acc. against accuracy, mean [95% CI] | better / equal / worse |",
            "| --- | --- | ---: | --- | --- | --- |",
        ]
        by_seed = {
            name: {r["seed"]: r["holdout"] for r in runs if r["setting"] == name}
            for name in SETTINGS
        }
        plain = by_seed["accuracy"]
        for name, mine in by_seed.items():
            balanced = [h["balanced_accuracy"] for h in mine.values()]
            accuracy = [h["accuracy"] for h in mine.values()]
            change = "–"
            counts = "–"
            if name != "accuracy":
                diffs = [
                    mine[seed]["balanced_accuracy"] - plain[seed]["balanced_accuracy"]
                    for seed in mine
                    if seed in plain
                ]
                change = _mean_ci(diffs, signed=True)
                counts = (
                    f"{sum(d > 1e-9 for d in diffs)} / {sum(abs(d) <= 1e-9 for d in diffs)} / "
                    f"{sum(d < -1e-9 for d in diffs)}"
                )
            lines.append(
                f"| {name} | {_mean_ci(balanced)} | {_pct(statistics.median(balanced))} | "
                f"{_mean_ci(accuracy)} | {change} | {counts} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--max-latency", default="1ms")
    parser.add_argument("--strategy", default="tpe")
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0])
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "elpv4-metric")
    args = parser.parse_args()
    # A run folder that finished before is read back, not trained again (the search resumes
    # with nothing to do); its minutes are the ones recorded when it ran.
    before = {}
    if RESULTS.exists():
        earlier = json.loads(RESULTS.read_text())
        same = ("trials", "epochs", "resolution", "max_latency", "strategy")
        if all(earlier["args"].get(k) == str(getattr(args, k)) for k in same):
            before = {(r["setting"], r["seed"]): r for r in earlier["runs"]}
    runs = []
    for seed in args.seeds:
        for name in SETTINGS:
            runs.append(run(name, seed, args))
            again = before.get((name, seed))
            if again is not None and again["genotype"] == runs[-1]["genotype"]:
                runs[-1]["minutes"] = again["minutes"]
            print(json.dumps(runs[-1]["holdout"], indent=None)[:300], flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    shown = {k: str(v) for k, v in vars(args).items()}
    # Where the runs went, relative to the repository when inside it: no machine's paths.
    shown["work"] = os.path.relpath(args.work, ROOT) if args.work.is_relative_to(ROOT) else "."
    RESULTS.write_text(json.dumps({"args": shown,
                                   "runs": runs}, indent=1))  # fmt: skip
    command = "python benchmarks/elpv4_metric.py " + " ".join(sys.argv[1:])
    text = section(runs, args, command.strip())
    write_section(MARK, text)
    print(text)


if __name__ == "__main__":
    main()
