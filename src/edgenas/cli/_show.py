"""``edgenas show``: a search summarised from its study, also while it runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from edgenas.cli._console import console, fail, setup_logging
from edgenas.errors import EdgenasError

__all__ = ["show_command"]


def show_command(
    run: Annotated[Path, typer.Argument(help="A run directory written by edgenas search.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON (the layout of results.json).")
    ] = False,
) -> None:
    """Summarise a search from its study, also while it runs."""
    setup_logging(False)
    from edgenas.cli._live import front_table, one_shot_line, print_best, summary_table
    from edgenas.cost import Constraints
    from edgenas.study import (
        STUDY_BEST,
        STUDY_FRONT,
        STUDY_ONE_SHOT,
        BestCheck,
        left_running,
        load_result,
        results_dict,
    )

    try:
        study, records, spec = load_result(run)
    except EdgenasError as exc:
        fail(str(exc))
    best = BestCheck.from_json(study.user_attrs.get(STUDY_BEST))
    constraints = Constraints.from_dict(spec.get("constraints", {}))
    if as_json:
        run_info = {k: spec.get(k) for k in ("data", "strategy", "epochs", "seed")}
        measured = {int(k): v for k, v in study.user_attrs.get(STUDY_FRONT, {}).items()}
        one_shot = study.user_attrs.get(STUDY_ONE_SHOT)
        results = results_dict(records, constraints, best, run_info, measured, None, one_shot)
        sys.stdout.write(json.dumps(results, indent=2))
        sys.stdout.write("\n")
        return
    console.print(
        f"[bold]{run}[/] · data {spec.get('data')} · constraints: {constraints.describe()}"
    )
    console.print(summary_table(records))
    one_shot = study.user_attrs.get(STUDY_ONE_SHOT)
    if one_shot:
        console.print(one_shot_line(one_shot), highlight=False)
    gone = left_running(study)
    running = [r.number for r in records if r.state == "running" and r.number not in gone]
    if running:
        console.print(f"running now: trial {', '.join(map(str, running))}")
    if gone:
        console.print(
            f"left unfinished by a search process that is gone: trial "
            f"{', '.join(map(str, sorted(gone)))} (the next edgenas search on {run} trains "
            f"{'it' if len(gone) == 1 else 'them'} again)"
        )
    console.print(front_table(records, predicted=bool(spec.get("latency_profile"))))
    print_best(console, best, run)
