"""The ``--config`` option: a run file whose values become a command's defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from edgenas.cli._console import fail
from edgenas.errors import EdgenasError

__all__ = ["ConfigOption", "run_file_commands"]


def run_file_commands(ctx: typer.Context) -> dict[str, Any]:
    """The commands whose options a run file holds, as Typer built them."""
    from edgenas.cli._runfile import COMMANDS

    root = ctx.find_root()
    return {name: root.command.get_command(root, name) for name in COMMANDS}  # type: ignore[attr-defined]


def _read_config(ctx: typer.Context, value: Path | None) -> Path | None:
    """Make the run file's values this command's defaults (Click's default_map): options
    given on the command line win. Eager, so it runs before the other options are read."""
    if value is None:
        return None
    from edgenas.cli._runfile import read_run_file

    try:
        run_file = read_run_file(value, run_file_commands(ctx))
    except EdgenasError as exc:
        fail(str(exc))
    ctx.default_map = {**(ctx.default_map or {}), **run_file.defaults[ctx.command.name or ""]}
    return value


ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="A run file (TOML; write one with edgenas init) whose values are this command's "
        "defaults; options given on the command line win.",
        is_eager=True,
        callback=_read_config,
    ),
]
