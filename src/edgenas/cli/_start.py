"""Commands for getting started: ``edgenas init`` (a commented run file) and ``edgenas
baselines`` (the built-in networks and their costs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgenas.cli._console import console, fail
from edgenas.cli._options import run_file_commands
from edgenas.errors import EdgenasError

__all__ = ["baselines_command", "init_command"]


def init_command(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="The run file to write.")] = Path("run.toml"),
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite the file if it exists.")
    ] = False,
) -> None:
    """Write a commented run file: the data, the run directory, every option of search and
    finalize, and the space. Edit it, then run `edgenas search --config run.toml` and
    `edgenas finalize --config run.toml`; options given on the command line win."""
    from edgenas.cli._runfile import write_template

    try:
        write_template(path, run_file_commands(ctx), force=force)
    except EdgenasError as exc:
        fail(str(exc))
    console.print(f"wrote {path}: edit it, then run edgenas search --config {path}", soft_wrap=True)


def baselines_command(
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
