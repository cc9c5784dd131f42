"""``edgenas finalize``: retrain chosen candidates, check them on the holdout, compress and
export the best."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from edgenas.cli._console import console, err, fail, setup_logging
from edgenas.cli._options import ConfigOption
from edgenas.errors import EdgenasError

__all__ = ["finalize_command", "steps_table"]


def finalize_command(
    run: Annotated[
        Path | None,
        typer.Argument(
            help="A run directory written by edgenas search. Optional with --config when the "
            "file gives out."
        ),
    ] = None,
    config_file: ConfigOption = None,
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
        fail('give the run: edgenas finalize RUN, or out = "..." in a --config file')
    setup_logging(verbose)
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
        fail(str(exc))
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
        console.print(steps_table(result))
    console.print(Text(result.best.genotype, overflow="fold"))
    files = ["model.onnx", *(["model.int8.onnx"] if result.int8 else []), "genotype.txt",
             "MODEL_CARD.md", "final.json"]  # fmt: skip
    console.print(
        f"exported trial {result.best.trial}: {result.final_dir}/ ({', '.join(files)})",
        soft_wrap=True,
        highlight=False,
    )


def steps_table(result: Any) -> Any:
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
