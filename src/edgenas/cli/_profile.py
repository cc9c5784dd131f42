"""``edgenas profile``: plan the models a device must time, time them here, and check a
profile's predictions against measurements."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from edgenas.cli._console import console, err, fail, setup_logging
from edgenas.errors import EdgenasError

__all__ = ["profile_app"]

profile_app = typer.Typer(
    help="Latency profiles: plan the models a device must time, and time them.",
    no_args_is_help=True,
)


_SpaceOption = Annotated[
    str, typer.Option(help="Search space: edge, a TOML file, or module:attribute.")
]
_ArchitecturesOption = Annotated[
    int,
    typer.Option(
        help="Architectures sampled from the space whose distinct convolutions are planned."
    ),
]
_ReferencesOption = Annotated[
    int, typer.Option(help="Whole networks planned, to calibrate the predictor.")
]
_ChannelsOption = Annotated[int, typer.Option(help="Input channels of the data (1 gray, 3 RGB).")]
_ClassesOption = Annotated[int, typer.Option(help="Number of classes.")]
_PlanSeedOption = Annotated[int, typer.Option(help="Seed of the sampled architectures.")]


def _write_plan(out: Path, space: str, architectures: int, references: int, channels: int,
                classes: int, seed: int) -> dict[str, int]:  # fmt: skip
    from rich.progress import Progress

    from edgenas.profile import write_plan
    from edgenas.space import load_space

    with Progress(console=err, transient=True) as bar:
        task = bar.add_task("exporting models", total=None)
        return write_plan(
            load_space(space), out, architectures=architectures, references=references,
            in_channels=channels, num_classes=classes, seed=seed,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )  # fmt: skip


@profile_app.command("plan")
def profile_plan_command(
    out: Annotated[Path, typer.Option(help="Plan to write, such as plan.zip.")],
    space: _SpaceOption = "edge",
    architectures: _ArchitecturesOption = 2000,
    references: _ReferencesOption = 200,
    channels: _ChannelsOption = 3,
    classes: _ClassesOption = 10,
    seed: _PlanSeedOption = 0,
) -> None:
    """Write the ONNX models a device must time: the distinct convolutions (at their input
    shapes) of sampled architectures, plus whole reference networks that calibrate the
    predictor.

    Copy the plan to the device and run `edgenas-device PLAN --threads N --out PROFILE.json`
    there (it needs only onnxruntime and numpy); it also measures the peak memory of the
    reference networks (skip with --no-memory).
    """
    setup_logging(False)
    try:
        counts = _write_plan(out, space, architectures, references, channels, classes, seed)
    except EdgenasError as exc:
        fail(str(exc))
    from edgenas.device import read_plan

    summary = ", ".join(f"{n} {kind}" for kind, n in counts.items())
    coverage = read_plan(out)[0].get("coverage") or {}
    if "convolutions" in coverage:
        summary += (
            f"; they hold {100 * coverage['convolutions']:.1f}% of the convolutions of other "
            "random architectures (the rest are modelled)"
        )
    console.print(f"{out}: {summary}", soft_wrap=True)


@profile_app.command("local")
def profile_local_command(
    out: Annotated[Path, typer.Option(help="Profile to write, such as local.json.")],
    threads: Annotated[int, typer.Option(help="ONNX Runtime threads.")] = 1,
    space: _SpaceOption = "edge",
    architectures: _ArchitecturesOption = 2000,
    references: _ReferencesOption = 200,
    channels: _ChannelsOption = 3,
    classes: _ClassesOption = 10,
    seed: _PlanSeedOption = 0,
    no_memory: Annotated[
        bool,
        typer.Option(
            "--no-memory",
            help="Skip measuring the peak memory of the reference networks (a fresh process each).",
        ),
    ] = False,
) -> None:
    """Plan and time on this machine in one go (the plan is kept beside the profile), and
    measure the peak memory of the reference networks."""
    setup_logging(False)
    from rich.progress import Progress

    from edgenas.device import PlanError, profile_plan

    plan = out.with_suffix(".plan.zip")
    try:
        if not plan.exists():
            _write_plan(plan, space, architectures, references, channels, classes, seed)
        with Progress(console=err, transient=True) as bar:
            task = bar.add_task("timing models", total=None)
            memory_task = bar.add_task("measuring peak memory", total=None, visible=False)
            profile = profile_plan(
                plan, out, threads=threads, memory=not no_memory,
                progress=lambda done, total, entry, ms: bar.update(task, completed=done, total=total),
                memory_progress=lambda done, total, entry, mb: bar.update(
                    memory_task, completed=done, total=total, visible=True),
            )  # fmt: skip
    except (EdgenasError, PlanError) as exc:
        fail(str(exc))
    measured = sum("peak_memory_mb" in m for m in profile["measurements"].values())
    memory = f", peak memory of {measured} network(s)" if measured else ""
    console.print(
        f"{out}: {len(profile['measurements'])} models timed with {threads} thread(s){memory}",
        soft_wrap=True,
    )


@profile_app.command("check")
def profile_check_command(
    profile: Annotated[
        Path, typer.Argument(help="A profile written by edgenas-device or edgenas profile local.")
    ],
    n: Annotated[
        int, typer.Option("--n", min=1, help="Random architectures to measure end to end here.")
    ] = 100,
    space: _SpaceOption = "edge",
    seed: Annotated[
        int, typer.Option(help="Seed of the sampled architectures (other than the plan's).")
    ] = 1,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the figures as one JSON object.")
    ] = False,
) -> None:
    """Measure random architectures on this machine and compare the profile's predictor, a
    FLOPs-proportional estimate and a plain sum of operator latencies with the measurements.
    Each architecture is timed in three passes and its median pass kept. Up to 50 of the
    profile's own reference networks (no more than --n) are timed in the same passes and
    compared with their profiled latency: the ceiling that this machine's timing noise sets for any predictor
    (`repeat` in --json). When the profile has anchor timings, the anchor is timed too and the
    figures are also given with the machine's drift since profiling divided out."""
    setup_logging(False)
    from rich.progress import Progress
    from rich.table import Table

    from edgenas.profile import check_profile, load_profile
    from edgenas.space import load_space

    try:
        data = load_profile(profile)
        with Progress(console=err, transient=True) as bar:
            task = bar.add_task("measuring architectures", total=3 * n)
            figures = check_profile(
                data, load_space(space), n, seed=seed,
                progress=lambda done, total: bar.update(task, completed=done),
            )  # fmt: skip
    except EdgenasError as exc:
        fail(str(exc))
    if as_json:
        sys.stdout.write(json.dumps(figures) + "\n")
        return
    table = Table("estimate", "within ±5%", "within ±10%", "MAPE", "Spearman",
                  title=f"{n} architectures, {figures['threads']} thread(s), "
                  f"{100 * figures['coverage']:.0f}% of their convolutions in the profile")  # fmt: skip
    rows = [(figures[name], label) for name, label in (
        ("predictor", "predictor"), ("flops", "FLOPs-proportional"),
        ("block_sum", "sum of operators"))]  # fmt: skip
    steady = figures.get("at_profile_speed") or {}
    if "predictor" in steady:
        rows.append((steady["predictor"], "predictor, at the profile's speed"))
    repeat = figures.get("repeat")
    if repeat:
        rows.append((repeat, f"the profile's own timing of {repeat['n']} reference networks"))
        if "repeat" in steady:
            rows.append((steady["repeat"], "the same, at the profile's speed"))
    for f, label in rows:
        table.add_row(label, f"{100 * f['within_5']:.0f}%", f"{100 * f['within_10']:.0f}%",
                      f"{f['mape']:.1f}%", f"{f['spearman']:.3f}")  # fmt: skip
    notes = []
    if "predictor" in steady:
        notes.append(
            f"this machine ran {figures['speed_now_vs_profile']:.2f}× the profile's time for the "
            "anchor model; rows 'at the profile's speed' divide each measurement by that drift"
        )
    if repeat:
        notes.append(
            "the profile's own timing is what a predictor that knew every network's profiled "
            "latency exactly would score: the ceiling this machine's timing noise sets"
        )
    table.caption = "; ".join(notes) or None
    console.print(table)
