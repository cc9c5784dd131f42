"""``edgenas report``: a run as one self-contained HTML file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgenas.cli._console import console, fail, setup_logging
from edgenas.errors import EdgenasError

__all__ = ["report_command"]


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def report_command(
    run: Annotated[Path, typer.Argument(help="A run directory written by edgenas search.")],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="The HTML file to write (default: RUN/report.html)."),
    ] = None,
) -> None:
    """Write one HTML file of a run that reads offline: the Pareto front, the front over
    time, the blocks of the front, predicted against measured latency, the chosen
    architecture, the compression steps and the holdout check. Works while the search runs."""
    from edgenas.report import write_report

    setup_logging(False)
    try:
        path = write_report(run, out)
    except EdgenasError as exc:
        fail(str(exc))
    console.print(f"wrote {path} ({_size(path.stat().st_size)})", highlight=False, soft_wrap=True)
