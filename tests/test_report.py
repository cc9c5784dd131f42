"""``edgenas report``: one self-contained HTML page of a run, opened in a real headless Chromium
(the run: the shared ``reported_run``, a finalized Pareto search that rejected candidates)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from _browser import plot_points, render
from _cli import run_cli

from edgenas.arch import Genotype


@pytest.fixture(scope="module")
def report(reported_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "report.html"
    proc = run_cli("report", str(reported_run), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out}" in proc.stdout and "MB" in proc.stdout
    return out


def _json(path: Path) -> Any:
    return json.loads(path.read_text())


def _expected_markers(results: dict[str, Any]) -> int:
    """What the Pareto plot must draw, from the run's records: every trained candidate, every
    candidate rejected before training (the strip), and the best once more (its star)."""
    trials = results["trials"]
    trained = [t for t in trials if t["trained"] and t["accuracy"] is not None and t["costs"]]
    rejected = [t for t in trials if t["state"] == "infeasible" and t["costs"]]
    return len(trained) + len(rejected) + (results["best"] is not None)


def _section(page: str, anchor: str) -> str:
    match = re.search(rf'<section id="s-{anchor}">(.*?)</section>', page, re.S)
    assert match, f"no section {anchor}"
    return match.group(1)


def test_the_page_is_self_contained(report: Path) -> None:
    page = report.read_text()
    # plotly.js inlined once, every figure drawn by a call to it
    assert page.count("* plotly.js v") == 1
    assert page.count("Plotly.newPlot(") == 5
    # The markup fetches nothing. (The inlined library holds URLs in its code, such as map
    # attributions, that these plots never use: look at the markup without scripts.)
    markup = re.sub(r"<script\b[^>]*>.*?</script>", "<script></script>", page, flags=re.S)
    assert 'src="http' not in markup and 'href="http' not in markup
    assert "<link" not in markup and "@import" not in markup
    assert not re.search(r"url\((?!#)", markup)  # only the diagram's own arrow markers
    assert not re.search(r"<script[^>]+src=", page)


def test_the_sections_hold_the_runs_numbers(reported_run: Path, report: Path) -> None:
    page = report.read_text()
    results = _json(reported_run / "results.json")
    final = _json(reported_run / "final" / "final.json")
    summary = results["summary"]
    assert summary["infeasible"] >= 1  # the fixture's limit rejected candidates

    header = page[: page.index("<section")]
    assert "synthetic" in header and "pareto" in header and "finished" in header
    assert f"{summary['trained']} trained" in header
    assert f"{summary['rejected']} rejected by the constraints" in header
    assert "latency_ms ≤ 1 ms" in header

    front = _section(page, "front")
    table = re.search(r'<table class="front">(.*?)</table>', front, re.S)
    assert table
    rows = re.findall(r'<tr[^>]*><td class="n">(\d+)', table.group(1))
    assert sorted(map(int, rows)) == sorted(results["pareto"])
    for number in results["pareto"]:
        trial = next(t for t in results["trials"] if t["number"] == number)
        assert f"{100 * trial['accuracy']:.1f}%" in table.group(1)

    steps = _section(page, "steps")
    assert [s["name"] for s in final["steps"]] == ["full training", "int8"]
    for step in final["steps"]:
        assert f">{step['name']}<" in steps
        assert f"{100 * step['val_accuracy']:.1f}%" in steps
        low, high = step["holdout_interval"]
        assert f"[{100 * low:.1f}, {100 * high:.1f}]" in steps
        assert f"{step['latency_ms']:.3f}" in steps
    assert steps.count('class="ok">✓') == len(final["steps"])  # latency holds after each

    holdout = _section(page, "holdout")
    assert f"{100 * results['best_holdout_accuracy']:.1f}%" in holdout
    candidate = final["candidates"][0]
    assert f"finalize: trial {candidate['trial']}" in holdout
    assert "Latency was measured for every candidate" in page  # no device profile


def test_the_diagram_draws_one_box_per_block(reported_run: Path, report: Path) -> None:
    section = _section(report.read_text(), "architecture")
    genotype = (reported_run / "final" / "genotype.txt").read_text().strip()
    blocks = Genotype.parse(genotype).blocks
    assert "exported by edgenas finalize" in section
    assert "<svg" in section and "<script" not in section
    assert section.count('class="block"') == len(blocks)
    assert genotype in section


def test_the_diagram_of_twenty_blocks_wraps_and_names_everything() -> None:
    from edgenas.report import architecture_svg

    tokens = ["ir_k3_e4_c24_s2", "ds_k5x3_c24_id", "bneck_k3x5_c24_se_hs"]
    tokens += ["conv_k3_c24_l2", "ds_k5_c24_id_l3", "ir_k7_e6_c24_se_id"] * 5
    tokens += ["res_k3_c48_s2", "ds_k3_c48_id"]
    genotype = Genotype.parse("r96-stem16-" + "-".join(tokens) + "-head256")
    assert len(genotype.blocks) == 20
    svg = architecture_svg(genotype, classes=4, channels=1, per_row=7)
    assert svg.count('class="block"') == len(genotype.blocks)
    width, height = map(float, re.search(r'viewBox="0 0 (\S+) (\S+)"', svg).groups())  # type: ignore[union-attr]
    assert height > 3 * 150 and width < 1200  # wrapped into rows, not one long strip
    assert "ds 5×3" in svg and "bneck 3×5" in svg and "e6" in svg and "SE · h-swish" in svg
    assert svg.count('class="skip"') >= 10 and svg.count('class="idarc"') >= 10
    assert "stage · 24×24" in svg and "4 classes" in svg and "1×96×96" in svg


def test_a_folder_that_is_not_a_run_is_one_line(tmp_path: Path) -> None:
    proc = run_cli("report", str(tmp_path))
    assert proc.returncode == 2
    message = proc.stderr.strip()
    assert message.startswith("error:") and "\n" not in message, message
    assert "no search" in message and "Traceback" not in proc.stderr
    assert not (tmp_path / "study.db").exists()


def test_figures_for_the_dashboard(reported_run: Path) -> None:
    from edgenas.report import FIGURES, load_run, run_figures
    from edgenas.report._figures import pareto_marker_count

    run = load_run(reported_run)
    figures = run_figures(reported_run)
    assert list(figures) == list(FIGURES)
    assert FIGURES == (
        "pareto", "front-over-time", "front-blocks", "latency-prediction", "confusion",
    )  # fmt: skip
    drawn = sum(len(t.x) for t in figures["pareto"].data if "markers" in (t.mode or ""))
    assert drawn == pareto_marker_count(run) == _expected_markers(run.results or {})
    names = [t.name for t in figures["pareto"].data]
    assert "Pareto front" in names and any(n.startswith("rejected before training") for n in names)
    # with candidates rejected before training, the axes still name the run's metric
    layout = figures["pareto"].layout
    assert layout.yaxis.title.text == "validation accuracy (%)"
    assert layout.title.text.startswith("Validation accuracy against latency")
    history = figures["front-over-time"].data[0]
    assert list(history.x) == [h["trial"] for h in run.results["hypervolume"]["history"]]  # type: ignore[index]


def test_chromium_draws_the_pareto_plot_with_the_runs_points(
    reported_run: Path, report: Path
) -> None:
    """The acceptance test: the page, opened offline in a real browser, draws every point."""
    results = _json(reported_run / "results.json")
    dom = render(report.resolve().as_uri())
    points, texts = plot_points(dom, "pareto")
    assert points == _expected_markers(results) > 0
    assert "latency (ms)" in texts and "validation accuracy (%)" in texts
    assert any(t.startswith("Validation accuracy against latency") for t in texts)
    over_time, _ = plot_points(dom, "front-over-time")
    assert over_time == 2 * results["summary"]["trained"]  # by trial and by minute


def test_a_search_still_running_or_not_started_still_gives_a_page(reported_run: Path) -> None:
    from dataclasses import replace

    from edgenas.report import RunData, load_run, render_report
    from edgenas.study import TrialRecord

    run = load_run(reported_run)
    running = TrialRecord(99, None, "running", False, None, None, 0, 0.0)
    page = render_report(replace(run, records=(*run.records, running), results=None))
    assert "still running" in page and "1 running" in page
    assert page.count('<tr class="best">') == 1  # the front table, read from the study

    empty = RunData(reported_run, (), {"constraints": {"max_latency_ms": 1.0}}, None, None, None)
    page = render_report(empty)
    assert "the front is empty" in page and "No best yet" in page
    assert page.count("Plotly.newPlot(") == 5
