"""Finalize an ELPV search: the model after each step (full training, distillation, structured
pruning, INT8), measured here, written to BENCHMARKS.md.

Runs ``edgenas finalize RUN --distill --prune structured --target-latency 70% --json`` on a
finished ELPV search (by default it first runs one: ``edgenas search elpv`` with a 3 ms limit
for 15 minutes) and reports, per step, holdout accuracy with its Wilson interval, latency
(every step's ONNX file timed side by side by finalize), peak memory and file size, with the
INT8 speed-up and the pruning's latency cut as ratios of figures from the same run.

    python benchmarks/elpv_finalize.py [--run runs/elpv-finalize] [--reuse]

Run it alone on the machine: latency ratios are only as fair as the machine is quiet.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from _section import cpu_name, write_section

MARK = "elpv_finalize"


def _search(run: Path, budget: str) -> None:
    command = [sys.executable, "-m", "edgenas", "search", "elpv", "--strategy", "guided",
               "--max-latency", "3ms", "--resolution", "64", "--epochs", "3",
               "--time-budget", budget, "--trials", "1000", "--seed", "0", "--out", str(run)]  # fmt: skip
    print("running", " ".join(command[1:]), flush=True)
    subprocess.run(command, check=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", default="runs/elpv-finalize", help="a finished ELPV search")
    p.add_argument("--budget", default="15m", help="search time budget when --run is missing")
    p.add_argument("--target-latency", default="70%")
    p.add_argument("--epochs", type=int, default=None, help="finalize --epochs")
    p.add_argument("--reuse", action="store_true", help="write the section from final.json")
    args = p.parse_args()

    run = Path(args.run)
    if not (run / "results.json").exists():
        _search(run, args.budget)
    command = [sys.executable, "-m", "edgenas", "finalize", str(run), "--distill",
               "--prune", "structured", "--target-latency", args.target_latency, "--json"]  # fmt: skip
    if args.epochs:
        command += ["--epochs", str(args.epochs)]
    seconds = None
    if not args.reuse:
        print("running", " ".join(command[1:]), flush=True)
        started = time.perf_counter()
        proc = subprocess.run(command, stdout=subprocess.PIPE, text=True)
        seconds = time.perf_counter() - started
        if proc.returncode:
            sys.exit(f"finalize failed ({proc.returncode})")
    report = json.loads((run / "final" / "final.json").read_text())
    steps = {s["name"]: s for s in report["steps"]}
    best = report["candidates"][0]

    def acc(s: dict) -> str:
        lo, hi = s["holdout_interval"]
        return f"{100 * s['holdout_accuracy']:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"

    rows = [
        "| step | kept | validation | holdout [Wilson 95%] | latency ms | peak memory MB "
        "| size MB | params | MACs | step time |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in report["steps"]:
        memory = "–" if s["peak_memory_mb"] is None else f"{s['peak_memory_mb']:.1f}"
        rows.append(
            f"| {s['name']} | {'yes' if s['kept'] else 'no'} | {100 * s['val_accuracy']:.1f}% "
            f"| {acc(s)} | {s['latency_ms']:.3f} | {memory} | {s['size_mb']:.3f} "
            f"| {s['params']:,} | {s['macs']:,} | {s['seconds']:.0f} s |"
        )
    kept_fp32 = [s for s in report["steps"] if s["kept"] and s["name"] != "int8"]
    before_prune = [s for s in kept_fp32 if s["name"] != "structured pruning"][-1]
    lines = []
    pruned = steps.get("structured pruning")
    if pruned:
        cut = 1 - pruned["latency_ms"] / before_prune["latency_ms"]
        loss = 100 * (before_prune["holdout_accuracy"] - pruned["holdout_accuracy"])
        vloss = 100 * (before_prune["val_accuracy"] - pruned["val_accuracy"])
        t = pruned["detail"]["target"]
        lines.append(
            f"- Structured pruning (target {t['given']} of {before_prune['name']}'s latency, "
            f"= {t['value']:.3f} ms when it was measured): latency **{100 * cut:.0f}% lower** "
            f"than {before_prune['name']} ({before_prune['latency_ms']:.3f} → "
            f"{pruned['latency_ms']:.3f} ms, side by side), accuracy change "
            f"{-loss:+.1f} points on the holdout, {-vloss:+.1f} on validation."
        )
    int8 = steps.get("int8")
    if int8:
        source = kept_fp32[-1]
        speed = source["latency_ms"] / int8["latency_ms"]
        loss = 100 * (source["holdout_accuracy"] - int8["holdout_accuracy"])
        lines.append(
            f"- INT8 ({int8['detail']['method']}): **{speed:.2f}×** faster than the fp32 model "
            f"it came from ({source['latency_ms']:.3f} → {int8['latency_ms']:.3f} ms), "
            f"accuracy change {-loss:+.1f} points on the holdout, top-1 agreement with fp32 "
            f"{100 * int8['onnx_check']['top1_agreement']:.1f}%, file "
            f"{source['size_mb'] / int8['size_mb']:.1f}× smaller."
        )
    distilled = steps.get("distillation")
    if distilled:
        d = distilled["detail"]
        lines.append(
            f"- Distillation (teacher {d['teacher']['source']}, alpha {d['alpha']}, T "
            f"{d['temperature']}): validation {100 * distilled['val_accuracy']:.1f}% against "
            f"{100 * d['without']['val_accuracy']:.1f}% without a teacher, holdout "
            f"{100 * distilled['holdout_accuracy']:.1f}% against "
            f"{100 * d['without']['holdout_accuracy']:.1f}%: "
            f"{'kept' if distilled['kept'] else 'not kept'}."
        )
    took = f"{seconds / 60:.1f} min" if seconds else "not timed (--reuse)"
    text = "\n".join(
        [
            "## Finalize on ELPV: the model after each step",
            "",
            f"{dt.date.today().isoformat()} · {cpu_name()}, {os.cpu_count()} cores · "
            f"`python benchmarks/elpv_finalize.py --run {run}` (finalize took {took}).",
            "",
            f"Trial {best['trial']} of an ELPV search (`{best['genotype']}`), retrained for "
            f"{best['epochs']} epochs; {best['holdout_images']} holdout images. Accuracy is that "
            "of each step's ONNX file with ONNX Runtime; latency is batch 1, 1 thread, every "
            "step's file timed side by side in interleaved rounds (median of 7); peak memory is "
            "what loading and running the model adds to a fresh process.",
            "",
            *rows,
            "",
            *lines,
        ]
    )
    write_section(MARK, text)
    print(text)


if __name__ == "__main__":
    main()
