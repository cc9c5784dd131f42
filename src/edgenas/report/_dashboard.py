"""optuna-dashboard on a run's study, with edgenas's own views (``edgenas dashboard RUN``).

optuna-dashboard shows the plots any study has (history, parameter importances, the Pareto
front of a two-objective study). Plots a study does not know about reach it as Plotly figures
saved in the study (``optuna_dashboard.save_plotly_graph_object``): the dashboard draws them on
the study's page. Here they are edgenas's figures of the run (the same as in the report:
accuracy against latency coloured by feasibility, the front over time, the block types and
kernels of the front, and, for a search that predicted latency from a device profile,
predicted against measured latency), saved again whenever the run changed, so they follow a
search that is still running. The study's note (its Note page) says what the run is.
"""

from __future__ import annotations

import logging
import threading
import warnings
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from edgenas.errors import ConfigError, EdgenasError

if TYPE_CHECKING:
    from edgenas.report._figures import RunData

log = logging.getLogger("edgenas.dashboard")

__all__ = ["GRAPH_PREFIX", "Dashboard", "serve_dashboard"]

GRAPH_PREFIX = "edgenas-"  # graph object ids: edgenas-pareto, edgenas-front-over-time, …


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a browser holding a connection open does not block Ctrl-C


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


class Dashboard:
    """optuna-dashboard serving one run's study, with edgenas's views kept up to date.

    Args:
        run_dir: a directory ``edgenas search`` wrote (its study.db, or the database its
            spec.json names).
        host, port: where to listen; port 0 picks a free one (see `url`).
        refresh_s: how often the run is read again and changed views saved.
    """

    def __init__(self, run_dir: Path, host: str = "127.0.0.1", port: int = 8080,
                 refresh_s: float = 10.0) -> None:  # fmt: skip
        from optuna_dashboard import wsgi

        from edgenas.study import open_run_study, study_storage

        self.run_dir = Path(run_dir)
        if not self.run_dir.is_dir():
            raise ConfigError(
                f"{run_dir} is not a folder; give a run directory edgenas search wrote"
            )
        if refresh_s <= 0:
            raise ConfigError(f"--refresh must be a positive number of seconds, got {refresh_s}")
        self.study = open_run_study(self.run_dir)
        storage = study_storage(self.study)
        self.storage = storage
        self.study_id = storage.get_study_id_from_name(self.study.study_name)
        self.refresh_s = refresh_s
        self._saved: dict[str, str] = {}
        self._stop = threading.Event()
        self._serving = False
        self.refresh()  # the views are there when the first page loads
        try:
            self.server = make_server(host, port, wsgi(storage), server_class=_Server,
                                      handler_class=_QuietHandler)  # fmt: skip
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another "
                "--port, or --port 0 for any free one"
            ) from exc
        self.host, self.port = host, int(self.server.server_address[1])

    @property
    def url(self) -> str:
        """The study's page."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/dashboard/studies/{self.study_id}"

    def refresh(self) -> int:
        """Read the run again and save the views that changed; returns how many were saved."""
        import optuna
        from optuna_dashboard import save_note, save_plotly_graph_object

        from edgenas.report._figures import load_run, run_figures

        # No new connection per refresh; a run that did not record its majority-class baseline
        # is not loaded again every few seconds to count it.
        run = load_run(self.run_dir, self.study, load_data=False)
        saved = 0
        note = _note(run)
        if self._saved.get("note") != note:
            save_note(self.study, note)
            self._saved["note"] = note
            saved += 1
        names = _objective_names(run.objective)
        if self._saved.get("names") != repr(names):
            with warnings.catch_warnings():  # experimental in Optuna, and stable enough here
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                self.study.set_metric_names(names)
            self._saved["names"] = repr(names)
        for key, figure in run_figures(run).items():
            if key == "latency-prediction" and not run.predicted:
                continue  # every latency was measured: nothing to compare
            text = figure.to_json()
            if self._saved.get(key) == text:
                continue
            save_plotly_graph_object(self.study, figure, graph_object_id=GRAPH_PREFIX + key)
            self._saved[key] = text
            saved += 1
        return saved

    def view(self, key: str) -> dict[str, Any] | None:
        """The figure of view ``key`` (such as ``pareto``) as saved in the study, as Plotly
        JSON; None when it is not there."""
        import json

        # As optuna_dashboard.save_plotly_graph_object splits it: numbered chunks of the JSON.
        prefix = f"dashboard:plot_data:{GRAPH_PREFIX}{key}:"
        attrs = self.storage.get_study_system_attrs(self.study_id)
        chunks = sorted(
            (int(k.removeprefix(prefix)), v) for k, v in attrs.items() if k.startswith(prefix)
        )
        text = "".join(v for _, v in chunks)
        return json.loads(text) if text else None

    def _keep_fresh(self) -> None:
        while not self._stop.wait(self.refresh_s):
            try:
                self.refresh()
            except Exception as exc:  # a locked database, a run being rewritten: next time
                log.warning("could not update the edgenas views (%s); trying again", exc)

    def serve(self) -> None:
        """Serve until interrupted (Ctrl-C) or `close`."""
        keeper = threading.Thread(target=self._keep_fresh, name="edgenas-views", daemon=True)
        keeper.start()
        self._serving = True
        try:
            self.server.serve_forever(poll_interval=0.2)
        finally:
            self._serving = False
            self._stop.set()

    def close(self) -> None:
        """Stop serving (from another thread) and release the port."""
        self._stop.set()
        if self._serving:  # shutdown() waits for serve_forever, which must be running
            self.server.shutdown()
        self.server.server_close()


def _objective_names(objective: str) -> list[str]:
    """What the study's values are, as the dashboard's axes and tables name them."""
    if objective == "pareto":
        return ["validation accuracy", "latency (ms)"]
    return ["weighted score" if objective == "weighted" else "validation accuracy"]


def _note(run: RunData) -> str:
    """The study page's note: what the run is and where it stands, in Markdown."""
    spec = run.spec
    trained = [r for r in run.records if r.trained]
    rejected = [r for r in run.records if r.state == "infeasible"]
    lines = [
        f"## edgenas run `{run.run_dir.name}`",
        "",
        f"- data: **{spec.get('data')}**; objective **{run.objective}**, strategy "
        f"**{spec.get('strategy')}**",
        f"- constraints: {run.constraints.describe()}",
        f"- {len(trained)} trained, {len(rejected)} rejected by the constraints before "
        "training" + (" · **still running**" if run.running else ""),
    ]
    best = run.best
    if best and best.accuracy is not None:
        holdout = best.holdout_accuracy
        lines.append(
            f"- best: trial {best.trial}, validation {100 * best.accuracy:.1f}%"
            + (f", holdout {100 * holdout:.1f}%" if holdout is not None else "")
        )
    lines += [
        "",
        "The edgenas views (accuracy against latency by feasibility, the front over time, the "
        "blocks of the front, and predicted against measured latency when a device profile "
        "predicted it) are on the study's page, after its own plots. `edgenas report` writes "
        "them into one HTML file.",
    ]
    return "\n".join(lines)


def serve_dashboard(run_dir: Path, host: str, port: int, refresh_s: float,
                    announce: Any = print) -> None:  # fmt: skip
    """Open the run, tell the URL through ``announce``, and serve until Ctrl-C."""
    try:
        dashboard = Dashboard(run_dir, host=host, port=port, refresh_s=refresh_s)
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise EdgenasError(
            f"optuna-dashboard is not installed ({exc}): pip install edgenas"
        ) from exc
    announce(dashboard.url)
    try:
        dashboard.serve()
    finally:
        dashboard.server.server_close()
