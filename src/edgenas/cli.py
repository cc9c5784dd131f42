"""The ``edgenas`` command line."""

from __future__ import annotations

import json
import logging
import math
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.text import Text

from edgenas._bench_cli import bench_app
from edgenas._dashboard import dashboard_command
from edgenas._report_cli import report_command
from edgenas.errors import EdgenasError

app = typer.Typer(
    name="edgenas",
    help="Hardware-aware neural architecture search for edge devices.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err, show_path=False, show_time=False)],
        force=True,
    )
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.logging.disable_propagation()


def _fail(message: str, code: int = 2) -> None:
    from rich.markup import escape

    # Messages name inputs verbatim (such as edgenas[postgres]): not markup.
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _run_file_commands(ctx: typer.Context) -> dict[str, Any]:
    """The commands whose options a run file holds, as Typer built them."""
    from edgenas._runfile import COMMANDS

    root = ctx.find_root()
    return {name: root.command.get_command(root, name) for name in COMMANDS}  # type: ignore[attr-defined]


def _read_config(ctx: typer.Context, value: Path | None) -> Path | None:
    """Make the run file's values this command's defaults (Click's default_map): options
    given on the command line win. Eager, so it runs before the other options are read."""
    if value is None:
        return None
    from edgenas._runfile import read_run_file

    try:
        run_file = read_run_file(value, _run_file_commands(ctx))
    except EdgenasError as exc:
        _fail(str(exc))
        return None
    ctx.default_map = {**(ctx.default_map or {}), **run_file.defaults[ctx.command.name or ""]}
    return value


_ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="A run file (TOML; write one with edgenas init) whose values are this command's "
        "defaults; options given on the command line win.",
        is_eager=True,
        callback=_read_config,
    ),
]


def _space_from_options(
    space: str, blocks: str | None, kernels: str | None, max_depth: int | None,
    resolution: str | None,
) -> Any:  # fmt: skip
    from edgenas.config import load_space

    return load_space(
        space, blocks=blocks, kernels=kernels, max_depth=max_depth, resolutions=resolution
    )


