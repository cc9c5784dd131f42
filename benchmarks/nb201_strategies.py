"""Search strategies on NAS-Bench-201 with Raspberry Pi 4 latencies, at several latency caps.

Runs ``edgenas bench nb201 --json`` once per cap and mode (in parallel, one process each, with
one BLAS thread), then writes to BENCHMARKS.md, per cap, the regret after 25, 50, 100 and 200
trainings of every strategy: mean with its 95% bootstrap interval, median, and the share of
seeds that trained a feasible architecture at all. The headline is the ``realistic`` mode
(latency predicted with the latency predictor's error, no whole-space ranking: what a search
of the ``edge`` space with a device profile has); the ``exact`` mode (every latency known, this
small space ranked whole) follows as a bound. The goals (realistic mode, ≤ 10 ms, 100
trainings): our best strategy at most 0.15 mean regret, and significantly below
random-feasible and plain Optuna TPE; each goal line also compares it with our next best
strategy. Significance is a one-sided Wilcoxon signed-rank test on the seeds, paired (seed s of
every strategy faces the same predictor errors), at 5%.

    python benchmarks/nb201_strategies.py --table ../nb201_cifar10_raspi4.csv
    python benchmarks/nb201_strategies.py --table T.csv --caps 10 --seeds 5 --budget 100 \
        --strategies gp --mark nb201_gp     # Optuna's GP is slow: fewer seeds, own section
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _section import write_section

from edgenas.study import ENUMERATE

OURS = ("guided", "evolution", "reinforce", "tpe", "nsga2", "random")
REFERENCES = ("optuna-tpe", "optuna-nsga2", "random-feasible")
MODES = ("realistic", "exact")
GOAL_REGRET = 0.15  # our best strategy's mean regret, realistic mode, ≤ 10 ms, 100 trainings
ALPHA = 0.05
PREDICTOR_RECORDS = Path(__file__).resolve().parent / "results" / "latency_predictor.json"


def predictor_error() -> tuple[float | None, str]:
    """The realistic mode's latency error: the log-ratio sd of the latest 1-thread check that
    benchmarks/latency_predictor.py recorded, and where it comes from (None: none recorded,
    so ``edgenas bench`` takes its default)."""
    records = json.loads(PREDICTOR_RECORDS.read_text()) if PREDICTOR_RECORDS.exists() else []
    checks = [r for r in records if r["threads"] == 1 and r["predictor"].get("log_ratio_sd")]
    if not checks:
        return None, "edgenas's default (no check of the predictor is recorded here)"
    r = checks[-1]
    return round(float(r["predictor"]["log_ratio_sd"]), 4), (
        f"the latest 1-thread check of the latency predictor ({r['date'][:10]}, "
        f"{r['n']} architectures of seed {r['check_seed']}, MAPE {r['predictor']['mape']:.1f}%)"
    )


def run_cap(table: str, cap: float, mode: str, args: argparse.Namespace) -> dict:
    saved = Path(args.work) / f"{args.mark}-{mode}-{cap:g}ms.json"
    if args.reuse and saved.exists():
        return json.loads(saved.read_text())
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "edgenas", "bench", "nb201", "--table", table,
               "--max-latency", f"{cap:g}ms", "--budget", str(args.budget), "--seeds",
               str(args.seeds), "--strategies", args.strategies, "--mode", mode, "--json"]  # fmt: skip
    if mode == "realistic" and args.latency_error is not None:
        command += ["--latency-error", str(args.latency_error)]
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if proc.returncode:
        sys.exit(f"cap {cap:g} ms, {mode} mode failed:\n{proc.stderr}")
    out = json.loads(proc.stdout)
    out["wall_s"] = time.perf_counter() - started
    print(f"cap {cap:g} ms, {mode} mode: {out['wall_s']:.0f} s", flush=True)
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(out, indent=2))
    return out


def regret_cell(f: dict) -> str:
    if f["mean_regret"] is None:
        return "no feasible yet"
    low, high = f["ci95"]
    text = f"{f['mean_regret']:.3f} [{low:.3f}, {high:.3f}] ({f['median_regret']:.3f})"
    return (
        text if f["feasible_share"] == 1 else f"{text}; {f['feasible_share'] * 100:.0f}% of seeds"
    )


def table_md(result: dict, names: list[str]) -> str:
    checkpoints = list(next(iter(result["strategies"].values())))
    found_at = "100" if "100" in checkpoints else checkpoints[-1]
    head = "| strategy | " + " | ".join(f"regret @{c}" for c in checkpoints)
    head += f" | found @{found_at} | wasted @{checkpoints[-1]} | rejected | s/run |"
    lines = [head, "|" + " --- |" * (len(checkpoints) + 5)]
    for name in names:
        if name not in result["strategies"]:
            continue
        f = result["strategies"][name]
        lines.append(
            f"| {name} | " + " | ".join(regret_cell(f[c]) for c in checkpoints)
            + f" | {f[found_at]['found_optimum'] * 100:.0f}% "
            f"| {f[checkpoints[-1]]['infeasible_trainings']:.1f} "
            f"| {result['rejected'][name]:.1f} | {result['seconds'][name]:.2f} |"
        )  # fmt: skip
    return "\n".join(lines)


def cap_tables(results: list[dict], mode: str, names: list[str]) -> list[str]:
    """A titled table per cap."""
    lines = []
    for r in results:
        lines += ["", f"### ≤ {r['max_latency_ms']:g} ms, {mode}: best feasible "
                  f"{r['optimum']:g}% ({r['feasible_architectures']:,} of "
                  f"{r['architectures']:,} feasible)", "", table_md(r, names)]  # fmt: skip
    return lines


def regrets(result: dict, name: str, checkpoint: str) -> list[float]:
    """Per seed, in seed order; a seed with no feasible architecture counts as the worst
    (regret = the optimum itself, as if 0% accuracy) in the paired test only."""
    optimum = result["optimum"]
    return [optimum - (b if b is not None else 0.0)
            for b in result["strategies"][name][checkpoint]["best_per_seed"]]  # fmt: skip


def below(result: dict, a: str, b: str, checkpoint: str) -> tuple[bool, float]:
    """Whether ``a``'s regret is significantly below ``b``'s, and the p-value (one-sided
    Wilcoxon signed-rank test, paired by seed)."""
    from scipy import stats

    x, y = regrets(result, a, checkpoint), regrets(result, b, checkpoint)
    if all(u == v for u, v in zip(x, y, strict=True)):
        return False, 1.0
    p = float(stats.wilcoxon(x, y, alternative="less").pvalue)
    return p < ALPHA, p


def mean_text(result: dict, name: str, checkpoint: str) -> str:
    f = result["strategies"][name][checkpoint]
    if f["mean_regret"] is None:
        return f"{name}: no feasible architecture yet"
    low, high = f["ci95"]
    share = "" if f["feasible_share"] == 1 else f", {f['feasible_share'] * 100:.0f}% of seeds"
    return f"{name} {f['mean_regret']:.3f} [{low:.3f}, {high:.3f}]{share}"


def versus(result: dict, best: str, other: str, checkpoint: str) -> tuple[bool, str]:
    """Whether ``best`` is significantly below ``other``, and the words that say so."""
    significant, p = below(result, best, other, checkpoint)
    verdict = "significantly below" if significant else "not significantly below"
    return significant, f"{mean_text(result, other, checkpoint)}: {verdict} (p = {p:.3g})"


def goals_md(results: list[dict], ours: list[str], names: list[str]) -> list[str]:
    """The goal lines, from the realistic-mode results."""
    key = "100" if "100" in next(iter(results[0]["strategies"].values())) else None
    judge = next((r for r in results if r["max_latency_ms"] == 10.0), results[0])
    if not (ours and key and all(n in names for n in ("random-feasible", "optuna-tpe"))):
        return []

    def order(n: str) -> float:
        v = judge["strategies"][n][key]["mean_regret"]
        return float("inf") if v is None else float(v)

    ranked = sorted(ours, key=order)
    best, runner_up = ranked[0], (ranked[1] if len(ranked) > 1 else None)
    value = judge["strategies"][best][key]["mean_regret"]
    met = value is not None and value <= GOAL_REGRET
    lines = [
        f"- Our best strategy at ≤ {judge['max_latency_ms']:g} ms after 100 trainings is {best}: "
        f"{mean_text(judge, best, key)} mean regret (goal ≤ {GOAL_REGRET}: "
        f"{'met' if met else 'NOT met'})"
        + (f"; our next best there is {runner_up}." if runner_up else ".")
    ]
    references = ("random-feasible", "optuna-tpe")
    for r in results:
        if key not in r["strategies"][best]:
            continue
        rivals = [*references, *([runner_up] if runner_up else [])]
        verdicts = {other: versus(r, best, other, key) for other in rivals}
        goal = all(verdicts[other][0] for other in references)
        tail = (f" Goal (below both references): {'met' if goal else 'NOT met'}."
                if r is judge else "")  # fmt: skip
        lines.append(
            f"- ≤ {r['max_latency_ms']:g} ms, 100 trainings, {best} against "
            + "; ".join(words for _, words in verdicts.values()) + "." + tail
        )  # fmt: skip
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--table", required=True, help="CSV: index,arch,accuracy,latency_ms")
    p.add_argument("--caps", type=float, nargs="+", default=[5.0, 10.0, 20.0])
    p.add_argument("--budget", type=int, default=200)
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--strategies", default=",".join(OURS + REFERENCES))
    p.add_argument("--modes", default=",".join(MODES), help="realistic, exact or both")
    p.add_argument("--mark", default="nb201_strategies", help="BENCHMARKS.md section")
    p.add_argument("--work", default="runs/nb201-bench", help="where each run's JSON is kept")
    p.add_argument("--reuse", action="store_true", help="write the section from kept JSON")
    args = p.parse_args()
    args.latency_error, error_source = predictor_error()
    modes = [m for m in MODES if m in args.modes.split(",")]
    if not modes:
        sys.exit(f"--modes {args.modes!r}: give realistic, exact or both")

    jobs = [(mode, cap) for mode in modes for cap in args.caps]
    workers = min(len(jobs), os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        done = list(pool.map(lambda job: run_cap(args.table, job[1], job[0], args), jobs))
    results = {mode: [r for (m, _), r in zip(jobs, done, strict=True) if m == mode]
               for mode in modes}  # fmt: skip
    wall = sum(r.get("wall_s", 0.0) for r in done) / workers
    names = args.strategies.split(",")
    ours = [n for n in names if n not in REFERENCES]

    text = [
        "## Search strategies on NAS-Bench-201 (Raspberry Pi 4 latency)"
        if args.mark == "nb201_strategies"
        else f"## NAS-Bench-201, more strategies: {', '.join(names)}",
        "",
        f"{dt.date.today().isoformat()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores; {args.seeds} seeds, {args.budget} trainings per run; "
        f"{wall / 60:.1f} min in all.",
        "",
        f"`python benchmarks/nb201_strategies.py --table {Path(args.table).name} --caps "
        f"{' '.join(f'{c:g}' for c in args.caps)} --budget {args.budget} --seeds {args.seeds}"
        + (f" --modes {','.join(modes)}" if modes != list(MODES) else "")
        + (
            f" --strategies {args.strategies} --mark {args.mark}"
            if args.mark != "nb201_strategies"
            else ""
        )
        + "` (each cap and mode runs `edgenas bench nb201 --mode MODE --json`).",
        "",
        "Regret: the best feasible accuracy in the table minus the best feasible accuracy "
        "trained, in accuracy points: mean [95% bootstrap interval] (median) over the seeds "
        "that trained a feasible architecture; when some have not, the share that have is "
        "given, and the others are not scored. *found*: share of seeds that trained the best "
        "feasible architecture. *wasted*: trainings spent on infeasible candidates. "
        "*rejected*: candidates per run the cost model turned away before training (no "
        "training spent). edgenas's strategies check latency before training; optuna-tpe and "
        "optuna-nsga2 are Optuna with its defaults and the cap passed as a constraint, every "
        "proposal trained; random-feasible draws uniformly among the architectures the check "
        "finds feasible.",
    ]
    if "realistic" in results:
        used = results["realistic"][0]["latency_error"]
        if args.latency_error is not None and abs(used - args.latency_error) > 1e-9:
            error_source = "kept from the earlier run these results come from (--reuse)"
        text += [
            "",
            "**Realistic mode** (the headline): the check before training predicts latency "
            "with a log-normal error (standard deviation of the log ratio "
            f"{used:g}: {error_source}); feasibility is judged on the "
            "true latency, so a wrong prediction wastes a training or hides a feasible "
            "architecture; no strategy ranks the space whole, as none can on the `edge` "
            "space. The seeds share their predictor errors across strategies.",
        ]
        text += cap_tables(results["realistic"], "realistic", names)
        goals = goals_md(results["realistic"], ours, names)
        if goals:
            text += ["", "### Goals (realistic mode)", "",
                     "One-sided Wilcoxon signed-rank tests on the seeds, paired, at 5%; a seed "
                     "with no feasible architecture counts as the worst in the test.", "",
                     *goals]  # fmt: skip
    if "exact" in results:
        text += [
            "",
            "**Exact mode** (a bound, not what a search gets): the check knows every latency "
            "exactly, and the guided strategy ranks this space of "
            f"{results['exact'][0]['architectures']:,} cells whole, which it does only for "
            f"spaces of up to {ENUMERATE:,} combinations.",
        ]
        text += cap_tables(results["exact"], "exact", names)
    write_section(args.mark, "\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main()
