"""Reports of a run: its figures, the chosen architecture as SVG, one self-contained HTML page
(``edgenas report``), and the same figures served live on optuna-dashboard (`Dashboard`)."""

from __future__ import annotations

from edgenas.report._dashboard import GRAPH_PREFIX, Dashboard, serve_dashboard
from edgenas.report._diagram import architecture_svg
from edgenas.report._figures import FIGURES, RunData, load_run, run_figures
from edgenas.report._html import REPORT_FILE, render_report, write_report

__all__ = [
    "FIGURES",
    "GRAPH_PREFIX",
    "REPORT_FILE",
    "Dashboard",
    "RunData",
    "architecture_svg",
    "load_run",
    "render_report",
    "run_figures",
    "serve_dashboard",
    "write_report",
]