@app.command()
def search(
    data: Annotated[
        str | None,
        typer.Argument(
            help="A folder of class subfolders, a CSV manifest (path,label[,group]), or a built-in: elpv, elpv4, synthetic. Optional with --config when the file gives data."
        ),
    ] = None,
    config_file: _ConfigOption = None,
    max_latency: Annotated[
        str | None,
        typer.Option(
            help="Latency limit, such as 5ms (measured with ONNX Runtime on this machine, batch 1)."
        ),
    ] = None,
    goal: Annotated[
        str | None,
        typer.Option(
            help='What you need in words, such as "maximize accuracy with at most 30 ms latency '
            'and 200 MB memory" or "accuracy vs latency under 20 ms"; echoed back as '
            "understood, and anything not understood is named. --max-* and --objective given "
            "as options win over it.",
        ),
    ] = None,
    max_memory: Annotated[
        str | None,
        typer.Option(
            help="Peak memory limit, such as 50MB (an estimate of what ONNX Runtime holds: weights and activations, calibrated against measured sessions)."
        ),
    ] = None,
    max_size: Annotated[
        str | None, typer.Option(help="Model size limit (fp32 weights), such as 2MB.")
    ] = None,
    max_macs: Annotated[
        str | None, typer.Option(help="Multiply-accumulate limit, such as 100M.")
    ] = None,
    max_energy: Annotated[
        str | None,
        typer.Option(
            help="Limit on the estimated energy per inference, such as 5mJ or 800uJ (from MACs and bytes moved; see --energy-coefficients)."
        ),
    ] = None,
    energy_coefficients: Annotated[
        str | None,
        typer.Option(
            help="Coefficients of the energy estimate in picojoules, such as pj_per_mac=150,pj_per_byte=50 (the default: a rough Cortex-A72-class CPU such as a Raspberry Pi 4's)."
        ),
    ] = None,
    objective: Annotated[
        str,
        typer.Option(
            help="accuracy (max accuracy within the limits), pareto (accuracy vs latency), or weighted (see --weights)."
        ),
    ] = "accuracy",
    weights: Annotated[
        str | None,
        typer.Option(
            help="Weights of the weighted objective, such as accuracy=0.6,latency=0.3,size=0.1 or accuracy=0.7,energy=0.3 (latency, size and estimated energy are normalised by their limits)."
        ),
    ] = None,
    strategy: Annotated[
        str,
        typer.Option(
            help="Search strategy: guided (a surrogate of accuracy ranks many candidates; fewest trainings), tpe, random, grid (small spaces), nsga2, gp, evolution or reinforce. Every one skips candidates the cost model rejects."
        ),
    ] = "tpe",
    trials: Annotated[
        int,
        typer.Option(
            help="Candidates to train. Candidates rejected by the constraints are never trained and do not count."
        ),
    ] = 20,
    time_budget: Annotated[
        str | None,
        typer.Option(help="Stop starting new candidates after this long, such as 30m or 2h."),
    ] = None,
    epochs: Annotated[int, typer.Option(help="Training epochs per candidate.")] = 3,
    data_fraction: Annotated[
        float, typer.Option(help="Share of the training split each candidate trains on.")
    ] = 1.0,
    resolution: Annotated[
        str | None,
        typer.Option(
            help="Input resolutions the search may choose, such as 64 or 64,96 (default: the space's, 64–224)."
        ),
    ] = None,
    space: Annotated[
        str,
        typer.Option(
            help="Search space: edge, a TOML file, or module:attribute naming a SearchSpace."
        ),
    ] = "edge",
    blocks: Annotated[
        str | None,
        typer.Option(
            help="Narrow the space to these block types, such as ir,ds (of conv, res, bneck, ds, ir)."
        ),
    ] = None,
    kernels: Annotated[
        str | None, typer.Option(help="Narrow the kernels, such as 3,5,5x3.")
    ] = None,
    max_depth: Annotated[
        int | None, typer.Option(help="At most this many blocks per stage.")
    ] = None,
    baseline: Annotated[
        list[str] | None,
        typer.Option(
            help="Evaluate a baseline first (repeatable): mobilenetv2, mobilenetv3-small, resnet, vgg, with an optional width such as mobilenetv2:0.5."
        ),
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="CPU threads for training (default: all cores).")
    ] = None,
    latency_threads: Annotated[
        int, typer.Option(help="ONNX Runtime threads when measuring latency (match the device's).")
    ] = 1,
    batch_size: Annotated[int, typer.Option(help="Training batch size.")] = 64,
    device: Annotated[
        Path | None,
        typer.Option(
            help="Device profile (from edgenas-device or edgenas profile local): predict latency "
            "from it instead of measuring each candidate here; the final Pareto front and the best "
            "are measured at the end."
        ),
    ] = None,
    train_device: Annotated[
        str,
        typer.Option(
            help="Training device: auto (CUDA when present), cpu or cuda. CUDA trains in mixed precision."
        ),
    ] = "auto",
    no_early_stop: Annotated[
        bool, typer.Option("--no-early-stop", help="Train every candidate for all epochs.")
    ] = False,
    fidelity_schedule: Annotated[
        str,
        typer.Option(
            help="none (default: stop a candidate clearly behind finished ones), sh "
            "(asynchronous successive halving: at rungs of 1, 3, 9… epochs below --epochs a "
            "candidate goes on only while in the top third of those that reached the rung; "
            "Pareto searches rank by non-dominated sorting on accuracy and latency, then "
            "crowding), or hyperband (successive-halving brackets whose first rungs are 1, 3, "
            "9… epochs, given to candidates in turn). Options as in sh:eta=2,min_epochs=1. "
            "Stopped candidates are recorded as pruned with the rung."
        ),
    ] = "none",
    workers: Annotated[
        int,
        typer.Option(
            help="Trainings at once, each in its own process; the cores are shared out among "
            "them (--threads sets each one's threads). The search process stays the only "
            "writer of the study; a worker that dies is replaced and its candidate runs again.",
        ),
    ] = 1,
    executor: Annotated[
        str,
        typer.Option(
            help="Where trainings run: local (this machine) or ray (a Ray cluster; extra "
            "edgenas\\[ray]; --workers sets how many at once, --threads the CPUs each reserves).",
        ),
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(
            help="With --executor ray: 'auto' (the cluster `ray start --head` made on this "
            "machine) or HOST:PORT; left out, a Ray instance is started for this search.",
        ),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            help="Keep the study in this database (any SQLAlchemy URL, such as "
            "postgresql+psycopg://user@host:5432/edgenas; extra edgenas\\[postgres]) instead of "
            "RUN/study.db, so several searches or a dashboard can share it. The study is named "
            "after the run directory; show and finalize find it through RUN/spec.json. Put a "
            "password in PGPASSWORD or ~/.pgpass, not in the URL.",
        ),
    ] = None,
    warm_start: Annotated[
        str | None,
        typer.Option(
            help="Enqueue first: 'baselines' (the registered baselines the space holds) or an "
            "earlier run directory (its Pareto front, such as one searched on other data or for "
            "another device). Candidates the space cannot hold are named and left out; a "
            "resumed run does not enqueue them again."
        ),
    ] = None,
    stop_when_stable: Annotated[
        int | None,
        typer.Option(
            help="End the search once the front has not improved for N trainings: its "
            "hypervolume (accuracy × latency below --max-latency, else 1.1 × the slowest "
            "candidate when the first front appears) for --objective pareto, the best score "
            "otherwise."
        ),
    ] = None,
    search_training: Annotated[
        bool,
        typer.Option(
            "--search-training",
            help="Search the training too: learning rate, batch size (instead of "
            "--batch-size), optimiser (AdamW or SGD), weight decay and augmentation strength "
            "are chosen per candidate with the architecture (labels train.*).",
        ),
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Run directory (default runs/<data name>). Running the same command again resumes it."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the split, the strategy and training.")] = 0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print results.json to standard output at the end.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more.")] = False,
) -> None:
    """Search for the most accurate architecture that meets the limits, and train it.

    Writes RUN/study.db (the record of every trial), RUN/results.json and RUN/best.onnx.
    Interrupt it at any time: running the same command again resumes.
    """
    if data is None:
        _fail('give the data: edgenas search DATA, or data = "..." in a --config file')
        return
    _setup_logging(verbose)
    from edgenas._live import LiveView
    from edgenas.cost import Constraints, EnergyModel, parse_duration
    from edgenas.search import SearchConfig, parse_weights, run_search

    view = LiveView(err)
    try:
        if goal is not None:
            from edgenas._goal import parse_goal

            understood = parse_goal(goal)
            err.print(f"goal understood: {understood.describe()}", highlight=False)
            limits = understood.limits
            # Options given explicitly win over the goal.
            max_latency = max_latency or limits.get("max_latency")
            max_memory = max_memory or limits.get("max_memory")
            max_size = max_size or limits.get("max_size")
            max_macs = max_macs or limits.get("max_macs")
            max_energy = max_energy or limits.get("max_energy")
            if objective == "accuracy" and understood.objective is not None:
                objective = understood.objective
        constraints = Constraints.parse(max_latency, max_memory, max_size, max_macs, max_energy)
        config = SearchConfig(
            data=data,
            out=out,
            space=_space_from_options(space, blocks, kernels, max_depth, resolution),
            constraints=constraints,
            objective=objective,
            weights=parse_weights(weights) if weights else None,
            strategy=strategy,
            trials=trials,
            time_budget_s=parse_duration(time_budget) if time_budget else None,
            epochs=epochs,
            data_fraction=data_fraction,
            seed=seed,
            threads=threads,
            latency_threads=latency_threads,
            energy=EnergyModel.parse(energy_coefficients),
            batch_size=batch_size,
            device=device,
            train_device=train_device,
            baselines=tuple(baseline or ()),
            early_stopping=not no_early_stop,
            fidelity_schedule=fidelity_schedule,
            warm_start=warm_start,
            stop_when_stable=stop_when_stable,
            search_training=search_training,
            storage=storage,
            workers=workers,
            executor=executor,
            address=address,
        )
        # SIGTERM (a scheduler stopping the job) ends the search like Ctrl-C: nothing recorded
        # is lost and the interrupted candidate is queued for the next run.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        result = run_search(config, view)
    except EdgenasError as exc:
        _fail(str(exc))
        return
    except KeyboardInterrupt:
        err.print(
            "[yellow]interrupted:[/] every finished trial is saved; run the same command again "
            "to resume."
        )
        raise typer.Exit(130) from None
    finally:
        view.close()  # leave the terminal clean, whatever happened
    from edgenas._live import front_table, summary_table

    err.print(summary_table(result.trials))
    redrawn = result.results.get("summary", {}).get("redrawn", 0)
    if redrawn:
        err.print(
            f"the strategy also redrew {redrawn} candidate(s) the cost model predicted "
            "infeasible, before proposing them (never trained)"
        )
    err.print(f"stopped because {result.stopped_because}")
    out_console = err if as_json else console
    out_console.print(front_table(result.trials, predicted=device is not None))
    _print_best(out_console, result.best_details, result.run_dir)
    out_console.print(f"results: {result.run_dir / 'results.json'}", soft_wrap=True)
    if as_json:
        sys.stdout.write(json.dumps(result.results, indent=2) + "\n")


