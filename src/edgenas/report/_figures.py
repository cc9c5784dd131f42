"""Plotly figures of a run directory, shared by ``edgenas report`` and the live dashboard.

Everything is read from the study first (so the figures work while a search still runs, when
``results.json`` is missing or stale), then from ``results.json`` and ``final/final.json`` when
they are there. :func:`load_run` reads a run once; :func:`run_figures` draws it.

Example:
    >>> figs = run_figures(Path("runs/elpv"))  # doctest: +SKIP
    >>> list(figs)  # doctest: +SKIP
    ['pareto', 'front-over-time', 'front-blocks', 'latency-prediction', 'confusion']
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from edgenas._io import read_json
from edgenas.arch import BLOCK_TYPES, KERNELS, Genotype
from edgenas.cost import Constraints
from edgenas.errors import EdgenasError
from edgenas.finalize import MajorityBaseline, majority_baselines, run_metric
from edgenas.study import (
    STUDY_BEST,
    STUDY_FRONT,
    STUDY_HV_REFERENCE,
    BestCheck,
    RunDir,
    TrialRecord,
    load_result,
    pareto_front,
    records_from_study,
)
from edgenas.train import Metric

__all__ = ["FIGURES", "RunData", "class_report_shown", "load_run", "run_figures",
           "short_genotype"]  # fmt: skip

#: The figures :func:`run_figures` returns, in order.
FIGURES: tuple[str, ...] = (
    "pareto",
    "front-over-time",
    "front-blocks",
    "latency-prediction",
    "confusion",
)

# One palette for the report and the dashboard (colour-blind safe, after Okabe and Ito).
MEETS = "#0072B2"
BREAKS = "#D55E00"
FRONT = "#009E73"
BEST = "#E69F00"
MUTED = "#999999"
LIMIT = "#CC3311"

# Constraint name → (what it limits, in words, and the Costs field it is checked on).
_LIMIT_WORDS = {
    "max_latency_ms": "latency",
    "max_memory_mb": "memory",
    "max_size_mb": "size",
    "max_macs": "MACs",
    "max_params": "params",
    "max_energy_mj": "energy",
}
_FONT = {"family": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", "size": 13}


@dataclass(frozen=True)
class RunData:
    """One run directory, read once: what the report and the dashboard draw.

    Attributes:
        run_dir: the run directory.
        records: every proposed candidate, from the study, in trial order.
        spec: ``spec.json`` (the search's settings).
        results: ``results.json``, or None while a first search still runs.
        final: ``final/final.json``, or None before ``edgenas finalize``.
        best: the chosen best with its final checks (the study's, else ``results.json``'s).
        measured: trial → latency measured at the end, for runs whose latency was predicted.
        started / completed: trial → when it started and finished (from the study).
        hv_reference: the hypervolume's reference latency, when the study fixed one.
        baselines: what always answering the majority class scores, per split
            (``validation``, ``holdout``), in the run's metric.
    """

    run_dir: Path
    records: tuple[TrialRecord, ...]
    spec: dict[str, Any]
    results: dict[str, Any] | None
    final: dict[str, Any] | None
    best: BestCheck | None
    measured: dict[int, float] = field(default_factory=dict)
    started: dict[int, datetime] = field(default_factory=dict)
    completed: dict[int, datetime] = field(default_factory=dict)
    hv_reference: float | None = None
    baselines: dict[str, MajorityBaseline] = field(default_factory=dict)

    @property
    def metric(self) -> Metric:
        """The metric the run ranked by (accuracy for runs from before it was recorded)."""
        return run_metric(self.spec)

    @property
    def constraints(self) -> Constraints:
        return Constraints.from_dict(self.spec.get("constraints") or {})

    @property
    def objective(self) -> str:
        objective = self.spec.get("objective")
        if isinstance(objective, dict):
            return str(objective.get("kind", "accuracy"))
        return str(objective or "accuracy")

    @property
    def predicted(self) -> bool:
        """Whether the search predicted latency from a device profile."""
        if self.spec.get("latency_profile"):
            return True
        run = (self.results or {}).get("run") or {}
        return (run.get("latency") or {}).get("source") == "predicted"

    @property
    def running(self) -> bool:
        return any(r.state == "running" for r in self.records)

    @property
    def front(self) -> list[TrialRecord]:
        return pareto_front(self.records)

    @property
    def best_trial(self) -> int | None:
        return self.best.trial if self.best else None

    def record(self, number: int) -> TrialRecord | None:
        for r in self.records:
            if r.number == number:
                return r
        return None

    def trained(self) -> list[TrialRecord]:
        """Trained candidates with an accuracy and costs (complete or stopped early)."""
        return [
            r for r in self.records if r.trained and r.accuracy is not None and r.costs is not None
        ]

    def rejected(self) -> list[TrialRecord]:
        """Candidates the constraints turned away before training, with their costs."""
        return [r for r in self.records if r.state == "infeasible" and r.costs is not None]

    def breaks_a_limit(self, r: TrialRecord) -> bool:
        """Whether a candidate breaks a limit: as checked in the search, or on the latency
        measured again at the end (a predicted search)."""
        if not r.feasible:
            return True
        limit = self.constraints.max_latency_ms
        again = self.measured.get(r.number)
        return limit is not None and again is not None and again > limit


def load_run(
    run_dir: Path, study: optuna.Study | None = None, *, load_data: bool = True
) -> RunData:
    """Read a run directory: its study (through ``edgenas.study.load_result``, or ``study``
    when it is open already, as in a dashboard that reads the run again and again),
    ``results.json`` and ``final/final.json`` when present.

    The majority-class baseline is read from the run's files; for a run that did not record
    it, ``load_data`` counts it from the labels of the run's data (loaded again).

    Raises ``EdgenasError`` for a folder that holds no search.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise EdgenasError(f"{run_dir} is not a folder; give a run directory edgenas search wrote")
    run = RunDir(run_dir)
    if study is None:
        study, records, spec = load_result(run_dir)
    else:
        records = records_from_study(study)
        saved = read_json(run.spec)
        spec = saved if isinstance(saved, dict) else {}
    results = read_json(run.results)
    results = results if isinstance(results, dict) else None
    final = read_json(run.final_json)
    final = final if isinstance(final, dict) else None
    attrs = study.user_attrs
    best = BestCheck.from_json(attrs.get(STUDY_BEST) or (results or {}).get("best_details"))
    measured = {int(k): float(v) for k, v in (attrs.get(STUDY_FRONT) or {}).items()}
    for t in (results or {}).get("trials", []):
        if t.get("latency_ms_measured") is not None and t.get("latency_ms_predicted") is not None:
            measured.setdefault(int(t["number"]), float(t["latency_ms_measured"]))
    started, completed = {}, {}
    for t in study.get_trials(deepcopy=False):
        if t.datetime_start is not None:
            started[t.number] = t.datetime_start
        if t.datetime_complete is not None:
            completed[t.number] = t.datetime_complete
    reference = attrs.get(STUDY_HV_REFERENCE)
    reports = {
        "validation": best.validation_report if best else None,
        "holdout": best.holdout_report if best else None,
    }
    baselines = majority_baselines(
        run_dir, spec, results, final, reports=reports, load_data=load_data
    )
    return RunData(
        run_dir=run_dir,
        records=tuple(records),
        spec=spec,
        results=results,
        final=final,
        best=best,
        measured=measured,
        started=started,
        completed=completed,
        hv_reference=float(reference) if reference else None,
        baselines=baselines,
    )


def short_genotype(genotype: str | None, width: int = 64) -> str:
    """A genotype cut to ``width`` characters (hover texts, tables)."""
    if not genotype:
        return "—"
    return genotype if len(genotype) <= width else genotype[: width - 1] + "…"


def run_figures(run_dir: Path | RunData) -> dict[str, go.Figure]:
    """The figures of a run, keyed as :data:`FIGURES` (in that order): ``pareto``,
    ``front-over-time``, ``front-blocks``, ``latency-prediction`` and ``confusion``.

    ``run_dir`` may be a :class:`RunData` already loaded, so a page that also shows tables
    reads the run once.
    """
    run = run_dir if isinstance(run_dir, RunData) else load_run(Path(run_dir))
    return {
        "pareto": pareto_figure(run),
        "front-over-time": front_over_time_figure(run),
        "front-blocks": front_blocks_figure(run),
        "latency-prediction": latency_prediction_figure(run),
        "confusion": confusion_figure(run),
    }


# -- Pareto ---------------------------------------------------------------------------------


def _hover(r: TrialRecord) -> list[Any]:
    c = r.costs
    assert c is not None
    return [
        r.number,
        100 * (r.accuracy or 0.0),
        c.latency_ms,
        c.peak_memory_mb,
        c.size_mb,
        short_genotype(r.genotype),
    ]


_HOVER = (
    "trial %{customdata[0]}<br>{metric} %{customdata[1]:.1f}%<br>"
    "latency %{customdata[2]:.3f} ms<br>memory %{customdata[3]:.1f} MB<br>"
    "size %{customdata[4]:.2f} MB<br>%{customdata[5]}<extra>%{fullData.name}</extra>"
)


def _scores(
    rs: Sequence[TrialRecord], name: str, metric: str = "accuracy", **marker: Any
) -> go.Scatter:
    return go.Scatter(
        x=[r.costs.latency_ms for r in rs if r.costs],
        y=[100 * (r.accuracy or 0.0) for r in rs],
        customdata=[_hover(r) for r in rs],
        hovertemplate=_HOVER.replace("{metric}", metric),
        mode="markers",
        name=name,
        marker={"size": 9, "line": {"width": 1, "color": "white"}, **marker},
    )


def pareto_groups(run: RunData) -> dict[str, list[TrialRecord]]:
    """The candidates of the Pareto plot by group, each drawn once (the best is drawn again,
    as a star, on top): ``front``, ``meets``, ``breaks``, ``stopped`` and ``rejected``."""
    front_numbers = {r.number for r in run.front}
    groups: dict[str, list[TrialRecord]] = {
        "front": [],
        "meets": [],
        "breaks": [],
        "stopped": [],
        "rejected": run.rejected(),
    }
    for r in run.trained():
        if r.number in front_numbers:
            groups["front"].append(r)
        elif r.state != "complete":
            groups["stopped"].append(r)
        elif run.breaks_a_limit(r):
            groups["breaks"].append(r)
        else:
            groups["meets"].append(r)
    groups["front"].sort(key=lambda r: r.costs.latency_ms if r.costs else 0.0)
    return groups


def pareto_marker_count(run: RunData) -> int:
    """How many markers the Pareto figure draws: every trained candidate, every rejected one
    with costs, and the best once more as a star."""
    groups = pareto_groups(run)
    best = run.best_trial
    drawn = {r.number for g in groups.values() for r in g}
    return sum(len(g) for g in groups.values()) + (best is not None and best in drawn)


def _broken(run: RunData, r: TrialRecord) -> str:
    broken = [k for k, v in r.violations.items() if v > 0]
    if not broken and r.costs is not None:
        broken = [k for k, v in run.constraints.violations(r.costs).items() if v > 0]
    return ", ".join(_LIMIT_WORDS.get(k, k) for k in broken) or "a limit"


def pareto_figure(run: RunData) -> go.Figure:
    """The validation score (the run's metric) against latency for every trained candidate,
    the front joined by a step line, the best starred, the latency limit and what always
    answering the majority class scores drawn; candidates rejected before training in a strip
    below, by the limit they broke."""
    groups = pareto_groups(run)
    label = run.metric.label

    def _points(rs: Sequence[TrialRecord], name: str, **marker: Any) -> go.Scatter:
        return _scores(rs, name, label, **marker)

    rejected = groups["rejected"]
    latency_axis = "latency (ms, predicted for the device)" if run.predicted else "latency (ms)"
    if rejected:
        fig = make_subplots(
            rows=2, cols=1, shared_xaxes=True, row_heights=[0.82, 0.18], vertical_spacing=0.04
        )
    else:
        fig = go.Figure()
    grid = {"row": 1, "col": 1} if rejected else {}

    front = groups["front"]
    if front:
        colours = [BREAKS if run.breaks_a_limit(r) else FRONT for r in front]
        trace = _points(front, "Pareto front", color=colours, size=11)
        trace.update(mode="lines+markers", line={"shape": "hv", "color": FRONT, "width": 2})
        fig.add_trace(trace, **grid)
    if groups["meets"]:
        fig.add_trace(
            _points(groups["meets"], "meets every limit", color=MEETS, opacity=0.8), **grid
        )
    if groups["breaks"]:
        name = "breaks a limit (measured again)" if run.predicted else "breaks a limit"
        fig.add_trace(_points(groups["breaks"], name, color=BREAKS, symbol="x"), **grid)
    if groups["stopped"]:
        fig.add_trace(
            _points(
                groups["stopped"], "stopped early (partial accuracy)", color=MUTED,
                symbol="circle-open",
            ),
            **grid,
        )  # fmt: skip
    best = run.record(run.best_trial) if run.best_trial is not None else None
    if best is not None and best.accuracy is not None and best.costs is not None:
        star = _points([best], f"best (trial {best.number})", color=BEST, symbol="star")
        star.marker.update(size=18, line={"width": 1, "color": "#333333"})
        fig.add_trace(star, **grid)
    if rejected:
        by_limit: dict[str, list[TrialRecord]] = {}
        for r in rejected:
            by_limit.setdefault(_broken(run, r), []).append(r)
        for broken, rs in by_limit.items():
            fig.add_trace(
                go.Scatter(
                    x=[r.costs.latency_ms for r in rs if r.costs],
                    y=[f"rejected: {broken}"] * len(rs),
                    customdata=[
                        [
                            r.number,
                            r.costs.latency_ms if r.costs else math.nan,
                            r.costs.peak_memory_mb if r.costs else math.nan,
                            r.costs.size_mb if r.costs else math.nan,
                            short_genotype(r.genotype),
                        ]
                        for r in rs
                    ],
                    hovertemplate=(
                        "trial %{customdata[0]} (not trained)<br>latency %{customdata[1]:.3f} ms"
                        "<br>memory %{customdata[2]:.1f} MB<br>size %{customdata[3]:.2f} MB"
                        "<br>%{customdata[4]}<extra>%{fullData.name}</extra>"
                    ),
                    mode="markers",
                    name=f"rejected before training: {broken}",
                    marker={
                        "size": 10,
                        "color": LIMIT,
                        "symbol": "x-thin-open",
                        "line": {"width": 2, "color": LIMIT},
                    },
                ),
                row=2,
                col=1,
            )
        fig.update_yaxes(row=2, col=1, tickfont={"size": 11, "color": LIMIT})
    limit = run.constraints.max_latency_ms
    if limit is not None:
        line = {"color": LIMIT, "dash": "dash", "width": 1.5}
        note: dict[str, Any] = {"text": f"limit {limit:g} ms", "font": {"color": LIMIT}}
        if rejected:
            fig.add_vline(x=limit, line=line, row=2, col=1)
            fig.add_vline(x=limit, line=line, annotation=note, annotation_position="top right",
                          row=1, col=1)  # fmt: skip
        else:
            fig.add_vline(x=limit, line=line, annotation=note, annotation_position="top right")
    baseline = run.baselines.get("validation")
    if baseline is not None:
        fig.add_hline(
            y=100 * baseline.score, line={"color": MUTED, "dash": "dash", "width": 1.5},
            annotation={"text": f'always "{baseline.class_name}": {100 * baseline.score:.1f}%',
                        "font": {"color": "#666666"}},
            annotation_position="bottom left", **grid,
        )  # fmt: skip
    # Latencies spread over more than a decade (rejected giants beside small candidates) read
    # better on a log axis.
    latencies = [r.costs.latency_ms for g in groups.values() for r in g if r.costs]
    if limit is not None:
        latencies.append(limit)
    positive = [x for x in latencies if x > 0]
    log_x = bool(positive) and max(positive) / min(positive) > 8
    title = f"Validation {label} against latency"
    if front:
        title += f" · {len(front)} on the Pareto front"
    fig.update_layout(
        title={"text": title},
        font=_FONT,
        template="plotly_white",
        height=520 if rejected else 460,
        margin={"l": 70, "r": 20, "t": 60, "b": 60},
        legend={"orientation": "h", "yanchor": "top", "y": -0.14, "x": 0},
        hovermode="closest",
    )
    fig.update_yaxes(title_text=f"validation {label} (%)", **grid)
    fig.update_xaxes(title_text=latency_axis, **({"row": 2, "col": 1} if rejected else {}))
    if log_x:  # ticks at 1, 2, 5 × 10^k, labelled plainly
        lo, hi = min(positive), max(positive)
        ticks = [
            m * 10.0**e for e in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
            for m in (1, 2, 5) if lo / 1.5 <= m * 10.0**e <= hi * 1.5
        ]  # fmt: skip
        fig.update_xaxes(type="log", tickvals=ticks, ticktext=[f"{t:g}" for t in ticks])
    if not groups["front"] and not groups["meets"] and not groups["breaks"]:
        fig.add_annotation(
            text="no candidate trained yet", showarrow=False, xref="paper", yref="paper",
            x=0.5, y=0.6,
        )  # fmt: skip
    return fig


# -- class by class ------------------------------------------------------------------------


def class_report_shown(run: RunData) -> tuple[str, dict[str, Any]] | None:
    """(what it is, its class report) of the model the report shows class by class: the one
    edgenas finalize exported, on the holdout; else the search's best, on the holdout, else
    on validation; None for a run that recorded neither."""
    final = run.final or {}
    if isinstance(final.get("holdout_report"), dict):
        what = f"the model exported by edgenas finalize (trial {final.get('exported')})"
        return f"{what}, on the holdout", final["holdout_report"]
    best = run.best
    if best is not None and best.holdout_report:
        return f"the search's best (trial {best.trial}), on the holdout", best.holdout_report
    if best is not None and best.validation_report:
        return f"the search's best (trial {best.trial}), on validation", best.validation_report
    return None


def confusion_figure(run: RunData) -> go.Figure:
    """The confusion matrix of the model :func:`class_report_shown` picks: rows the true
    class, columns the predicted one; each cell its count and its share of the row (for the
    diagonal, the class's recall), coloured by that share."""
    fig = go.Figure()
    layout: dict[str, Any] = {"font": _FONT, "template": "plotly_white"}
    shown = class_report_shown(run)
    matrix = (shown[1].get("confusion_matrix") or []) if shown else []
    if shown is None or not matrix:
        fig.update_layout(
            title={"text": "No per-class figures recorded: the search has not chosen a best, "
                   "or it ran before edgenas recorded them"},
            height=90, margin={"l": 70, "r": 20, "t": 50, "b": 10}, **layout,
        )  # fmt: skip
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
        return fig
    what, report = shown
    classes = [str(c) for c in report.get("classes") or []]
    counts = [[int(n) for n in row] for row in matrix]
    shares = [[100 * n / sum(row) if sum(row) else 0.0 for n in row] for row in counts]
    text = [
        [f"{n}<br>{share:.1f}%" for n, share in zip(row, share_row, strict=True)]
        for row, share_row in zip(counts, shares, strict=True)
    ]
    fig.add_trace(
        go.Heatmap(
            z=shares, x=classes, y=classes, text=text, texttemplate="%{text}",
            colorscale="Blues", zmin=0, zmax=100, xgap=2, ygap=2,
            colorbar={"title": {"text": "share of the row (%)"}, "ticksuffix": "%"},
            hovertemplate="true %{y}, predicted %{x}: %{text}<extra></extra>",
        )
    )  # fmt: skip
    figures = " · ".join(
        f"{name} {100 * report[key]:.1f}%"
        for name, key in (("accuracy", "accuracy"), ("balanced accuracy", "balanced_accuracy"),
                          ("macro F1", "macro_f1"))
        if report.get(key) is not None
    )  # fmt: skip
    fig.update_layout(
        title={"text": f"Confusion matrix: {what}<br><sup>{figures} · cells: images, and "
               "their share of the true class (on the diagonal: its recall)</sup>"},
        height=min(720, 220 + 60 * len(classes)),
        margin={"l": 100, "r": 20, "t": 90, "b": 70},
        **layout,
    )  # fmt: skip
    fig.update_xaxes(title_text="predicted class", side="bottom", type="category")
    fig.update_yaxes(title_text="true class", autorange="reversed", type="category")
    return fig


# -- the front over time ---------------------------------------------------------------------


def front_history(run: RunData) -> tuple[str, list[tuple[int, float]]]:
    """The front's measure after each training: (name, [(trial, value)]).

    The trials carry it (the runner records it after every training); ``results.json``'s
    ``hypervolume.history`` is the same. A run searched before edgenas recorded it has none.
    """
    name = "hypervolume" if run.objective == "pareto" else (
        "best score" if run.objective == "weighted" else f"best {run.metric.label}"
    )  # fmt: skip
    stored = [(r.number, r.hypervolume) for r in run.records if r.hypervolume is not None]
    if stored:
        return name, [(n, float(v)) for n, v in stored]
    history = ((run.results or {}).get("hypervolume") or {}).get("history") or []
    return name, [(int(h["trial"]), float(h["value"])) for h in history]


def front_over_time_figure(run: RunData) -> go.Figure:
    """The front's hypervolume (Pareto runs) or the best score after each training, against
    the trial number and against the minutes since the search started."""
    name, history = front_history(run)
    fig = make_subplots(
        rows=1, cols=2, horizontal_spacing=0.1,
        subplot_titles=("by trial", "by time since the search started"),
    )  # fmt: skip
    pct = name != "hypervolume"
    values = [100 * v if pct else v for _, v in history]
    label = f"{name} (%)" if pct else f"{name} (share of the box, 0–1)"
    hover = "trial %{customdata}<br>" + name + " %{y:.4g}<extra></extra>"
    numbers = [n for n, _ in history]
    fig.add_trace(
        go.Scatter(
            x=numbers, y=values, customdata=numbers, hovertemplate=hover, name=name,
            mode="lines+markers", line={"shape": "hv", "color": FRONT}, marker={"size": 6},
        ),
        row=1, col=1,
    )  # fmt: skip
    if run.started:
        start = min(run.started.values())
        timed = [(n, v) for (n, _), v in zip(history, values, strict=True) if n in run.completed]
        minutes = [(run.completed[n] - start).total_seconds() / 60 for n, _ in timed]
        fig.add_trace(
            go.Scatter(
                x=minutes, y=[v for _, v in timed], customdata=[n for n, _ in timed],
                hovertemplate=hover.replace("<br>", " · %{x:.1f} min<br>", 1),
                name=f"{name} over time", mode="lines+markers", showlegend=False,
                line={"shape": "hv", "color": FRONT}, marker={"size": 6},
            ),
            row=1, col=2,
        )  # fmt: skip
    fig.update_xaxes(title_text="trial number", row=1, col=1)
    fig.update_xaxes(title_text="elapsed (minutes)", row=1, col=2)
    fig.update_yaxes(title_text=label, row=1, col=1)
    fig.update_layout(
        title={"text": f"The front over the search: {name} after each training"},
        font=_FONT,
        template="plotly_white",
        height=360,
        showlegend=False,
        margin={"l": 70, "r": 20, "t": 80, "b": 50},
    )
    if not history:
        fig.add_annotation(
            text="no front recorded yet: no training has finished", showarrow=False, xref="paper", yref="paper",
            x=0.5, y=0.5,
        )  # fmt: skip
    return fig


# -- the blocks of the front ------------------------------------------------------------------


def _kernel(k: tuple[int, int]) -> str:
    return str(k[0]) if k[0] == k[1] else f"{k[0]}x{k[1]}"


def block_shares(records: Sequence[TrialRecord]) -> tuple[dict[str, float], dict[str, float]]:
    """Shares of the blocks of these candidates by type and by kernel (genotypes parsed with
    ``Genotype.parse``; unreadable ones are left out)."""
    types: Counter[str] = Counter()
    kernels: Counter[str] = Counter()
    for r in records:
        if not r.genotype:
            continue
        try:
            g = Genotype.parse(r.genotype)
        except EdgenasError:
            continue
        for b in g.blocks:
            types[b.type] += 1
            kernels[_kernel(b.kernel)] += 1
    n = sum(types.values()) or 1
    type_names = [*BLOCK_TYPES, *sorted(set(types) - set(BLOCK_TYPES))]
    kernel_names = [*KERNELS, *sorted(set(kernels) - set(KERNELS))]
    return (
        {t: types[t] / n for t in type_names},
        {k: kernels[k] / n for k in kernel_names},
    )


def front_blocks_figure(run: RunData) -> go.Figure:
    """The shares of block types and kernels in the front's architectures, against all
    trained candidates."""
    front = run.front
    trained = [r for r in run.trained()]
    fig = make_subplots(
        rows=1, cols=2, horizontal_spacing=0.1, subplot_titles=("block type", "kernel")
    )
    for label, rs, colour in (
        (f"Pareto front ({len(front)})", front, FRONT),
        (f"all trained ({len(trained)})", trained, MUTED),
    ):
        types, kernels = block_shares(rs)
        for col, shares in ((1, types), (2, kernels)):
            names = [k.replace("x", "×") for k in shares]
            fig.add_trace(
                go.Bar(
                    x=names, y=[100 * v for v in shares.values()], name=label,
                    marker_color=colour, legendgroup=label, showlegend=col == 1,
                    hovertemplate="%{x}: %{y:.1f}% of the blocks<extra>" + label + "</extra>",
                ),
                row=1, col=col,
            )  # fmt: skip
    fig.update_yaxes(title_text="share of the blocks (%)", row=1, col=1)
    fig.update_xaxes(title_text="block type", row=1, col=1)
    fig.update_xaxes(title_text="kernel (height × width)", row=1, col=2)
    fig.update_layout(
        title={"text": "What the front is made of: blocks and kernels, against all trained"},
        font=_FONT,
        template="plotly_white",
        barmode="group",
        height=390,
        margin={"l": 70, "r": 20, "t": 80, "b": 70},
        legend={"orientation": "h", "yanchor": "top", "y": -0.2, "x": 0},
    )
    return fig


# -- predicted against measured latency -------------------------------------------------------


def latency_pairs(run: RunData) -> list[tuple[int, float, float]]:
    """(trial, predicted ms, measured ms) for the trials that have both: the measured front
    (the study's ``front_latency_measured``), ``results.json``'s trials, and the best."""
    pairs: dict[int, tuple[float, float]] = {}
    if run.predicted:
        for number, measured in run.measured.items():
            r = run.record(number)
            if r is not None and r.costs is not None:
                pairs[number] = (r.costs.latency_ms, measured)
        for t in (run.results or {}).get("trials", []):
            p, m = t.get("latency_ms_predicted"), t.get("latency_ms_measured")
            if p is not None and m is not None:
                pairs[int(t["number"])] = (float(p), float(m))
    best = run.best
    if best and best.latency_ms_predicted is not None and best.latency_ms_measured:
        pairs[best.trial] = (
            best.latency_ms_predicted,
            best.latency_ms_measured,
        )
    return sorted((n, p, m) for n, (p, m) in pairs.items())


def latency_prediction_figure(run: RunData) -> go.Figure:
    """Latency predicted from the device profile against latency measured at the end, with
    the line y = x; a run that measured every candidate says so in the title."""
    pairs = latency_pairs(run)
    fig = go.Figure()
    layout: dict[str, Any] = {
        "font": _FONT,
        "template": "plotly_white",
        "height": 420,
        "margin": {"l": 70, "r": 20, "t": 60, "b": 60},
        "showlegend": bool(pairs),
        "legend": {"orientation": "h", "yanchor": "top", "y": -0.16, "x": 0},
    }
    if not pairs:
        text = (
            "Latency was measured for every candidate on this machine: nothing was predicted"
            if not run.predicted
            else "Latency was predicted; no candidate has been measured again yet"
        )
        layout.update(height=90, margin={"l": 70, "r": 20, "t": 50, "b": 10})
        fig.update_layout(title={"text": text}, **layout)
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
        return fig
    predicted = [p for _, p, _ in pairs]
    measured = [m for _, _, m in pairs]
    top = 1.08 * max(*predicted, *measured)
    fig.add_trace(
        go.Scatter(
            x=[0, top], y=[0, top], mode="lines", name="y = x (a perfect prediction)",
            line={"color": MUTED, "dash": "dot"}, hoverinfo="skip",
        )
    )  # fmt: skip
    best = run.best_trial
    fig.add_trace(
        go.Scatter(
            x=predicted, y=measured, mode="markers+text", name="measured again at the end",
            text=[f"{n}" + (" (best)" if n == best else "") for n, _, _ in pairs],
            textposition="top center",
            customdata=[[n, 100 * (m / p - 1) if p else math.nan] for n, p, m in pairs],
            hovertemplate=(
                "trial %{customdata[0]}<br>predicted %{x:.3f} ms<br>measured %{y:.3f} ms<br>"
                "%{customdata[1]:+.1f}%<extra></extra>"
            ),
            marker={"size": 10, "color": MEETS},
        )
    )  # fmt: skip
    limit = run.constraints.max_latency_ms
    if limit is not None and limit < 2 * top:
        fig.add_hline(y=limit, line={"color": LIMIT, "dash": "dash", "width": 1})
    errors = [abs(m / p - 1) for _, p, m in pairs if p]
    mape = 100 * sum(errors) / len(errors) if errors else math.nan
    device = ((run.results or {}).get("run") or {}).get("latency") or {}
    name = device.get("device") or "the device profile"
    fig.update_layout(
        title={
            "text": f"Latency predicted from {name} against measured · {len(pairs)} "
            f"trial(s), mean error {mape:.1f}%"
        },
        **layout,
    )
    fig.update_xaxes(title_text="predicted latency (ms)", range=[0, top])
    fig.update_yaxes(title_text="measured latency (ms)", range=[0, top])
    return fig
