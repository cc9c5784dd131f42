"""``edgenas dashboard RUN``: optuna-dashboard on a run's study, with edgenas's own views
(served by `edgenas.report.Dashboard`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgenas.cli._console import err, fail, setup_logging
from edgenas.errors import EdgenasError

__all__ = ["dashboard_command"]


def dashboard_command(
    run: Annotated[Path, typer.Argument(help="A run directory written by edgenas search.")],
    port: Annotated[
        int,
        typer.Option(
            min=0, max=65535, help="Port to listen on; 0 picks a free one (the URL is printed)."
        ),
    ] = 8080,
    host: Annotated[
        str,
        typer.Option(
            help="Address to listen on. The default serves this machine only; the dashboard "
            "can rename and delete studies, so think twice before 0.0.0.0."
        ),
    ] = "127.0.0.1",
    refresh: Annotated[
        float, typer.Option(help="Seconds between updates of the edgenas views.")
    ] = 10.0,
) -> None:
    """Serve optuna-dashboard on the run's study (study.db, or the database of --storage), with
    edgenas's views on the study's page: accuracy against latency coloured by feasibility,
    the front over time, the block types and kernels of the front, predicted against measured
    latency. They follow a search that is still running. Stop with Ctrl-C."""
    from rich.markup import escape

    from edgenas.report import serve_dashboard

    setup_logging(False)

    def announce(url: str) -> None:
        print(url, flush=True)  # alone on standard output, for scripts
        err.print(f"edgenas dashboard of {escape(str(run))}: open {url} (Ctrl-C to stop)",
                  highlight=False, soft_wrap=True)  # fmt: skip

    try:
        serve_dashboard(run, host, port, refresh, announce)
    except EdgenasError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        err.print("dashboard stopped")