def _print_best(console: Console, best: dict[str, Any] | None, run_dir: Path) -> None:
    if not best:
        console.print("[yellow]no trained candidate met every constraint[/]")
        return
    console.print(
        f"[bold green]best:[/] trial {best['trial']} · validation {100 * best['accuracy']:.1f}% · "
        f"holdout {100 * best['holdout_accuracy']:.1f}% · "
        + (
            f"{best['latency_ms_predicted']:.2f} ms predicted, "
            if best.get("latency_ms_predicted") is not None
            else ""
        )
        + f"{best['latency_ms_measured']:.2f} ms measured again · model: {run_dir / best['onnx']}",
        highlight=False,
    )
    console.print(Text(best["genotype"], overflow="fold"))
    gap = _holdout_gap(best)
    if gap:
        console.print(f"[yellow]warning:[/] {gap}", highlight=False)


def _holdout_gap(best: dict[str, Any]) -> str | None:
    """A warning when validation and holdout accuracy differ by more than chance explains.

    Both are proportions of independent images: the gap's standard error follows from the
    binomial variance of each. A gap beyond 2.5 standard errors hints at a leaky or shifted
    validation split (or a search that overfitted the validation images).
    """
    n_val, n_hold = best.get("validation_images"), best.get("holdout_images")
    val, hold = best.get("accuracy"), best.get("holdout_accuracy")
    if not (n_val and n_hold) or val is None or hold is None:
        return None
    p = (val * n_val + hold * n_hold) / (n_val + n_hold)
    se = math.sqrt(max(p * (1 - p), 1e-6) * (1 / n_val + 1 / n_hold))
    if abs(val - hold) <= 2.5 * se:
        return None
    return (
        f"validation ({100 * val:.1f}%) and holdout ({100 * hold:.1f}%) accuracy differ by more "
        f"than chance explains (±{100 * 2.5 * se:.1f} points): check the split for leaks or shift"
    )


