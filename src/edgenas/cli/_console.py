"""The command line's consoles, its logging, and its one-line errors."""

from __future__ import annotations

import logging
from typing import NoReturn

import typer
from rich.console import Console
from rich.logging import RichHandler

__all__ = ["console", "err", "fail", "setup_logging"]

console = Console()  # results, on standard output
err = Console(stderr=True)  # progress, warnings and errors, on standard error


def setup_logging(verbose: bool) -> None:
    """Log through ``err``: warnings only, or every step with ``verbose``; Optuna's own
    messages stay at warnings."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err, show_path=False, show_time=False)],
        force=True,
    )
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.logging.disable_propagation()


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on one line (no traceback) and exit with ``code``."""
    from rich.markup import escape

    # Messages name inputs verbatim (such as edgenas[postgres]): not markup.
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)
