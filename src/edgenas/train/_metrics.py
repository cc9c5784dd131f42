"""Scores for imbalanced classes: the metric a search optimises, per-class figures and the
majority-class baseline, all computed from a confusion matrix with scikit-learn.

A confusion matrix is small and additive (it is counted on the device batch by batch and read
back once), so everything a report needs, for any metric, comes from it afterwards.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgenas.errors import ConfigError

__all__ = [
    "CLASS_WEIGHTS",
    "METRIC_CHOICES",
    "Metric",
    "class_report",
    "confusion_matrix",
    "loss_class_weights",
    "majority_baseline",
]

#: What ``--metric`` accepts; ``recall:CLASS`` names one class.
METRIC_CHOICES = ("accuracy", "balanced-accuracy", "macro-f1", "recall:CLASS")
#: What ``--class-weights`` accepts (see `loss_class_weights`).
CLASS_WEIGHTS = ("none", "balanced")
_KINDS = ("accuracy", "balanced-accuracy", "macro-f1", "recall")


@dataclass(frozen=True)
class Metric:
    """The validation score a search ranks, stops and chooses by.

    ``accuracy`` (top-1), ``balanced-accuracy`` (the mean of the per-class recalls: always
    answering one class scores 1/classes), ``macro-f1`` (the unweighted mean of the per-class
    F1 scores) or ``recall:CLASS`` (the share of CLASS's images found, for a defect that must
    not be missed). Each is in [0, 1], higher is better.

    Example:
        >>> metric = Metric.parse("balanced-accuracy")
        >>> metric.score(np.array([[8, 0], [1, 1]]), ["ok", "defect"])
        0.75
    """

    kind: str
    target: str | None = None  # the class of ``recall:CLASS``

    @classmethod
    def parse(cls, text: str | Metric | None) -> Metric:
        """Read ``--metric``; None means ``accuracy``.

        Raises:
            ConfigError: an unknown metric, or ``recall:`` without a class.
        """
        if isinstance(text, Metric):
            return text
        if text is None:
            return cls("accuracy")
        if not isinstance(text, str):
            raise ConfigError(f"--metric takes text such as balanced-accuracy, got {text!r}")
        kind, colon, target = text.strip().partition(":")
        kind = kind.strip().lower().replace("_", "-")
        if kind == "recall" and colon:
            if not target.strip():
                raise ConfigError(
                    "--metric recall: needs a class name after the colon, such as recall:defective"
                )
            return cls("recall", target.strip())
        if kind in _KINDS and kind != "recall" and not colon:
            return cls(kind)
        raise ConfigError(
            f"--metric {text!r} is unknown; choose from {', '.join(METRIC_CHOICES)} "
            "(CLASS is one of the data's class names)"
        )

    @property
    def name(self) -> str:
        """As ``--metric`` writes it (``recall:defective``)."""
        return f"recall:{self.target}" if self.kind == "recall" else self.kind

    @property
    def label(self) -> str:
        """In words, for tables and figures: ``balanced accuracy``, ``recall of defective``."""
        if self.kind == "recall":
            return f"recall of {self.target}"
        return {"accuracy": "accuracy", "balanced-accuracy": "balanced accuracy"}.get(
            self.kind, "macro F1"
        )

    @property
    def short(self) -> str:
        """A column heading: ``acc``, ``bal acc``, ``F1``, ``recall``."""
        return {"accuracy": "acc", "balanced-accuracy": "bal acc", "macro-f1": "F1"}.get(
            self.kind, "recall"
        )

    def check_classes(self, class_names: Sequence[str]) -> None:
        """Raise ConfigError when ``recall:CLASS`` names a class the data does not have."""
        if self.kind == "recall" and self.target not in class_names:
            raise ConfigError(
                f"--metric {self.name}: the data has no class {self.target!r}; its classes are "
                f"{', '.join(class_names)}"
            )

    def score(self, confusion: np.ndarray, class_names: Sequence[str]) -> float:
        """The metric of ``confusion`` (rows: true class, columns: predicted class)."""
        confusion = _checked(confusion, len(class_names))
        total = int(confusion.sum())
        if total == 0:
            raise ValueError("a score needs at least one image, the confusion matrix is empty")
        if self.kind == "accuracy":
            return float(np.trace(confusion)) / total
        if self.kind == "recall":
            self.check_classes(class_names)
            index = list(class_names).index(str(self.target))
            row = confusion[index]
            # A class absent from the images scored has no recall; nothing was missed.
            return float(row[index] / row.sum()) if row.sum() else 1.0
        report = class_report(confusion, class_names)
        key = "balanced_accuracy" if self.kind == "balanced-accuracy" else "macro_f1"
        return float(report[key])


def confusion_matrix(
    targets: np.ndarray | Sequence[int], predictions: np.ndarray | Sequence[int], classes: int
) -> np.ndarray:
    """Counts ``(classes, classes)``: row = true class, column = predicted class."""
    from sklearn.metrics import confusion_matrix as sk_confusion

    return np.asarray(
        sk_confusion(np.asarray(targets), np.asarray(predictions), labels=list(range(classes))),
        dtype=np.int64,
    )


def class_report(confusion: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Everything a reader needs of one evaluation, JSON-ready.

    Keys: ``classes``, ``confusion_matrix`` (rows: true class), ``images``, ``accuracy``,
    ``balanced_accuracy`` (mean recall over the classes present), ``macro_f1`` (over the
    classes present) and ``per_class``: per class name ``precision``, ``recall``, ``f1`` and
    ``support`` (its images). A class never predicted has precision 0; a class with no image
    has recall and F1 None and is left out of the means.
    """
    from sklearn.metrics import precision_recall_fscore_support

    confusion = _checked(confusion, len(class_names))
    classes = len(class_names)
    if int(confusion.sum()) == 0:  # scikit-learn refuses empty label lists
        return _empty_report(class_names)
    # scikit-learn scores label lists; a confusion matrix is their counts, so expand it back.
    truth = np.repeat(np.repeat(np.arange(classes), classes), confusion.ravel())
    predicted = np.repeat(np.tile(np.arange(classes), classes), confusion.ravel())
    support = confusion.sum(axis=1)
    present = [c for c in range(classes) if support[c] > 0]
    precision, recall, f1, _ = precision_recall_fscore_support(
        truth, predicted, labels=list(range(classes)), zero_division=0
    )
    per_class = {}
    for c, name in enumerate(class_names):
        has_images = support[c] > 0
        per_class[str(name)] = {
            "precision": float(precision[c]),
            "recall": float(recall[c]) if has_images else None,
            "f1": float(f1[c]) if has_images else None,
            "support": int(support[c]),
        }
    total = int(confusion.sum())
    return {
        "classes": [str(n) for n in class_names],
        "confusion_matrix": confusion.tolist(),
        "images": total,
        "accuracy": float(np.trace(confusion)) / total if total else None,
        "balanced_accuracy": _balanced(truth, predicted) if total else None,
        "macro_f1": float(np.mean([f1[c] for c in present])) if present else None,
        "per_class": per_class,
    }