@app.command()
def show(
    run: Annotated[Path, typer.Argument(help="A run directory written by edgenas search.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON (the layout of results.json).")
    ] = False,
) -> None:
    """Summarise a search from its study, also while it runs."""
    _setup_logging(False)
    from edgenas._live import front_table, summary_table
    from edgenas.cost import Constraints
    from edgenas.search import load_result, results_dict
    from edgenas.search._records import STUDY_FRONT

    try:
        study, records, spec = load_result(run)
    except EdgenasError as exc:
        _fail(str(exc))
        return
    best = study.user_attrs.get("best")
    constraints = Constraints.from_dict(spec.get("constraints", {}))
    if as_json:
        run_info = {k: spec.get(k) for k in ("data", "strategy", "epochs", "seed")}
        measured = {int(k): v for k, v in study.user_attrs.get(STUDY_FRONT, {}).items()}
        results = results_dict(records, constraints, best, run_info, measured)
        sys.stdout.write(json.dumps(results, indent=2))
        sys.stdout.write("\n")
        return
    console.print(
        f"[bold]{run}[/] · data {spec.get('data')} · constraints: {constraints.describe()}"
    )
    console.print(summary_table(records))
    running = [r.number for r in records if r.state == "running"]
    if running:
        console.print(f"running now: trial {', '.join(map(str, running))}")
    console.print(front_table(records, predicted=bool(spec.get("latency_profile"))))
    _print_best(console, best, run)


