"""Reports of a run: its figures (shared with the live dashboard), the chosen architecture as
SVG, and one self-contained HTML page (``edgenas report``)."""

from __future__ import annotations

from edgenas.report._diagram import architecture_svg
from edgenas.report._figures import FIGURES, RunData, load_run, run_figures
from edgenas.report._html import REPORT_FILE, render_report, write_report

__all__ = [
    "FIGURES",
    "REPORT_FILE",
    "RunData",
    "architecture_svg",
    "load_run",
    "render_report",
    "run_figures",
    "write_report",
]
