"""What a run's scores mean: the metric it ranked by, and what always answering the majority
class scores on its validation and holdout splits, so that ``edgenas show``, ``edgenas report``
and the model card can say whether a model beats it.

Runs record both (``spec.json``'s ``metric``, ``results.json``'s ``majority_baseline``); runs
made before they did are read as ranked by accuracy, and their baseline is counted from the
per-class reports or, failing those, from the labels of the run's data, split again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgenas.errors import ConfigError, EdgenasError
from edgenas.finalize._data import load_run_data
from edgenas.train import Metric, majority_baseline

__all__ = [
    "SPLITS",
    "MajorityBaseline",
    "MetricScores",
    "majority_baselines",
    "per_class_rows",
    "run_metric",
]

log = logging.getLogger("edgenas.finalize")

#: The splits a baseline is given for, in the order they are shown.
SPLITS = ("validation", "holdout")


@dataclass(frozen=True, kw_only=True)
class MetricScores:
    """The run's metric on the validation and holdout splits, and the per-class figures behind
    it (`edgenas.train.class_report`), of a retrained candidate or a compression step. Scores
    left None are the accuracies (the metric is accuracy, or the model was scored before the
    metric was recorded). Keyword-only, so a dataclass built on it keeps its own fields first.
    """

    metric: str = "accuracy"
    val_score: float | None = None
    holdout_score: float | None = None
    val_report: dict[str, Any] | None = None
    holdout_report: dict[str, Any] | None = None

    def scores_json(self) -> dict[str, Any]:
        """The fields as ``final.json`` records them."""
        return {
            "metric": self.metric,
            "val_score": self.val_score,
            "holdout_score": self.holdout_score,
            "val_report": self.val_report,
            "holdout_report": self.holdout_report,
        }


def run_metric(spec: Mapping[str, Any]) -> Metric:
    """The metric a run ranked by (``spec.json``'s ``metric``; accuracy for older runs).

    Raises:
        ConfigError: ``spec.json`` names a metric edgenas does not know.
    """
    try:
        return Metric.parse(spec.get("metric"))
    except ConfigError as exc:
        raise ConfigError(f"spec.json of the run names an unknown metric: {exc}") from None


@dataclass(frozen=True)
class MajorityBaseline:
    """What always answering the most frequent class scores on one split."""

    split: str  # "validation" or "holdout"
    class_name: str
    accuracy: float
    balanced_accuracy: float
    macro_f1: float | None
    score: float  # in the run's metric

    @classmethod
    def from_json(cls, split: str, d: Any) -> MajorityBaseline | None:
        """A ``majority_baseline`` dict (as `edgenas.train.majority_baseline` writes it)."""
        if not isinstance(d, Mapping) or d.get("class") is None or d.get("accuracy") is None:
            return None
        accuracy = float(d["accuracy"])
        balanced = d.get("balanced_accuracy")
        return cls(
            split=split,
            class_name=str(d["class"]),
            accuracy=accuracy,
            balanced_accuracy=accuracy if balanced is None else float(balanced),
            macro_f1=None if d.get("macro_f1") is None else float(d["macro_f1"]),
            score=accuracy if d.get("score") is None else float(d["score"]),
        )

    def describe(self, metric: Metric) -> str:
        """``always "functional": accuracy 68.8%, balanced accuracy 50.0%`` (and the run's
        metric when it is neither)."""
        parts = [f"accuracy {_pct(self.accuracy)}",
                 f"balanced accuracy {_pct(self.balanced_accuracy)}"]  # fmt: skip
        if metric.kind not in ("accuracy", "balanced-accuracy"):
            parts.append(f"{metric.label} {_pct(self.score)}")
        return f'always "{self.class_name}": ' + ", ".join(parts)

    def to_json(self, metric: Metric) -> dict[str, Any]:
        return {
            "class": self.class_name,
            "metric": metric.name,
            "score": self.score,
            "accuracy": self.accuracy,
            "balanced_accuracy": self.balanced_accuracy,
            "macro_f1": self.macro_f1,
        }


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _from_report(split: str, report: Any, metric: Metric) -> MajorityBaseline | None:
    """The baseline counted from a class report's supports (the split's images per class)."""
    if not isinstance(report, Mapping) or not isinstance(report.get("per_class"), Mapping):
        return None
    classes = [str(c) for c in report.get("classes") or report["per_class"]]
    support = [int((report["per_class"].get(c) or {}).get("support") or 0) for c in classes]
    if sum(support) == 0:
        return None
    labels = np.repeat(np.arange(len(classes)), support)
    return _baseline(split, labels, classes, metric)


def _baseline(
    split: str, labels: np.ndarray, classes: Sequence[str], metric: Metric
) -> MajorityBaseline | None:
    try:
        metric.check_classes(classes)
    except ConfigError:
        metric = Metric("accuracy")
    return MajorityBaseline.from_json(split, majority_baseline(labels, classes, metric))


def majority_baselines(
    run_dir: Path,
    spec: Mapping[str, Any],
    *recorded: Mapping[str, Any] | None,
    reports: Mapping[str, Any] | None = None,
    load_data: bool = True,
) -> dict[str, MajorityBaseline]:
    """What always answering the majority class scores, per split (``validation``,
    ``holdout``), in the run's metric.

    Read from the first of ``spec`` and ``recorded`` (``results.json``, ``final/final.json``)
    that holds a ``majority_baseline``; else counted from ``reports`` (split → a class report, whose
    supports count the split's labels); else, with ``load_data``, from the labels of the run's
    data split again as the search split it. A split none of them gives is left out; data that
    cannot be loaded again gives none (with a line on the log).
    """
    metric = run_metric(spec)
    out: dict[str, MajorityBaseline] = {}
    for source in (spec, *recorded):
        stored = (source or {}).get("majority_baseline")
        if isinstance(stored, Mapping):
            for split in SPLITS:
                entry = stored.get(split)
                if isinstance(entry, Mapping) and entry.get("metric") not in (None, metric.name):
                    continue  # scored in another metric than the run's: counted again below
                baseline = MajorityBaseline.from_json(split, entry)
                if baseline is not None:
                    out.setdefault(split, baseline)
    for split in SPLITS:
        if split not in out:
            baseline = _from_report(split, (reports or {}).get(split), metric)
            if baseline is not None:
                out[split] = baseline
    if all(split in out for split in SPLITS) or not load_data:
        return out
    try:
        data = load_run_data(Path(run_dir), dict(spec), None)
    except EdgenasError as exc:
        log.info("the majority-class baseline is not known: %s", exc)
        return out
    labels = np.asarray(data.labels)
    classes = list(data.class_names)
    for split, index in (("validation", data.splits.val), ("holdout", data.splits.holdout)):
        if split not in out and len(index):
            baseline = _baseline(split, labels[np.asarray(index)], classes, metric)
            if baseline is not None:
                out[split] = baseline
    return out


def per_class_rows(report: Mapping[str, Any]) -> list[tuple[str, Any, Any, Any, int]]:
    """(class, precision, recall, F1, support) per class of a class report, in class order."""
    per_class = report.get("per_class") or {}
    rows = []
    for name in report.get("classes") or per_class:
        c = per_class.get(name) or {}
        rows.append(
            (str(name), c.get("precision"), c.get("recall"), c.get("f1"),
             int(c.get("support") or 0))
        )  # fmt: skip
    return rows