@app.command()
def finalize(
    run: Annotated[
        Path | None,
        typer.Argument(
            help="A run directory written by edgenas search. Optional with --config when the "
            "file gives out."
        ),
    ] = None,
    config_file: _ConfigOption = None,
    pick: Annotated[
        str, typer.Option("--pick", help="'best' (the run's best) or a trial number.")
    ] = "best",
    top: Annotated[
        int, typer.Option("--top", help="With --pick best: retrain the K best feasible trials.")
    ] = 1,
    epochs: Annotated[
        int | None,
        typer.Option("--epochs", help="Training epochs (default: 3x the search's)."),
    ] = None,
    distill: Annotated[
        bool,
        typer.Option(
            "--distill",
            help="Train a fresh copy of the model with a teacher (see --teacher); kept when "
            "it scores better on validation.",
        ),
    ] = False,
    teacher: Annotated[
        str | None,
        typer.Option(
            "--teacher",
            help="The teacher for --distill: a trial number, or a final/ folder of a run on "
            "the same data (genotype.txt + model.pt). Default: the run's most accurate trial.",
        ),
    ] = None,
    prune: Annotated[
        str,
        typer.Option(
            "--prune",
            help="none; structured (remove channels, aimed at a --target-*); magnitude or "
            "movement (unstructured, to --sparsity).",
        ),
    ] = "none",
    target_latency: Annotated[
        str | None,
        typer.Option("--target-latency", help="Structured pruning target: '3ms', or '70%' of now."),
    ] = None,
    target_memory: Annotated[
        str | None,
        typer.Option(
            "--target-memory", help="Structured pruning target peak memory: '40MB' or '80%'."
        ),
    ] = None,
    target_size: Annotated[
        str | None,
        typer.Option("--target-size", help="Structured pruning target file size: '2MB' or '50%'."),
    ] = None,
    sparsity: Annotated[
        float,
        typer.Option("--sparsity", help="Weight sparsity for magnitude/movement pruning."),
    ] = 0.8,
    finetune_epochs: Annotated[
        int | None,
        typer.Option("--finetune-epochs", help="Fine-tuning epochs after pruning."),
    ] = None,
    quantize: Annotated[
        str,
        typer.Option("--quantize", help="int8 (ONNX Runtime static, QDQ, per-channel) or none."),
    ] = "int8",
    max_accuracy_loss: Annotated[
        float,
        typer.Option(
            "--max-accuracy-loss",
            help="Validation points INT8 may lose before quantization-aware training is tried.",
        ),
    ] = 1.0,
    qat_epochs: Annotated[
        int | None,
        typer.Option("--qat-epochs", help="Epochs of quantization-aware training, if needed."),
    ] = None,
    device: Annotated[
        Path | None,
        typer.Option(
            "--device",
            help="A device profile (edgenas-device): constraints are also checked on its "
            "predictions.",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print final.json instead of tables.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log each step.")] = False,
) -> None:
    """Retrain chosen candidates at full fidelity, check them on the holdout, compress the
    best (distill, prune, INT8), re-check the constraints after every step, and export
    final/model.onnx, model.int8.onnx and MODEL_CARD.md."""
    if run is None:
        _fail('give the run: edgenas finalize RUN, or out = "..." in a --config file')
        return
    _setup_logging(verbose)
    from rich.table import Table

    from edgenas.finalize import CompressOptions
    from edgenas.finalize import finalize as run_finalize

    try:
        options = CompressOptions(
            distill=distill, teacher=teacher, prune=prune, target_latency=target_latency,
            target_memory=target_memory, target_size=target_size, sparsity=sparsity,
            finetune_epochs=finetune_epochs, quantize=quantize,
            max_accuracy_loss=max_accuracy_loss, qat_epochs=qat_epochs, device_profile=device,
        )  # fmt: skip
        result = run_finalize(
            run, pick=pick, top=top, epochs=epochs, options=options,
            progress=lambda t: err.print(f"[dim]{t}[/]"),
        )  # fmt: skip
    except EdgenasError as exc:
        _fail(str(exc))
        return
    if as_json:
        print(json.dumps(result.to_json(), indent=2, default=str))
        return
    table = Table(title=f"{run} · retrained (Wilson 95% intervals)")
    for column in ("trial", "epochs", "search val", "validation", "holdout", "latency ms",
                   "onnx diff"):  # fmt: skip
        table.add_column(column, justify="right")
    for c in result.candidates:
        table.add_row(
            str(c.trial),
            str(c.epochs),
            "-" if c.search_accuracy is None else f"{100 * c.search_accuracy:.1f}%",
            f"{100 * c.val_accuracy:.1f}% [{100 * c.val_interval[0]:.1f}, "
            f"{100 * c.val_interval[1]:.1f}]",
            f"{100 * c.holdout_accuracy:.1f}% [{100 * c.holdout_interval[0]:.1f}, "
            f"{100 * c.holdout_interval[1]:.1f}]",
            "-" if c.latency_ms is None else f"{c.latency_ms:.3f}",
            "-" if c.onnx_max_abs_diff is None else f"{c.onnx_max_abs_diff:.1e}",
        )
    console.print(table)
    for c in result.candidates:
        if c.gap_warning:
            console.print(f"[yellow]warning:[/] {c.gap_warning}", highlight=False)
    if result.steps:
        console.print(_steps_table(result))
    console.print(Text(result.best.genotype, overflow="fold"))
    files = ["model.onnx", *(["model.int8.onnx"] if result.int8 else []), "genotype.txt",
             "MODEL_CARD.md", "final.json"]  # fmt: skip
    console.print(
        f"exported trial {result.best.trial}: {result.final_dir}/ ({', '.join(files)})",
        soft_wrap=True,
        highlight=False,
    )


def _steps_table(result: Any) -> Any:
    """Each finalize step: accuracy, measured costs, and whether the constraints hold."""
    from rich.table import Table

    table = Table(title="after each step (ONNX Runtime, measured here)")
    for column in ("step", "kept", "validation", "holdout", "latency ms", "memory MB",
                   "size MB", "constraints"):  # fmt: skip
        table.add_column(column, justify="right")
    for s in result.steps:
        verdicts = []
        for name, entry in s.constraints.items():
            holds = entry.get("measured_holds")
            mark = "?" if holds is None else ("[green]✓[/]" if holds else "[red]✗[/]")
            if "predicted_holds" in entry:
                p = entry["predicted_holds"]
                mark += " pred " + ("?" if p is None else ("[green]✓[/]" if p else "[red]✗[/]"))
            verdicts.append(f"{name.removeprefix('max_')} {mark}")
        lo, hi = s.holdout_interval
        table.add_row(
            s.name,
            "yes" if s.kept else "no",
            f"{100 * s.val_accuracy:.1f}%",
            f"{100 * s.holdout_accuracy:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]",
            f"{s.latency_ms:.3f}",
            "-" if s.peak_memory_mb is None else f"{s.peak_memory_mb:.1f}",
            f"{s.size_mb:.3f}",
            ", ".join(verdicts) or "none set",
        )
    return table


@app.command()
def init(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="The run file to write.")] = Path("run.toml"),
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite the file if it exists.")
    ] = False,
) -> None:
    """Write a commented run file: the data, the run directory, every option of search and
    finalize, and the space. Edit it, then run `edgenas search --config run.toml` and
    `edgenas finalize --config run.toml`; options given on the command line win."""
    from edgenas._runfile import write_template

    try:
        write_template(path, _run_file_commands(ctx), force=force)
    except EdgenasError as exc:
        _fail(str(exc))
        return
    console.print(f"wrote {path}: edit it, then run edgenas search --config {path}", soft_wrap=True)