def majority_baseline(
    labels: np.ndarray | Sequence[int],
    class_names: Sequence[str],
    metric: Metric | str | None = None,
) -> dict[str, Any]:
    """What always answering the most frequent class of ``labels`` scores.

    Returns ``class`` (its name), ``accuracy`` (its share of the images), ``balanced_accuracy``
    (1 / the classes present), ``macro_f1``, and ``score``: the value of ``metric`` (accuracy
    by default), so that a reader can tell a weak model from a good one on imbalanced data.

    Example:
        >>> majority_baseline(np.array([0, 0, 0, 1]), ["ok", "defect"])["accuracy"]
        0.75
    """
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(class_names))
    if counts.sum() == 0:
        raise ValueError("the majority-class baseline needs at least one label")
    majority = int(counts.argmax())
    confusion = np.zeros((len(class_names), len(class_names)), dtype=np.int64)
    confusion[:, majority] = counts
    report = class_report(confusion, class_names)
    return {
        "class": str(class_names[majority]),
        "metric": Metric.parse(metric).name,
        "score": Metric.parse(metric).score(confusion, class_names),
        "accuracy": report["accuracy"],
        "balanced_accuracy": report["balanced_accuracy"],
        "macro_f1": report["macro_f1"],
    }


def loss_class_weights(
    labels: np.ndarray | Sequence[int], classes: int, kind: str = "none"
) -> np.ndarray | None:
    """The per-class weights of the training loss for ``--class-weights`` ``kind``.

    ``none`` gives None (every image counts alike); ``balanced`` gives, as scikit-learn's
    "balanced", ``images / (classes * images of the class)`` over ``labels`` (the training
    images used), so that each class weighs as much in the loss as if the classes were equal
    in number. A class without any image gets weight 1 (it never is a target).

    Example:
        >>> loss_class_weights(np.array([0, 0, 0, 1]), 2, "balanced").tolist()
        [0.6666666666666666, 2.0]
    """
    if kind not in CLASS_WEIGHTS:
        raise ConfigError(
            f"--class-weights {kind!r} is unknown; choose from {', '.join(CLASS_WEIGHTS)}"
        )
    if kind == "none":
        return None
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=classes).astype(np.float64)
    weights = np.ones(classes, dtype=np.float64)
    present = counts > 0
    weights[present] = counts.sum() / (classes * counts[present])
    return weights


def _empty_report(class_names: Sequence[str]) -> dict[str, Any]:
    classes = len(class_names)
    return {
        "classes": [str(n) for n in class_names],
        "confusion_matrix": np.zeros((classes, classes), dtype=np.int64).tolist(),
        "images": 0,
        "accuracy": None,
        "balanced_accuracy": None,
        "macro_f1": None,
        "per_class": {
            str(n): {"precision": 0.0, "recall": None, "f1": None, "support": 0}
            for n in class_names
        },
    }


def _balanced(truth: np.ndarray, predicted: np.ndarray) -> float:
    from sklearn.metrics import balanced_accuracy_score

    with warnings.catch_warnings():
        # It warns when a class is predicted but has no image; the mean is over those present.
        warnings.simplefilter("ignore", UserWarning)
        return float(balanced_accuracy_score(truth, predicted))


def _checked(confusion: np.ndarray, classes: int) -> np.ndarray:
    confusion = np.asarray(confusion)
    if confusion.shape != (classes, classes):
        raise ValueError(
            f"a confusion matrix for {classes} classes is {classes}x{classes}, got shape "
            f"{confusion.shape}"
        )
    if confusion.size and (confusion.min() < 0 or not math.isfinite(float(confusion.sum()))):
        raise ValueError("a confusion matrix holds counts >= 0")
    return confusion.astype(np.int64, copy=False)
