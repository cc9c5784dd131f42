"""The terminal view of a running search (rich), and the summary and best printed at the end."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from edgenas._eta import TimeLeft
from edgenas._eta import duration as _duration
from edgenas.cost import Costs
from edgenas.finalize import holdout_gap
from edgenas.study import BestCheck, TrialRecord, pareto_front, stable_for
from edgenas.train import Metric

__all__ = ["LiveView", "front_table", "one_shot_line", "print_best", "summary_table"]

# How a one-shot search's final model was made, by its ``start``.
_START_WORDS = {
    "judged": "as judged, no training",
    "inherited": "fine-tuned",
    "scratch": "trained from scratch",
}


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def front_table(
    records: Sequence[TrialRecord],
    title: str = "Pareto front",
    limit: int = 12,
    predicted: bool = False,
    score: str = "acc",
) -> Group:
    """Accuracy against latency: trained, feasible candidates no other beats on both.

    Genotypes are long, so they are listed under the table, one line each, instead of being
    folded into a column. Peak memory and energy are estimates (calibrated analytic and from
    MACs and bytes moved); latency is measured, or ``predicted`` from a device profile.
    ``score`` heads the validation score's column (`Metric.short`: acc, bal acc, F1, recall).
    """
    table = Table(title=title, title_justify="left", expand=False)
    latency = "latency (pred.)" if predicted else "latency"
    for name in ("trial", f"val {score}", latency, "memory", "size", "params", "MACs",
                 "energy (est.)"):  # fmt: skip
        table.add_column(name, justify="right")
    front = pareto_front(records)
    genotypes = Table.grid(padding=(0, 1))
    genotypes.add_column(justify="right", style="dim")
    genotypes.add_column(style="dim", overflow="fold")
    for r in front[:limit]:
        c = r.costs
        assert c is not None
        table.add_row(
            str(r.number),
            _pct(r.accuracy),
            f"{c.latency_ms:.2f} ms",
            f"{c.peak_memory_mb:.1f} MB",
            f"{c.size_mb:.2f} MB",
            f"{c.params / 1e6:.2f} M",
            f"{c.macs / 1e6:.1f} M",
            "—" if math.isnan(c.energy_mj) else f"{c.energy_mj:.2f} mJ",
        )
        label = f" (baseline {r.baseline})" if r.baseline else ""
        if r.one_shot:
            label = " (one-shot: inherited weights)"
        elif r.start:
            label = f" ({_START_WORDS.get(r.start, r.start)}, trial {r.finetune_of} again)"
        genotypes.add_row(f"{r.number}", f"{r.genotype}{label}")
    if len(front) > limit:
        table.caption = f"… and {len(front) - limit} more"
    if not front:
        table.caption = "no trained candidate that meets the constraints yet"
    return Group(table, genotypes)


def _counts(records: Sequence[TrialRecord]) -> dict[str, int]:
    counts = {"trials": len(records), "trained": 0, "feasible": 0}
    for r in records:
        counts[r.state] = counts.get(r.state, 0) + 1
        counts["trained"] += r.trained and r.state != "running" and r.start != "judged"
        counts["feasible"] += r.state != "infeasible" and r.costs is not None
    return counts


def summary_table(records: Sequence[TrialRecord]) -> Text:
    c = _counts(records)
    judged = sum(r.one_shot and r.state == "complete" for r in records)
    kept = sum(r.start == "judged" and r.state == "complete" for r in records)
    return Text(
        f"{c['trials']} trials · {c['feasible']} feasible · "
        + (f"{judged} judged by inherited weights · " if judged else "")
        + f"{c['trained']} trained "
        f"({c.get('complete', 0) - judged - kept} complete, {c.get('pruned', 0)} stopped early, "
        f"{c.get('failed', 0)} failed) · "
        + (f"{kept} kept as judged (no training) · " if kept else "")
        + f"{c.get('infeasible', 0)} rejected by the constraints"
    )


def one_shot_line(info: dict[str, Any]) -> str:
    """A one-shot search's supernet and the subnets it judged, in a line."""
    epochs = info.get("epochs")
    trained = "reused" if info.get("reused") else f"trained {_duration(info.get('seconds', 0))}"
    line = f"one-shot: supernet {info.get('supernet')} ({epochs} epoch(s), {trained})"
    judged = info.get("subnets_judged")
    if judged is not None:
        line += f" · {judged} subnets judged"
        if info.get("subnets_per_hour"):
            line += f" ({info['subnets_per_hour']:,} per hour)"
    return line