@app.command()
def baselines(
    resolution: Annotated[int, typer.Option(help="Input resolution.")] = 96,
    width: Annotated[float, typer.Option(help="Width multiplier.")] = 1.0,
    classes: Annotated[
        int, typer.Option(help="Number of classes (affects the classifier only).")
    ] = 2,
) -> None:
    """List the built-in baselines with their genotypes and analytic costs (peak memory and
    energy are estimates)."""
    from rich.table import Table

    from edgenas.arch import BASELINES, baseline
    from edgenas.cost import CostModel

    table = Table("name", "params", "MACs", "memory", "energy (est.)")
    table.add_column("genotype", overflow="fold")
    costs = CostModel(3, classes)
    for name in BASELINES:
        g = baseline(f"{name}:{width}", resolution)
        c = costs.analytic(g)
        table.add_row(
            name, f"{c.params / 1e6:.2f} M", f"{c.macs / 1e6:.1f} M",
            f"{c.peak_memory_mb:.1f} MB", f"{c.energy_mj:.2f} mJ", str(g),
        )  # fmt: skip
    console.print(table)


profile_app = typer.Typer(
    help="Latency profiles: plan the models a device must time, and time them.",
    no_args_is_help=True,
)
app.add_typer(profile_app, name="profile")
app.add_typer(bench_app, name="bench")
app.command("report")(report_command)
app.command("dashboard")(dashboard_command)


