"""The ``edgenas`` command line: one module per command (group), registered on `app` here.

Nothing below this package imports it; `main` is the console script's entry point and what
``python -m edgenas`` runs.
"""

from __future__ import annotations

import typer

from edgenas.cli._bench import bench_app
from edgenas.cli._dashboard import dashboard_command
from edgenas.cli._finalize import finalize_command
from edgenas.cli._profile import profile_app
from edgenas.cli._report import report_command
from edgenas.cli._search import search_command
from edgenas.cli._show import show_command
from edgenas.cli._start import baselines_command, init_command

__all__ = ["app", "main"]

app = typer.Typer(
    name="edgenas",
    help="Hardware-aware neural architecture search for edge devices.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# In the order --help lists them.
app.command("search")(search_command)
app.command("show")(show_command)
app.command("finalize")(finalize_command)
app.command("init")(init_command)
app.command("baselines")(baselines_command)
app.add_typer(profile_app, name="profile")
app.add_typer(bench_app, name="bench")
app.command("report")(report_command)
app.command("dashboard")(dashboard_command)


def main() -> None:
    """Run the command line (the ``edgenas`` console script)."""
    app()
