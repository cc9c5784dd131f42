"""The ``edgenas`` command line: one module per command (group), registered on `app` here.

Nothing below this package imports it; `main` is the console script's entry point and what
``python -m edgenas`` runs. `main` is also the safety net: an error the commands did not turn
into a one-line message (a fault edgenas does not explain yet) is printed as one line that
names a log file holding the traceback, unless ``--verbose`` or ``EDGENAS_DEBUG=1`` asks for
the traceback itself.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import tempfile
import traceback
from pathlib import Path

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


#: Set (to anything but 0 or empty) to see the traceback of an unexpected error.
DEBUG_ENV = "EDGENAS_DEBUG"


def _debugging(argv: list[str]) -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0") or any(
        a in ("--verbose", "-v") for a in argv
    )


def _crash_log(exc: BaseException, argv: list[str]) -> Path | None:
    """Write the traceback of ``exc`` with the command line to a new file; returns its path."""
    from edgenas import __version__

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(tempfile.gettempdir()) / f"edgenas-error-{stamp}-{os.getpid()}.log"
    text = (
        f"edgenas {__version__}, Python {sys.version.split()[0]}\n"
        f"command: edgenas {' '.join(argv)}\n\n"
        + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    )
    try:
        path.write_text(text, encoding="utf-8")
    except OSError:
        return None
    return path


def main() -> None:
    """Run the command line (the ``edgenas`` console script)."""
    from edgenas.errors import EdgenasError

    argv = sys.argv[1:]
    try:
        app()
    except EdgenasError as exc:  # a user's error a command let through: still one line
        if _debugging(argv):
            raise
        from edgenas.cli._console import fail

        try:
            fail(str(exc))
        except typer.Exit as done:
            sys.exit(done.exit_code)
    except Exception as exc:
        if _debugging(argv):
            raise
        from rich.markup import escape

        from edgenas.cli._console import err

        log = _crash_log(exc, argv)
        where = (
            f"the traceback is in {log}" if log else "the traceback could not be written to a file"
        )
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        err.print(
            f"[bold red]error:[/] unexpected {type(exc).__name__}"
            f"{': ' + escape(message) if message else ''}. This is a fault edgenas does not "
            f"explain yet; {where} (run again with --verbose or {DEBUG_ENV}=1 to see it here). "
            "What was already recorded in the run directory is kept.",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(1)