_SpaceOption = Annotated[
    str, typer.Option(help="Search space: edge, a TOML file, or module:attribute.")
]
_ArchitecturesOption = Annotated[
    int,
    typer.Option(
        help="Architectures sampled from the space whose distinct convolutions are planned."
    ),
]
_ReferencesOption = Annotated[
    int, typer.Option(help="Whole networks planned, to calibrate the predictor.")
]
_ChannelsOption = Annotated[int, typer.Option(help="Input channels of the data (1 gray, 3 RGB).")]
_ClassesOption = Annotated[int, typer.Option(help="Number of classes.")]
_PlanSeedOption = Annotated[int, typer.Option(help="Seed of the sampled architectures.")]


def _write_plan(out: Path, space: str, architectures: int, references: int, channels: int,
                classes: int, seed: int) -> dict[str, int]:  # fmt: skip
    from rich.progress import Progress

    from edgenas.config import load_space
    from edgenas.profile import write_plan

    with Progress(console=err, transient=True) as bar:
        task = bar.add_task("exporting models", total=None)
        return write_plan(
            load_space(space), out, architectures=architectures, references=references,
            in_channels=channels, num_classes=classes, seed=seed,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )  # fmt: skip


@profile_app.command("plan")
def profile_plan_command(
    out: Annotated[Path, typer.Option(help="Plan to write, such as plan.zip.")],
    space: _SpaceOption = "edge",
    architectures: _ArchitecturesOption = 2000,
    references: _ReferencesOption = 200,
    channels: _ChannelsOption = 3,
    classes: _ClassesOption = 10,
    seed: _PlanSeedOption = 0,
) -> None:
    """Write the ONNX models a device must time: the distinct convolutions (at their input
    shapes) of sampled architectures, plus whole reference networks that calibrate the
    predictor.

    Copy the plan to the device and run `edgenas-device PLAN --threads N --out PROFILE.json`
    there (it needs only onnxruntime and numpy); it also measures the peak memory of the
    reference networks (skip with --no-memory).
    """
    _setup_logging(False)
    try:
        counts = _write_plan(out, space, architectures, references, channels, classes, seed)
    except EdgenasError as exc:
        _fail(str(exc))
        return
    from edgenas.device import read_plan

    summary = ", ".join(f"{n} {kind}" for kind, n in counts.items())
    coverage = read_plan(out)[0].get("coverage") or {}
    if "convolutions" in coverage:
        summary += (
            f"; they hold {100 * coverage['convolutions']:.1f}% of the convolutions of other "
            "random architectures (the rest are modelled)"
        )
    console.print(f"{out}: {summary}", soft_wrap=True)


@profile_app.command("local")
def profile_local_command(
    out: Annotated[Path, typer.Option(help="Profile to write, such as local.json.")],
    threads: Annotated[int, typer.Option(help="ONNX Runtime threads.")] = 1,
    space: _SpaceOption = "edge",
    architectures: _ArchitecturesOption = 2000,
    references: _ReferencesOption = 200,
    channels: _ChannelsOption = 3,
    classes: _ClassesOption = 10,
    seed: _PlanSeedOption = 0,
    no_memory: Annotated[
        bool,
        typer.Option(
            "--no-memory",
            help="Skip measuring the peak memory of the reference networks (a fresh process each).",
        ),
    ] = False,
) -> None:
    """Plan and time on this machine in one go (the plan is kept beside the profile), and
    measure the peak memory of the reference networks."""
    _setup_logging(False)
    from rich.progress import Progress

    from edgenas.device import PlanError, profile_plan

    plan = out.with_suffix(".plan.zip")
    try:
        if not plan.exists():
            _write_plan(plan, space, architectures, references, channels, classes, seed)
        with Progress(console=err, transient=True) as bar:
            task = bar.add_task("timing models", total=None)
            memory_task = bar.add_task("measuring peak memory", total=None, visible=False)
            profile = profile_plan(
                plan, out, threads=threads, memory=not no_memory,
                progress=lambda done, total, entry, ms: bar.update(task, completed=done, total=total),
                memory_progress=lambda done, total, entry, mb: bar.update(
                    memory_task, completed=done, total=total, visible=True),
            )  # fmt: skip
    except (EdgenasError, PlanError) as exc:
        _fail(str(exc))
        return
    measured = sum("peak_memory_mb" in m for m in profile["measurements"].values())
    memory = f", peak memory of {measured} network(s)" if measured else ""
    console.print(
        f"{out}: {len(profile['measurements'])} models timed with {threads} thread(s){memory}",
        soft_wrap=True,
    )


