"""``edgenas report``: one self-contained HTML file of a run, to read offline.

plotly.js is inlined once (before the first figure), every other figure is a ``<div>`` and a
call to ``Plotly.newPlot``; the architecture is inline SVG and the styles inline CSS, so the
page fetches nothing: no CDN, no web fonts. Every text taken from the run's files is escaped.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any

from edgenas._io import write_text
from edgenas.arch import Genotype
from edgenas.errors import EdgenasError
from edgenas.finalize import per_class_rows
from edgenas.report._diagram import architecture_svg
from edgenas.report._figures import (
    RunData,
    class_report_shown,
    load_run,
    run_figures,
    short_genotype,
)
from edgenas.study import RunDir

__all__ = ["REPORT_FILE", "render_report", "write_report"]

REPORT_FILE = "report.html"

_CSS = """
:root{--ink:#1f2328;--muted:#59636e;--line:#d1d9e0;--soft:#f6f8fa;--ok:#1a7f37;--bad:#cf222e}
*{box-sizing:border-box}
body{margin:0;background:#fff;color:var(--ink);
 font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1120px;margin:0 auto;padding:24px 28px 48px}
h1{font-size:26px;margin:0 0 4px}
h2{font-size:19px;margin:36px 0 8px;padding-top:12px;border-top:1px solid var(--line)}
p{margin:6px 0}
.sub{color:var(--muted);margin:0 0 16px}
.facts{display:grid;grid-template-columns:repeat(auto-fill,minmax(250px,1fr));gap:6px 24px;
 margin:12px 0;padding:12px 16px;background:var(--soft);border:1px solid var(--line);
 border-radius:8px}
.facts div{min-width:0}
.facts dt{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.facts dd{margin:0 0 4px;overflow-wrap:anywhere}
table{border-collapse:collapse;margin:10px 0;font-size:14px;width:100%}
th,td{padding:5px 9px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{background:var(--soft);font-weight:600;white-space:nowrap}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.best td{background:#fff8e5}
code,.g{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
.g{color:var(--muted);overflow-wrap:anywhere}
pre.g{white-space:pre-wrap;background:var(--soft);padding:8px 10px;border-radius:6px;
 border:1px solid var(--line);color:var(--ink)}
.ok{color:var(--ok);font-weight:600}.bad{color:var(--bad);font-weight:600}
.warn{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:8px 12px;
 margin:10px 0}
.note{color:var(--muted);font-size:13.5px}
.plot{margin:6px 0 4px}
.state-running{color:#9a6700;font-weight:600}.state-finished{color:var(--ok);font-weight:600}
figure{margin:10px 0}
footer{margin-top:40px;color:var(--muted);font-size:13px}
"""

_PLOT_CONFIG = {"displaylogo": False, "responsive": True, "displayModeBar": "hover"}


# -- formatting --------------------------------------------------------------------------------


def _pct(x: float | None, digits: int = 1) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{100 * x:.{digits}f}%"


def _num(x: float | None, fmt: str = ".3f", unit: str = "") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return f"{x:{fmt}}{unit}"


def _count(x: float | None) -> str:
    if x is None:
        return "—"
    if x >= 1e6:
        return f"{x / 1e6:.2f} M"
    if x >= 1e3:
        return f"{x / 1e3:.1f} k"
    return f"{x:g}"


def _interval(iv: Sequence[float] | None) -> str:
    if not iv or len(iv) != 2:
        return ""
    return f" [{100 * iv[0]:.1f}, {100 * iv[1]:.1f}]"


def _table(
    head: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[bool],
    row_class: Sequence[str] | None = None, cls: str = "",
) -> str:  # fmt: skip
    """A table from cells already escaped (numbers right-aligned)."""
    out = [f'<table class="{cls}">' if cls else "<table>", "<thead><tr>"]
    out += [
        f'<th class="n">{h}</th>' if n else f"<th>{h}</th>"
        for h, n in zip(head, numeric, strict=True)
    ]
    out.append("</tr></thead><tbody>")
    for i, row in enumerate(rows):
        rc = row_class[i] if row_class else ""
        out.append(f'<tr class="{rc}">' if rc else "<tr>")
        out += [
            f'<td class="n">{c}</td>' if n else f"<td>{c}</td>"
            for c, n in zip(row, numeric, strict=True)
        ]
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _genotype_cell(genotype: str | None, width: int = 48) -> str:
    full = escape(genotype or "")
    return f'<span class="g" title="{full}">{escape(short_genotype(genotype, width))}</span>'


# -- sections ----------------------------------------------------------------------------------


def _images(run: RunData) -> str:
    card = RunDir(run.run_dir).final / "MODEL_CARD.md"
    total = None
    if card.exists():
        match = re.search(r"(\d[\d,]*) images in (\d+) classes", card.read_text(errors="replace"))
        if match:
            total = match.group(1)
    best = run.best
    parts = []
    if total:
        parts.append(f"{total} in all")
    if best and best.validation_images:
        parts.append(f"{best.validation_images} validation")
    if best and best.holdout_images:
        parts.append(f"{best.holdout_images} holdout")
    if not parts:
        fractions = (run.spec.get("val_fraction"), run.spec.get("holdout_fraction"))
        if all(isinstance(f, (int, float)) for f in fractions):
            parts.append(f"split {fractions[0]:g} validation, {fractions[1]:g} holdout")
    return ", ".join(parts) or "—"


def _when(run: RunData) -> str:
    if not run.started:
        return "—"
    start = min(run.started.values())
    end = max(run.completed.values(), default=start)
    minutes = (end - start).total_seconds() / 60
    same_day = start.date() == end.date()
    stop = end.strftime("%H:%M" if same_day else "%Y-%m-%d %H:%M")
    return f"{start:%Y-%m-%d %H:%M} → {stop} ({minutes:.0f} min)"


def _header(run: RunData) -> str:
    spec, records = run.spec, run.records
    counts: dict[str, int] = {}
    for r in records:
        counts[r.state] = counts.get(r.state, 0) + 1
    redrawn = sum(r.redrawn for r in records)
    classes = spec.get("classes") or []
    trained = sum(r.trained for r in records)
    trials = (
        f"{trained} trained · {counts.get('infeasible', 0) + redrawn} rejected by the "
        f"constraints · {counts.get('pruned', 0)} stopped early · {counts.get('failed', 0)} failed"
    )
    if counts.get("running"):
        trials += f" · {counts['running']} running"
    if run.running:
        state = '<span class="state-running">still running</span>'
    elif run.results is None:
        state = '<span class="state-running">stopped before writing results.json</span>'
    else:
        state = '<span class="state-finished">finished</span>'
    latency = spec.get("latency") or {}
    source = (
        f"predicted from {spec['latency_profile']}"
        if spec.get("latency_profile")
        else f"measured with {latency.get('runtime', 'ONNX Runtime')}, "
        f"{latency.get('threads', '?')} thread(s), batch {latency.get('batch', 1)}"
    )
    facts = [
        ("data", escape(str(spec.get("data", "—")))),
        ("classes", f"{len(classes)}: " + escape(", ".join(map(str, classes))) if classes else "—"),
        ("images", escape(_images(run))),
        ("objective", escape(run.objective)),
        ("metric", escape(run.metric.label)),
        ("majority-class baseline", _baselines(run)),
        ("strategy", escape(str(spec.get("strategy", "—")))),
        ("constraints", escape(run.constraints.describe())),
        ("epochs per candidate", escape(str(spec.get("epochs", "—")))),
        ("latency", escape(source)),
        ("trials", escape(trials)),
        ("when", escape(_when(run))),
        ("state", state),
    ]
    body = "".join(f"<div><dt>{k}</dt><dd>{v}</dd></div>" for k, v in facts)
    return (
        f"<h1>Search report: {escape(run.run_dir.resolve().name)}</h1>"
        f'<p class="sub">{escape(str(run.run_dir))} · {len(records)} trials</p>'
        f'<dl class="facts">{body}</dl>'
    )


def _front_table(run: RunData) -> str:
    front = run.front
    if not front:
        return '<p class="note">No trained candidate meets every limit yet: the front is empty.</p>'
    best = run.best_trial
    head = ["trial", f"val {escape(run.metric.short)}", "latency ms"]
    if run.predicted:
        head.append("measured ms")
    head += ["memory MB", "size MB", "params", "MACs", "energy mJ (est.)", "genotype"]
    numeric = [True] * (len(head) - 1) + [False]
    rows, classes = [], []
    for r in front:
        c = r.costs
        assert c is not None
        row = [
            f"{r.number}" + (" ★" if r.number == best else ""),
            _pct(r.accuracy),
            _num(c.latency_ms),
        ]
        if run.predicted:
            row.append(_num(run.measured.get(r.number)))
        row += [
            _num(c.peak_memory_mb, ".1f"),
            _num(c.size_mb, ".2f"),
            _count(c.params),
            _count(c.macs),
            _num(c.energy_mj, ".2f"),
            _genotype_cell(r.genotype),
        ]
        rows.append(row)
        classes.append("best" if r.number == best else "")
    note = '<p class="note">★ the run\'s best. Hover a genotype for the whole string.</p>'
    return _table(head, rows, numeric, classes, cls="front") + note


def _baselines(run: RunData) -> str:
    """What always answering the majority class scores, per split, escaped."""
    if not run.baselines:
        return "—"
    return "<br>".join(
        f"{escape(split)}: {escape(b.describe(run.metric))}" for split, b in run.baselines.items()
    )


def _classes(run: RunData) -> str:
    """The metric, the majority-class baseline and a model class by class."""
    metric = run.metric
    out = [
        f"<p>The run ranked by <b>{escape(metric.label)}</b> on validation"
        + (" (top-1 accuracy hides a weak model on imbalanced classes)." if metric.kind !=
           "accuracy" else ".")
        + "</p>"
    ]  # fmt: skip
    if run.baselines:
        out.append(
            "<p>Always answering the most frequent class scores: "
            + "; ".join(
                f"{escape(split)} {escape(b.describe(metric))}"
                for split, b in run.baselines.items()
            )
            + ". A useful model beats it clearly.</p>"
        )
    shown = class_report_shown(run)
    if shown is None:
        out.append(
            '<p class="note">No per-class figures: the search has not chosen a best yet, or '
            "it ran before edgenas recorded them (<code>edgenas finalize</code> records them "
            "for the model it exports).</p>"
        )
        return "".join(out)
    what, report = shown
    rows = [
        [escape(name), _pct(precision), _pct(recall), _pct(f1), str(support)]
        for name, precision, recall, f1, support in per_class_rows(report)
    ]
    out.append(f"<p>Class by class: {escape(what)}.</p>")
    out.append(
        _table(["class", "precision", "recall", "F1", "images"], rows,
               [False, True, True, True, True], cls="classes")
    )  # fmt: skip
    return "".join(out)


def _chosen(run: RunData) -> tuple[str, int | None, str] | None:
    """(genotype, trial, what it is) of the architecture to draw."""
    final = run.final or {}
    genotype_file = RunDir(run.run_dir).final / str(final.get("genotype_file") or "genotype.txt")
    if run.final is not None and genotype_file.exists():
        trial = final.get("exported")
        text = genotype_file.read_text().strip()
        return text, trial, f"the model exported by edgenas finalize to final/ (trial {trial})"
    best = run.best
    if best and best.genotype:
        return best.genotype, best.trial, f"the run's best (trial {best.trial})"
    return None


def _architecture(run: RunData) -> str:
    chosen = _chosen(run)
    if chosen is None:
        return '<p class="note">No best yet: the search has not chosen a model.</p>'
    text, trial, what = chosen
    try:
        genotype = Genotype.parse(text)
    except EdgenasError as exc:
        return f'<p class="warn">The genotype cannot be read: {escape(str(exc))}</p>'
    classes = run.spec.get("classes") or []
    svg = architecture_svg(genotype, classes=len(classes) or None)
    out = [
        f"<p>Drawn: {escape(what)}; {len(genotype.blocks)} blocks.</p>",
        f"<figure>{svg}</figure>",
        f'<pre class="g">{escape(text)}</pre>',
    ]
    record = run.record(int(trial)) if trial is not None else None
    head = ["costs", "latency ms", "peak memory MB", "size MB", "params", "MACs",
            "energy mJ (est.)"]  # fmt: skip
    rows: list[list[str]] = []
    if record is not None and record.costs is not None:
        c = record.costs
        lat = "predicted for the device" if run.predicted else "measured in the search"
        rows.append(
            [
                f"as searched: latency {lat}, size, params and MACs analytic, memory and energy estimated",
                _num(c.latency_ms),
                _num(c.peak_memory_mb, ".1f"),
                f"{_num(c.size_mb, '.2f')} fp32 · {_num(c.size_int8_mb, '.2f')} int8",
                _count(c.params),
                _count(c.macs),
                _num(c.energy_mj, ".2f"),
            ]
        )
    best = run.best
    if best and best.trial == trial and best.latency_ms_measured is not None:
        rows.append(
            ["measured again at the end of the search", _num(best.latency_ms_measured),
             "", "", "", "", ""]
        )  # fmt: skip
    for step in (run.final or {}).get("steps") or []:
        if step.get("kept"):
            rows.append(
                [
                    f"measured after the finalize step {step.get('name')} (ONNX file)",
                    _num(step.get("latency_ms")),
                    _num(step.get("peak_memory_mb"), ".1f"),
                    _num(step.get("size_mb"), ".2f"),
                    _count(step.get("params")),
                    _count(step.get("macs")),
                    "",
                ]
            )
    if rows:
        cells = [[escape(cell) for cell in row] for row in rows]
        out.append(_table(head, cells, [False] + [True] * 6, cls="costs"))
    return "".join(out)


def _steps(run: RunData) -> str:
    if run.final is None:
        run_arg = escape(str(run.run_dir))
        return (
            "<p>No compression steps yet: <code>edgenas finalize "
            f"{run_arg}</code> retrains the best, compresses it (INT8 by default), checks it "
            "on the holdout and exports it; this report then shows every step.</p>"
        )
    steps = run.final.get("steps") or []
    if not steps:
        return '<p class="note">final/final.json holds no step yet.</p>'
    rows, classes = [], []
    for s in steps:
        checks = []
        for name, c in (s.get("constraints") or {}).items():
            holds = c.get("measured_holds")
            if c.get("predicted_holds") is False:
                holds = False
            mark = '<span class="ok">✓</span>' if holds else '<span class="bad">✗</span>'
            checks.append(f"{mark} {escape(name.removeprefix('max_'))}")
        rows.append(
            [
                escape(str(s.get("name", "?"))),
                "yes" if s.get("kept") else "no",
                _pct(s.get("val_accuracy")),
                _pct(s.get("holdout_accuracy")) + escape(_interval(s.get("holdout_interval"))),
                _num(s.get("latency_ms"), ".3f"),
                _num(s.get("peak_memory_mb"), ".1f"),
                _num(s.get("size_mb"), ".3f"),
                " ".join(checks) or "—",
            ]
        )
        classes.append("" if s.get("kept") else "dropped")
    head = ["step", "kept", "validation", "holdout [95%]", "latency ms", "memory MB", "size MB",
            "constraints"]  # fmt: skip
    numeric = [False, False, True, True, True, True, True, False]
    note = (
        f'<p class="note">Every step\'s ONNX file measured on the machine that ran finalize; '
        f"intervals {escape(str(run.final.get('interval', 'Wilson 95%')))}.</p>"
    )
    return _table(head, rows, numeric, classes, cls="steps") + note


def _interval_svg(val: Sequence[float] | None, hold: Sequence[float] | None,
                  v: float | None, h: float | None, lo: float, hi: float) -> str:  # fmt: skip
    """Two intervals on one scale: validation (blue) over holdout (orange)."""
    w, pad = 240, 6

    def x(p: float) -> float:
        return pad + (w - 2 * pad) * (p - lo) / (hi - lo)

    parts = [f'<svg width="{w}" height="30" viewBox="0 0 {w} 30" role="img">']
    for iv, p, y, colour in ((val, v, 9, "#0072B2"), (hold, h, 21, "#D55E00")):
        if iv and len(iv) == 2:
            parts.append(
                f'<line x1="{x(iv[0]):.1f}" y1="{y}" x2="{x(iv[1]):.1f}" y2="{y}" '
                f'stroke="{colour}" stroke-width="2.5"/>'
            )
        if p is not None:
            parts.append(f'<circle cx="{x(p):.1f}" cy="{y}" r="4" fill="{colour}"/>')
    parts.append("</svg>")
    return "".join(parts)


def _val_holdout(run: RunData) -> str:
    from edgenas.finalize import holdout_gap, wilson_interval

    entries: list[tuple[str, float | None, Any, float | None, Any, str | None]] = []
    best = run.best
    if best and best.accuracy is not None:
        n_val, n_hold = best.validation_images, best.holdout_images
        acc, held = best.accuracy, best.holdout_accuracy
        acc_iv = wilson_interval(acc * n_val, n_val) if n_val else None
        held_iv = wilson_interval(held * n_hold, n_hold) if n_hold and held is not None else None
        entries.append(
            (f"search best (trial {best.trial})", acc, acc_iv, held, held_iv,
             holdout_gap(acc, n_val, held, n_hold))
        )  # fmt: skip
    for c in (run.final or {}).get("candidates") or []:
        entries.append(
            (f"finalize: trial {c.get('trial')}, retrained {c.get('epochs')} epoch(s)",
             c.get("val_accuracy"), c.get("val_interval"), c.get("holdout_accuracy"),
             c.get("holdout_interval"),
             holdout_gap(c.get("val_accuracy"), c.get("val_images"),
                         c.get("holdout_accuracy"), c.get("holdout_images")))
        )  # fmt: skip
    if not entries:
        return '<p class="note">No best yet: nothing has been checked on the holdout.</p>'
    ends = [p for e in entries for iv in (e[2], e[4]) if iv for p in iv]
    ends += [p for e in entries for p in (e[1], e[3]) if p is not None]
    lo = max(0.0, math.floor(20 * min(ends)) / 20 - 0.05)
    hi = min(1.0, math.ceil(20 * max(ends)) / 20 + 0.05)
    rows, warnings = [], []
    for name, val, val_iv, hold, hold_iv, gap in entries:
        rows.append(
            [
                escape(name),
                _pct(val) + escape(_interval(val_iv)),
                _pct(hold) + escape(_interval(hold_iv)),
                _interval_svg(val_iv, hold_iv, val, hold, lo, hi),
            ]
        )
        if gap:
            warnings.append(f'<p class="warn">⚠ {escape(name)}: {escape(str(gap))}</p>')
    table = _table(
        ["model", "validation [95%]", "holdout [95%]",
         f"intervals ({100 * lo:.0f}–{100 * hi:.0f}%): "
         '<span style="color:#0072B2">validation</span>, '
         '<span style="color:#D55E00">holdout</span>'],
        rows, [False, True, True, False],
    )  # fmt: skip
    note = (
        '<p class="note">Wilson 95% intervals. The search chose on validation; the holdout was '
        "never seen by it, so it is the fair estimate. A difference that chance does not explain "
        "(its 95% interval leaves out zero) hints at a leaky or shifted validation split.</p>"
    )
    return table + "".join(warnings) + note


# -- the page ----------------------------------------------------------------------------------


def render_report(run: RunData) -> str:
    """The whole page as a string."""
    figures = run_figures(run)
    first = True

    def plot(key: str) -> str:
        nonlocal first
        html = figures[key].to_html(
            full_html=False,
            include_plotlyjs=first,  # plotly.js once, inlined, before the first figure
            div_id=key,
            config=_PLOT_CONFIG,
            default_width="100%",
            default_height=f"{figures[key].layout.height or 450}px",
        )
        first = False
        return f'<div class="plot">{html}</div>'

    sections: list[tuple[str, str, Callable[[], str]]] = [
        ("front", f"The Pareto front: validation {run.metric.label} against latency",
         lambda: plot("pareto") + _front_table(run)),
        ("classes", "Class by class", lambda: plot("confusion") + _classes(run)),
        ("over-time", "The front over the search", lambda: plot("front-over-time")),
        ("blocks", "What the front is made of", lambda: plot("front-blocks")),
        ("latency", "Predicted against measured latency", lambda: plot("latency-prediction")),
        ("architecture", "The chosen architecture", lambda: _architecture(run)),
        ("steps", "Compression steps (edgenas finalize)", lambda: _steps(run)),
        ("holdout", "Validation against holdout accuracy", lambda: _val_holdout(run)),
    ]  # fmt: skip
    body = [_header(run)]
    for anchor, title, make in sections:
        body.append(f'<section id="s-{anchor}"><h2>{escape(title)}</h2>{make()}</section>')
    stamp = datetime.now().strftime("%Y-%m-%d %H:%M")
    title = f"edgenas report · {run.run_dir.resolve().name}"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head>"
        f"<body><main>{''.join(body)}"
        f"<footer>Written by <code>edgenas report</code> on {stamp}, from the study of "
        f"{escape(str(run.run_dir))}"
        + (" and final/final.json" if run.final is not None else "")
        + ". The page works offline: it loads nothing.</footer></main></body></html>\n"
    )


def write_report(run_dir: Path, out: Path | None = None) -> Path:
    """Write the report of a run directory as one self-contained HTML file; return its path
    (default ``RUN/report.html``).

    Example:
        >>> write_report(Path("runs/elpv"))  # doctest: +SKIP
        PosixPath('runs/elpv/report.html')

    Raises ``EdgenasError`` for a folder that holds no search.
    """
    run = load_run(Path(run_dir))
    path = Path(out) if out is not None else Path(run_dir) / REPORT_FILE
    page = render_report(run)
    if path.parent and not path.parent.exists():
        raise EdgenasError(f"cannot write {path}: the folder {path.parent} does not exist")
    write_text(path, page)
    return path
