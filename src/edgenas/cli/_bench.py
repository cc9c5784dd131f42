"""``edgenas bench``: search strategies judged on tabular benchmarks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from edgenas.cli._console import err, fail, setup_logging
from edgenas.errors import EdgenasError

bench_app = typer.Typer(
    help="Judge search strategies on a tabular benchmark (no training: a table answers).",
    no_args_is_help=True,
)


@bench_app.command("nb201")
def nb201_command(
    table: Annotated[
        Path,
        typer.Option(
            help="CSV with the columns index,arch,accuracy,latency_ms: NAS-Bench-201 architecture strings, their accuracy (%) and their latency on a device (ms)."
        ),
    ],
    max_latency: Annotated[
        str, typer.Option(help="Latency cap, such as 10 or 10ms: the feasible architectures.")
    ],
    budget: Annotated[
        int,
        typer.Option(
            help="Trainings per run; regret is reported after 25, 50, 100 and 200 of them (those within the budget) and at the budget."
        ),
    ] = 100,
    seeds: Annotated[int, typer.Option(help="Runs per strategy, seeds 0..N-1.")] = 20,
    strategies: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated strategies: edgenas's (random, grid, tpe, nsga2, gp, evolution, reinforce, guided) and the references optuna-tpe, optuna-nsga2, random-feasible. Default: all but gp and grid, plus the references."
        ),
    ] = None,
    mode: Annotated[
        str,
        typer.Option(
            help="What the check before training knows. realistic: latency predicted with a log-normal error (--latency-error), feasibility judged on the true latency, no strategy ranks the space whole, as in a search of the edge space with a device profile. exact: every latency known exactly, and the guided strategy ranks this small space whole (a bound, not what a search gets)."
        ),
    ] = "realistic",
    latency_error: Annotated[
        float | None,
        typer.Option(
            help="realistic mode: standard deviation of log(predicted / true latency). Default 0.108, the latency predictor's error on a fresh check (mean absolute error 12.7% on a shared machine)."
        ),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help='Print one JSON object: {"optimum": ..., "mode": ..., "latency_error": ..., "strategies": {NAME: {"25": {"mean_regret", "median_regret", "ci95", "feasible_share", "found_optimum", "infeasible_trainings", "best_per_seed"}, ...}}, ...}. Regret figures are over the seeds that trained a feasible architecture (feasible_share of them; null when none did); ci95 is a bootstrap interval of the mean.',
        ),
    ] = False,
) -> None:
    """Run each strategy against the table for SEEDS seeds and report its regret.

    Regret is the best feasible accuracy in the table minus the best feasible accuracy the
    strategy trained, in accuracy points; a seed that has trained no feasible architecture yet
    has none (the share of seeds that have is shown). edgenas's strategies check latency
    before training (rejected proposals cost no training); the references optuna-tpe and
    optuna-nsga2 are Optuna as a user would run it, with the cap passed as a constraint and
    every proposal trained; random-feasible draws uniformly among the architectures the check
    finds feasible.
    """
    from edgenas.bench import LATENCY_ERROR, REFERENCES, benchmark, load_table
    from edgenas.cost import parse_latency

    setup_logging(False)
    from edgenas.study import STRATEGIES

    default = [s for s in STRATEGIES if s not in ("gp", "grid")] + list(REFERENCES)
    names = [s.strip() for s in strategies.split(",") if s.strip()] if strategies else default
    try:
        cap = parse_latency(max_latency)
        data = load_table(table)
        with err.status("") as status:

            def progress(name: str, seed: int) -> None:
                status.update(f"{name}: seed {seed + 1}/{seeds}")

            result = benchmark(
                data, cap, budget, seeds, names, progress=progress, mode=mode,
                latency_error=LATENCY_ERROR if latency_error is None else latency_error,
            )  # fmt: skip
    except EdgenasError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    _print(Console(), result)


def _regret(figures: dict[str, Any]) -> str:
    """Mean [95% interval] (median), and the share of seeds with a feasible architecture
    when some have none."""
    if figures["mean_regret"] is None:
        return "no feasible yet"
    low, high = figures["ci95"]
    text = f"{figures['mean_regret']:.3f} [{low:.3f}, {high:.3f}] ({figures['median_regret']:.3f})"
    share = figures["feasible_share"]
    return text if share == 1 else f"{text}, {share * 100:.0f}% of seeds"


def _print(console: Console, result: dict[str, Any]) -> None:
    checkpoints = list(next(iter(result["strategies"].values())).keys())
    mode = (
        f"realistic mode (latency predicted with a log-normal error of {result['latency_error']:g})"
        if result["mode"] == "realistic"
        else "exact mode (every latency known; small spaces ranked whole)"
    )
    t = Table(
        title=(
            f"{result['table']}: best feasible accuracy {result['optimum']:g} at ≤ "
            f"{result['max_latency_ms']:g} ms ({result['feasible_architectures']:,} of "
            f"{result['architectures']:,} feasible), {result['seeds']} seeds, {mode}"
        ),
        caption="regret: mean [95% bootstrap interval] (median) accuracy points below the best "
        "feasible after N trainings, over the seeds that trained a feasible architecture (the "
        "share is given when not all did); found: share of seeds that trained the best; "
        "wasted: mean trainings spent on infeasible candidates; rejected: mean candidates the "
        "cost model turned away before training",
    )
    t.add_column("strategy")
    for c in checkpoints:
        t.add_column(f"regret @{c}", justify="right")
    t.add_column(f"found @{checkpoints[-1]}", justify="right")
    t.add_column(f"wasted @{checkpoints[-1]}", justify="right")
    t.add_column("rejected", justify="right")
    t.add_column("s/run", justify="right")

    def order(item: tuple[str, dict[str, Any]]) -> float:
        last = item[1][checkpoints[-1]]["mean_regret"]
        return float("inf") if last is None else float(last)

    for name, figures in sorted(result["strategies"].items(), key=order):
        last = figures[checkpoints[-1]]
        t.add_row(
            name,
            *[_regret(figures[c]) for c in checkpoints],
            f"{last['found_optimum'] * 100:.0f}%",
            f"{last['infeasible_trainings']:.1f}",
            f"{result['rejected'][name]:.1f}",
            f"{result['seconds'][name]:.2f}",
        )
    console.print(t)