_RESIZE_WORDS = {
    "pad": "the long side to the resolution, black borders",
    "crop": "the short side to the resolution, centre-cropped",
    "squash": "stretched to a square",
}


def _data_lines(info: dict[str, Any]) -> str | None:
    """The augmentation and resizing a search's data has in effect, in two lines."""
    if "augment" not in info:
        return None
    augment = ",".join(info["augment"]) or "none"
    source = (
        f"the default for {info.get('data')}" if info.get("augment_default") else "set by --augment"
    )
    resize = info.get("resize")
    words = _RESIZE_WORDS.get(str(resize))
    return f"augment {augment} ({source})\n  resize {resize}" + (f" ({words})" if words else "")


def _state(record: TrialRecord) -> str:
    """A trial's state in a line of the log; one-shot judgements and final trainings say so."""
    if record.state != "complete":
        return record.state
    if record.one_shot:
        return "judged"
    if record.start:
        return {"judged": "as judged", "inherited": "fine-tuned"}.get(record.start, record.start)
    return record.state


class LiveView:
    """A :class:`~edgenas.study.SearchProgress` that draws the search in the terminal.

    On a terminal it keeps one live panel; elsewhere (CI logs, pipes) it prints a line per trial.
    """

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.interactive = self.console.is_terminal
        self.info: dict[str, Any] = {}
        self.score = "acc"  # the validation score's short name (`Metric.short`)
        self.records: list[TrialRecord] = []
        self.current = ""
        self.phase = ""
        self.started = time.monotonic()
        self.train_times: list[float] = []
        self._trial_clocks: dict[int, TimeLeft] = {}  # per trial: several may train at once
        self._live: Live | None = None

    # -- SearchProgress -------------------------------------------------------------------
    def on_start(self, info: dict[str, Any]) -> None:
        self.info = info
        metric = Metric.parse(info.get("metric"))
        self.score = metric.short
        # Named when not the default: what the accuracies below are, how classes weigh.
        weights = info.get("class_weights", "none")
        scoring = (f" · scored by {metric.label}" if metric.kind != "accuracy" else "") + (
            f" · classes weighted {weights}" if weights != "none" else ""
        )
        self.started = time.monotonic()
        self.phase = ""
        one_shot = info.get("one_shot")
        budget = f"{info['trials']} trainings"
        if one_shot:
            supernet = (
                f"the supernet {one_shot['supernet']}"
                if one_shot["reused"]
                else f"a supernet ({one_shot['supernet_epochs']} epoch(s) at most)"
            )
            budget = (
                f"one-shot: {supernet}, up to {one_shot['subnets']} subnets judged by "
                f"inherited weights, the best {one_shot['finetune']} trained again "
                f"({one_shot['epochs']} epoch(s) each)"
            )
        self.console.print(
            f"[bold]edgenas search[/] {info['data']} ({info['images']} images, "
            f"{len(info['classes'])} classes) → {info['run_dir']}\n"
            f"  objective {info['objective']}{scoring} · strategy {info['strategy']} · "
            f"constraints: {info['constraints']} · {budget}"
            + (f" ({info['trained_before']} done before)" if info["trained_before"] else "")
            + (f"\n  latency {info['latency']}" if info.get("latency") else "")
            + (f"\n  {data}" if (data := _data_lines(info)) else "")
        )
        if self.interactive:
            self._live = Live(self, console=self.console, refresh_per_second=2, transient=True)
            self._live.start()

    def on_phase(self, text: str) -> None:
        self.phase = text
        if not self.interactive and self.info:
            self.console.print(f"  {text}")

    def on_trial_start(self, number: int, genotype: str, costs: Costs) -> None:
        self.current = f"trial {number} ({costs.latency_ms:.2f} ms): {genotype}"
        self._trial_clocks[number] = TimeLeft()

    def on_epoch(self, number: int, epoch: int, epochs: int, accuracy: float) -> None:
        self.current = (
            f"training trial {number}: epoch {epoch}/{epochs}, val {self.score} {_pct(accuracy)}"
        )
        left = self._trial_clocks.setdefault(number, TimeLeft()).update(epoch, epochs)
        if left is not None and epoch < epochs:
            self.current += f" · this trial about {_duration(left)} more"

    def on_trial_end(self, record: TrialRecord, records: list[TrialRecord]) -> None:
        self.records = records
        self._trial_clocks.pop(record.number, None)
        self.current = ""
        if record.trained and record.train_seconds:
            self.train_times.append(record.train_seconds)
        if not self.interactive:
            lat = f"{record.costs.latency_ms:.2f} ms" if record.costs else "—"
            acc = f" {self.score} {_pct(record.accuracy)}" if record.accuracy is not None else ""
            why = f" ({record.reason})" if record.reason and record.state != "complete" else ""
            if record.baseline:
                why += f" [baseline {record.baseline}]"
            elif record.warm_start:
                why += f" [warm start {record.warm_start}]"
            front = self._front_line() if record.hypervolume is not None else None
            left = self._left() if record.trained else None
            self.console.print(
                f"  trial {record.number:>3} {_state(record):<10} {lat:>10}{acc}{why}"
                + (f" · {front}" if front else "")
                + (f" · about {_duration(left)} left" if left is not None else ""),
                highlight=False,
            )

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    # -- drawing --------------------------------------------------------------------------
    def _front_line(self) -> str | None:
        """The front's measure and, with --stop-when-stable, how long it has not improved."""
        history = [r.hypervolume for r in self.records if r.hypervolume is not None]
        if not history:
            return None
        measure = self.info.get("front_measure", "hypervolume")
        value = history[-1]
        shown = _pct(value) if self.info.get("front_measure_is_share") else f"{value:.4f}"
        line = f"{measure} {shown}"
        patience = self.info.get("stop_when_stable")
        if patience:
            line += f" · stable for {stable_for(history)}/{patience}"
        return line

    def _left(self) -> float | None:
        """Seconds left: the trainings still to run at the mean time of those done, capped
        by the time budget; None while unknown."""
        deadline = self.info.get("deadline")
        trained = sum(r.trained for r in self.records)
        remaining_trainings = max(0, self.info.get("trials", 0) - trained)
        estimate = None
        if self.train_times and remaining_trainings:
            estimate = remaining_trainings * sum(self.train_times) / len(self.train_times)
        if deadline is not None:
            left = deadline - time.monotonic()
            estimate = min(estimate, left) if estimate is not None else left
        return estimate

    def _time_line(self) -> str:
        parts = [f"elapsed {_duration(time.monotonic() - self.started)}"]
        left = self._left()
        if left is not None:
            parts.append(f"about {_duration(left)} left")
        return " · ".join(parts)

    def __rich__(self) -> Panel:
        best = max(
            (r for r in self.records if r.usable),
            key=lambda r: r.accuracy or 0.0,
            default=None,
        )
        lines: list[Any] = [summary_table(self.records), Text(self._time_line(), style="dim")]
        front = self._front_line()
        if front:
            lines.append(Text(front))
        if best is not None and best.costs is not None:
            lines.append(
                Text(
                    f"best so far: trial {best.number}, val {self.score} {_pct(best.accuracy)}, "
                    f"{best.costs.latency_ms:.2f} ms",
                    style="bold green",
                )
            )
        if self.current or self.phase:
            lines.append(Text(self.current or self.phase, style="cyan", overflow="ellipsis"))
        predicted = str(self.info.get("latency", "")).startswith("predicted")
        lines.append(front_table(self.records, limit=8, predicted=predicted, score=self.score))
        return Panel(Group(*lines), title="edgenas search", border_style="blue")


def print_best(console: Console, best: BestCheck | None, run_dir: Path) -> None:
    """The search's best: its accuracies, latency, model file and genotype, and a warning
    when validation and holdout disagree by more than chance explains."""
    if best is None:
        console.print("[yellow]no trained candidate met every constraint[/]")
        return

    metric = Metric.parse(best.metric)
    scored = "" if metric.kind == "accuracy" else f" {metric.label}"
    console.print(
        f"[bold green]best:[/] trial {best.trial} · validation{scored} {_pct(best.accuracy)} · "
        f"holdout {_pct(best.holdout_accuracy)} · "
        + (
            f"{best.latency_ms_predicted:.2f} ms predicted, "
            if best.latency_ms_predicted is not None
            else ""
        )
        + (
            f"{best.latency_ms_measured:.2f} ms measured again"
            if best.latency_ms_measured is not None
            else "latency not measured again"
        )
        + f" · model: {run_dir / best.onnx}",
        highlight=False,
    )
    console.print(Text(best.genotype, overflow="fold"))
    gap = holdout_gap(best.accuracy, best.validation_images,
                      best.holdout_accuracy, best.holdout_images)  # fmt: skip
    if gap:
        console.print(f"[yellow]warning:[/] {gap}", highlight=False)