@profile_app.command("check")
def profile_check_command(
    profile: Annotated[
        Path, typer.Argument(help="A profile written by edgenas-device or edgenas profile local.")
    ],
    n: Annotated[
        int, typer.Option("--n", min=1, help="Random architectures to measure end to end here.")
    ] = 100,
    space: _SpaceOption = "edge",
    seed: Annotated[
        int, typer.Option(help="Seed of the sampled architectures (other than the plan's).")
    ] = 1,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the figures as one JSON object.")
    ] = False,
) -> None:
    """Measure random architectures on this machine and compare the profile's predictor, a
    FLOPs-proportional estimate and a plain sum of operator latencies with the measurements.
    Each architecture is timed in three passes and its median pass kept. Up to 50 of the
    profile's own reference networks (no more than --n) are timed in the same passes and
    compared with their profiled latency: the ceiling that this machine's timing noise sets for any predictor
    (`repeat` in --json). When the profile has anchor timings, the anchor is timed too and the
    figures are also given with the machine's drift since profiling divided out."""
    _setup_logging(False)
    from rich.progress import Progress
    from rich.table import Table

    from edgenas.config import load_space
    from edgenas.profile import check_profile, load_profile

    try:
        data = load_profile(profile)
        with Progress(console=err, transient=True) as bar:
            task = bar.add_task("measuring architectures", total=3 * n)
            figures = check_profile(
                data, load_space(space), n, seed=seed,
                progress=lambda done, total: bar.update(task, completed=done),
            )  # fmt: skip
    except EdgenasError as exc:
        _fail(str(exc))
        return
    if as_json:
        sys.stdout.write(json.dumps(figures) + "\n")
        return
    table = Table("estimate", "within ±5%", "within ±10%", "MAPE", "Spearman",
                  title=f"{n} architectures, {figures['threads']} thread(s), "
                  f"{100 * figures['coverage']:.0f}% of their convolutions in the profile")  # fmt: skip
    rows = [(figures[name], label) for name, label in (
        ("predictor", "predictor"), ("flops", "FLOPs-proportional"),
        ("block_sum", "sum of operators"))]  # fmt: skip
    steady = figures.get("at_profile_speed") or {}
    if "predictor" in steady:
        rows.append((steady["predictor"], "predictor, at the profile's speed"))
    repeat = figures.get("repeat")
    if repeat:
        rows.append((repeat, f"the profile's own timing of {repeat['n']} reference networks"))
        if "repeat" in steady:
            rows.append((steady["repeat"], "the same, at the profile's speed"))
    for f, label in rows:
        table.add_row(label, f"{100 * f['within_5']:.0f}%", f"{100 * f['within_10']:.0f}%",
                      f"{f['mape']:.1f}%", f"{f['spearman']:.3f}")  # fmt: skip
    notes = []
    if "predictor" in steady:
        notes.append(
            f"this machine ran {figures['speed_now_vs_profile']:.2f}× the profile's time for the "
            "anchor model; rows 'at the profile's speed' divide each measurement by that drift"
        )
    if repeat:
        notes.append(
            "the profile's own timing is what a predictor that knew every network's profiled "
            "latency exactly would score: the ceiling this machine's timing noise sets"
        )
    table.caption = "; ".join(notes) or None
    console.print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
