"""What a user sees of imbalanced classes: the run's metric, what always answering the majority
class scores, and the best class by class, in ``edgenas show``, ``edgenas report`` and the
model card (the run: the shared ``reported_run``, a finalized search on synthetic data)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _cli import run_cli

from edgenas.train import class_report


def _json(path: Path) -> Any:
    return json.loads(path.read_text())


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


# -- the arithmetic a reader relies on, without a run -------------------------------------------


def elpv_like() -> dict[str, Any]:
    """A validation split as ELPV's: 69% functional; a model that finds half the defects."""
    return class_report(np.array([[270, 5], [60, 60]]), ["functional", "defective"])


def test_the_baseline_reads_as_a_user_expects_without_loading_data(tmp_path: Path) -> None:
    from edgenas.finalize import majority_baselines
    from edgenas.train import Metric

    baselines = majority_baselines(
        tmp_path, {"metric": "balanced-accuracy"}, reports={"validation": elpv_like()},
        load_data=False,
    )  # fmt: skip
    assert list(baselines) == ["validation"]  # no holdout report, no data: left out
    line = baselines["validation"].describe(Metric.parse("balanced-accuracy"))
    assert line == 'always "functional": accuracy 69.6%, balanced accuracy 50.0%'
    assert baselines["validation"].score == 0.5  # in the run's metric
    # A metric that is neither accuracy is named too.
    f1 = majority_baselines(tmp_path, {"metric": "recall:defective"},
                            reports={"validation": elpv_like()}, load_data=False)  # fmt: skip
    assert (
        f1["validation"]
        .describe(Metric.parse("recall:defective"))
        .endswith("recall of defective 0.0%")
    )


def test_the_pareto_plot_names_the_metric_and_draws_the_majority_line(tmp_path: Path) -> None:
    from edgenas.finalize import majority_baselines
    from edgenas.report import RunData
    from edgenas.report._figures import pareto_figure

    spec = {"metric": "balanced-accuracy", "constraints": {}}
    baselines = majority_baselines(tmp_path, spec, reports={"validation": elpv_like()},
                                   load_data=False)  # fmt: skip
    fig = pareto_figure(RunData(tmp_path, (), spec, None, None, None, baselines=baselines))
    assert fig.layout.yaxis.title.text == "validation balanced accuracy (%)"
    assert fig.layout.title.text.startswith("Validation balanced accuracy against latency")
    lines = [s for s in fig.layout.shapes if s.line.dash == "dash" and s.y0 == s.y1]
    assert [s.y0 for s in lines] == [50.0]
    notes = [a.text for a in fig.layout.annotations]
    assert 'always "functional": 50.0%' in notes


# -- show ------------------------------------------------------------------------------------


def test_show_states_the_metric_the_baseline_and_the_best_class_by_class(
    reported_run: Path,
) -> None:
    results = _json(reported_run / "results.json")
    proc = run_cli("show", str(reported_run))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "metric: accuracy" in out
    for split in ("validation", "holdout"):
        b = results["majority_baseline"][split]
        assert (
            f'majority-class baseline, {split}: always "{b["class"]}": accuracy '
            f"{_pct(b['accuracy'])}, balanced accuracy {_pct(b['balanced_accuracy'])}"
        ) in out
    assert "best, class by class" in out
    report = results["best_details"]["holdout_report"]
    table = out[out.index("best, class by class") :]
    for name, figures in report["per_class"].items():
        row = next(line for line in table.splitlines() if f" {name} " in line)
        assert _pct(figures["recall"]) in row and f" {figures['support']} " in row
    assert "validation: true ↓ predicted →" in out and "holdout: true ↓ predicted →" in out
    first = report["classes"][0]
    counts = report["confusion_matrix"][0]
    matrix = out[out.index("holdout: true ↓ predicted →") :]
    # the holdout matrix sits to the right of the validation one, on the same lines
    rows = [line for line in matrix.splitlines() if line.startswith(f"│ {first} ")]
    assert rows and re.findall(r"\d+", rows[0].rsplit(f"│ {first} ", 1)[-1]) == [
        str(n) for n in counts
    ]


# -- report ----------------------------------------------------------------------------------


def _section(page: str, anchor: str) -> str:
    match = re.search(rf'<section id="s-{anchor}">(.*?)</section>', page, re.S)
    assert match, f"no section {anchor}"
    return match.group(1)


