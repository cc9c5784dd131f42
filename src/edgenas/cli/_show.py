"""``edgenas show``: a search summarised from its study, also while it runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from edgenas.cli._console import console, fail, setup_logging
from edgenas.errors import EdgenasError

if TYPE_CHECKING:
    from edgenas.finalize import MajorityBaseline
    from edgenas.study import BestCheck
    from edgenas.train import Metric

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
        keys = ("data", "strategy", "epochs", "seed", "augment", "resize")
        run_info = {k: spec.get(k) for k in keys}
        measured = {int(k): v for k, v in study.user_attrs.get(STUDY_FRONT, {}).items()}
        one_shot = study.user_attrs.get(STUDY_ONE_SHOT)
        results = results_dict(records, constraints, best, run_info, measured, None, one_shot)
        sys.stdout.write(json.dumps(results, indent=2))
        sys.stdout.write("\n")
        return
    console.print(
        f"[bold]{run}[/] · data {spec.get('data')} · constraints: {constraints.describe()}"
    )
    try:
        metric, baselines = _scoring(run, spec, best)
    except EdgenasError as exc:
        fail(str(exc))
    _print_scoring(metric, baselines)
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
    console.print(
        front_table(records, predicted=bool(spec.get("latency_profile")), score=metric.short)
    )
    if best is None and running:
        # The best is chosen, checked on the holdout and exported when the search ends.
        console.print("no best chosen yet: the search is still running")
        return
    print_best(console, best, run)
    if best is not None:
        _print_classes(best.validation_report, best.holdout_report)


def _scoring(
    run: Path, spec: dict[str, Any], best: BestCheck | None
) -> tuple[Metric, dict[str, MajorityBaseline]]:
    """The run's metric and its majority-class baseline per split (counted from the data's
    labels for runs that did not record it)."""
    from edgenas._io import read_json
    from edgenas.finalize import majority_baselines, run_metric
    from edgenas.study import RunDir

    results = read_json(RunDir(run).results)
    reports = {
        "validation": best.validation_report if best else None,
        "holdout": best.holdout_report if best else None,
    }
    recorded = results if isinstance(results, dict) else None
    return run_metric(spec), majority_baselines(run, spec, recorded, reports=reports)


def _print_scoring(metric: Metric, baselines: dict[str, MajorityBaseline]) -> None:
    """The metric the run ranks by, and what always answering the majority class scores."""
    console.print(
        f"metric: [bold]{metric.label}[/] (the validation score the search ranks by; "
        f"val {metric.short} and the best's holdout figure below are in it)",
        highlight=False,
    )
    for split, baseline in baselines.items():
        console.print(
            f"majority-class baseline, {split}: {baseline.describe(metric)}", highlight=False
        )


def _print_classes(validation: dict[str, Any] | None, holdout: dict[str, Any] | None) -> None:
    """The best class by class (precision, recall, F1, images) and its confusion matrices,
    on validation and holdout."""
    from rich.table import Table

    from edgenas.finalize import per_class_rows

    reports = {k: r for k, r in (("validation", validation), ("holdout", holdout)) if r}
    if not reports:
        return

    def pct(x: float | None) -> str:
        return "—" if x is None else f"{100 * x:.1f}%"

    table = Table(title="best, class by class", title_justify="left", expand=False)
    table.add_column("class")
    for split in reports:
        prefix = "val" if split == "validation" else split
        for name in ("precision", "recall", "F1", "n"):
            table.add_column(f"{prefix} {name}", justify="right")
    rows = {split: per_class_rows(report) for split, report in reports.items()}
    first = next(iter(rows.values()))
    for i, (name, *_) in enumerate(first):
        cells = [name]
        for split_rows in rows.values():
            _, precision, recall, f1, support = split_rows[i]
            cells += [pct(precision), pct(recall), pct(f1), str(support)]
        table.add_row(*cells)
    console.print(table)
    matrices = Table.grid(padding=(0, 4))
    tables = []
    for split, report in reports.items():
        classes = [str(c) for c in report.get("classes") or []]
        matrix = Table(title=f"{split}: true ↓ predicted →", title_justify="left", expand=False)
        matrix.add_column("")
        for c in classes:
            matrix.add_column(c, justify="right")
        for c, row in zip(classes, report.get("confusion_matrix") or [], strict=False):
            matrix.add_row(c, *(str(int(n)) for n in row))
        tables.append(matrix)
    matrices.add_row(*tables)
    console.print(matrices)
