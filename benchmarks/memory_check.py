"""Peak memory: the analytic estimate, calibrated, against ONNX Runtime's measured peak.

Samples architectures from the default ``edge`` space that the calibration never saw, measures
each in a fresh process as ``edgenas-device`` does (peak resident memory of a process that loads
the model and runs it, minus the same process without the model), and writes the raw analytic
estimate, the calibrated one and the measurement side by side to BENCHMARKS.md.

    python benchmarks/memory_check.py --n 20 --seed 2

``--fit 60`` first measures 60 architectures of ``--fit-seed`` and fits the calibration on them
(how the defaults in ``edgenas.cost.MemoryCalibration`` were made); the check then uses that fit.
Architectures of the calibration set are never checked.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from typing import Any

import numpy as np
import onnxruntime
import torch
from _section import write_section

from edgenas.arch import Genotype, build_model, export_onnx
from edgenas.cost import AnalyticCosts, MemoryCalibration, analytic_costs
from edgenas.device import device_info, measure_onnx_memory
from edgenas.space import edge_space

MARK = "memory_check"
IN_CHANNELS, NUM_CLASSES = 3, 10


def sample(seed: int, n: int, exclude: set[str] | None = None) -> list[Genotype]:
    exclude = exclude or set()
    rng = np.random.default_rng(seed)
    space = edge_space()
    out: list[Genotype] = []
    while len(out) < n:
        g = space.sample(rng)
        if str(g) not in exclude and all(str(g) != str(o) for o in out):
            out.append(g)
    return out


def measure(
    genotypes: list[Genotype], threads: int, baselines: dict[Any, float]
) -> list[tuple[AnalyticCosts, float]]:
    rows = []
    for i, g in enumerate(genotypes):
        torch.manual_seed(0)
        model = export_onnx(build_model(g, IN_CHANNELS, NUM_CLASSES))
        peak = measure_onnx_memory(model, threads=threads, baseline_mb=baselines).peak_mb
        rows.append((analytic_costs(g, IN_CHANNELS, NUM_CLASSES), peak))
        print(f"[{i + 1}/{len(genotypes)}] {peak:7.1f} MB  {g}", file=sys.stderr, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20, help="architectures to check")
    parser.add_argument("--seed", type=int, default=2, help="seed of the checked architectures")
    parser.add_argument("--fit", type=int, default=0,
                        help="measure this many architectures and fit the calibration first")  # fmt: skip
    parser.add_argument("--fit-seed", type=int, default=1, help="seed of the calibration set")
    parser.add_argument("--calibration-size", type=int, default=60,
                        help="size of the calibration set the defaults were fitted on "
                        "(its architectures are never checked)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads")
    parser.add_argument("--no-write", action="store_true", help="print, do not touch BENCHMARKS.md")
    args = parser.parse_args()
    torch.set_num_threads(1)

    started = time.perf_counter()
    calibration_set = sample(args.fit_seed, max(args.fit, args.calibration_size))
    baselines: dict[Any, float] = {}
    calibration = MemoryCalibration()
    fit_line = (
        f"Calibration: the defaults of `MemoryCalibration`, fitted on {args.calibration_size} "
        f"other architectures of the space (`--fit {args.calibration_size} --fit-seed "
        f"{args.fit_seed}`)."
    )
    if args.fit:
        fitted = MemoryCalibration.fit(
            measure(calibration_set[: args.fit], args.threads, baselines),
            f"fitted on {args.fit} architectures (seed {args.fit_seed})",
        )
        calibration = fitted
        fit_line = (
            f"Calibration fitted here on {args.fit} other architectures of the space (seed "
            f"{args.fit_seed})."
        )
        print(f"fitted: {fitted}", file=sys.stderr)
    checked = sample(args.seed, args.n, exclude={str(g) for g in calibration_set})
    rows = measure(checked, args.threads, baselines)
    seconds = time.perf_counter() - started

    raw = np.array([a.peak_memory_mb for a, _ in rows])
    calibrated = np.array([calibration.peak_memory_mb(a) for a, _ in rows])
    measured = np.array([m for _, m in rows])
    error = calibrated / measured - 1
    raw_error = raw / measured - 1
    within = int(np.sum(np.abs(error) <= 0.2))

    machine = device_info()["device"]
    lines = [
        "## Peak memory: analytic estimate against ONNX Runtime",
        "",
        f"Measured {dt.date.today().isoformat()} on {machine['cpu']}, {machine['cores']} cores, "
        f"{machine['os']}, ONNX Runtime {onnxruntime.__version__}, {args.threads} thread(s), "
        f"batch 1, {IN_CHANNELS} input channels, {NUM_CLASSES} classes; {seconds:.0f} s.",
        "",
        f"Command: `python benchmarks/memory_check.py --n {args.n} --seed {args.seed}"
        + (f" --fit {args.fit} --fit-seed {args.fit_seed}" if args.fit else "")
        + f" --threads {args.threads}`",
        "",
        "Measured: peak resident memory of a fresh process that creates the session and runs "
        "three inferences, minus the peak of the same process without the model (ONNX Runtime "
        "and NumPy imported, the input allocated); the median of three such processes (now and "
        "then one peaks 2–3 MB higher). Analytic: fp32 weights plus the largest set "
        "of activations alive at once. Calibrated: "
        f"{calibration.weights_factor:.3f} × weights + {calibration.activations_factor:.3f} × "
        f"activations + {calibration.overhead_mb:.2f} MB. {fit_line}",
        "",
        f"**{within} of {len(rows)} within ±20%** (calibrated); mean absolute error "
        f"{100 * np.mean(np.abs(error)):.1f}%, largest {100 * np.max(np.abs(error)):.1f}%. "
        f"The raw analytic estimate is within ±20% for {int(np.sum(np.abs(raw_error) <= 0.2))} "
        f"of {len(rows)} (it leaves out the runtime's copies of the weights, its arena and the "
        "session itself). The coefficients hold for this CPU family and runtime version: a "
        "device profile with measured peaks (`edgenas-device`) fits its own.",
        "",
        "| # | weights (MB) | activations (MB) | analytic (MB) | calibrated (MB) | measured (MB) "
        "| error |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for i, ((a, m), c, e) in enumerate(zip(rows, calibrated, error, strict=True)):
        lines.append(
            f"| {i + 1} | {a.size_mb:.2f} | {a.peak_activation_mb:.2f} | {a.peak_memory_mb:.2f} "
            f"| {c:.1f} | {m:.1f} | {100 * e:+.1f}% |"
        )
    lines += ["", "Architectures:", ""]
    lines += [f"{i + 1}. `{g}`" for i, g in enumerate(checked)]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section(MARK, text)


if __name__ == "__main__":
    main()