def test_the_report_draws_the_confusion_matrix_and_the_majority_line(
    reported_run: Path,
) -> None:
    from edgenas.report import load_run, render_report, run_figures

    final = _json(reported_run / "final" / "final.json")
    results = _json(reported_run / "results.json")
    run = load_run(reported_run)
    figures = run_figures(run)
    heatmap = figures["confusion"].data[0]
    report = final["holdout_report"]  # the exported model, on the holdout
    counts = [[int(cell.split("<br>")[0]) for cell in row] for row in heatmap.text]
    assert counts == report["confusion_matrix"]
    first = report["confusion_matrix"][0]
    assert heatmap.text[0][0] == f"{first[0]}<br>{100 * first[0] / sum(first):.1f}%"
    assert "exported by edgenas finalize" in figures["confusion"].layout.title.text
    baseline = results["majority_baseline"]["validation"]
    notes = [a.text for a in figures["pareto"].layout.annotations]
    assert f'always "{baseline["class"]}": {_pct(baseline["score"])}' in notes

    page = render_report(run)
    classes = _section(page, "classes")
    assert 'id="confusion"' in classes
    table = re.search(r'<table class="classes">(.*?)</table>', classes, re.S)
    assert table
    for name, figures_ in report["per_class"].items():
        assert f"<td>{name}</td>" in table.group(1)
        assert f">{figures_['support']}<" in table.group(1)
    assert f"always &quot;{baseline['class']}&quot;" in page[: page.index("<section")]


# -- the model card --------------------------------------------------------------------------


def test_the_model_card_has_the_classes_and_the_baseline(reported_run: Path) -> None:
    final = _json(reported_run / "final" / "final.json")
    card = (reported_run / "final" / "MODEL_CARD.md").read_text()
    assert final["metric"] == "accuracy"
    report = final["holdout_report"]
    kept = [s for s in final["steps"] if s["kept"]][-1]
    assert report == kept["holdout_report"]  # the model to deploy
    assert "Metric: **accuracy**" in card
    holdout = final["majority_baseline"]["holdout"]
    assert (
        f'on the holdout, always "{holdout["class"]}": accuracy {_pct(holdout["accuracy"])}' in card
    )
    assert "| class | precision | recall | F1 | support |" in card
    for name, c in report["per_class"].items():
        assert (
            f"| {name} | {_pct(c['precision'])} | {_pct(c['recall'])} | {_pct(c['f1'])} | "
            f"{c['support']} |"
        ) in card
    for name, row in zip(report["classes"], report["confusion_matrix"], strict=True):
        assert f"| {name} | " + " | ".join(map(str, row)) + " |" in card


# -- a run from before the metric was recorded ------------------------------------------------


@pytest.fixture
def old_run(reported_run: Path, tmp_path: Path) -> Path:
    """The shared run as edgenas wrote it before metrics for imbalanced classes."""
    import optuna

    from edgenas.study import STUDY_BEST

    run = tmp_path / "old"
    shutil.copytree(reported_run, run)
    new_keys = ("metric", "metric_label", "class_weights", "majority_baseline",
                "validation_report", "holdout_report")  # fmt: skip

    def strip(d: Any) -> Any:
        if isinstance(d, dict):
            return {k: strip(v) for k, v in d.items() if k not in new_keys}
        if isinstance(d, list):
            return [strip(v) for v in d]
        return d

    for path in (run / "spec.json", run / "results.json", run / "final" / "final.json"):
        path.write_text(json.dumps(strip(_json(path))))
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{run / 'study.db'}")
    study.set_user_attr(STUDY_BEST, strip(study.user_attrs[STUDY_BEST]))
    return run


def test_an_old_run_still_shows_and_reports(old_run: Path) -> None:
    from edgenas.report import load_run, render_report

    proc = run_cli("show", str(old_run))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "metric: accuracy" in proc.stdout
    # counted from the labels of the run's data, split again: synthetic data is balanced
    assert 'majority-class baseline, holdout: always "blob": accuracy 25.0%' in proc.stdout
    assert "class by class" not in proc.stdout  # nothing recorded, nothing made up

    run = load_run(old_run)
    assert run.metric.name == "accuracy"
    page = render_report(run)
    assert "No per-class figures" in _section(page, "classes")
    assert "always &quot;blob&quot;: accuracy 25.0%" in page
    assert page.count("Plotly.newPlot(") == 5


@pytest.mark.slow
def test_finalize_chooses_and_reports_by_the_runs_metric(
    reported_run: Path, tmp_path: Path
) -> None:
    run = tmp_path / "recall"
    shutil.copytree(reported_run, run)
    spec = _json(run / "spec.json")
    spec["metric"] = "recall:ring"
    (run / "spec.json").write_text(json.dumps(spec))
    proc = run_cli("finalize", str(run), "--epochs", "1", "--quantize", "none")
    assert proc.returncode == 0, proc.stderr
    final = _json(run / "final" / "final.json")
    assert final["metric"] == "recall:ring"
    for scored in (final["candidates"][0], *final["steps"]):
        assert scored["val_score"] == scored["val_report"]["per_class"]["ring"]["recall"]
        assert scored["holdout_score"] == scored["holdout_report"]["per_class"]["ring"]["recall"]
    card = (run / "final" / "MODEL_CARD.md").read_text()
    assert "Metric: **recall of ring**" in card and "holdout recall of ring" in card
    assert "recall of ring 0.0%" in card  # always "blob" finds no ring
