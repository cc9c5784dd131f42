"""What ``edgenas finalize`` retrained and wrote: the records behind ``final/final.json``, the
model card and the report."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgenas.finalize._intervals import holdout_gap
from edgenas.finalize._scores import MajorityBaseline, MetricScores
from edgenas.finalize._steps import CompressOptions, Step
from edgenas.study import FINAL_DIR, RunDir
from edgenas.train import Metric

__all__ = ["FINAL_DIR", "FinalCandidate", "FinalResult"]


@dataclass(frozen=True)
class FinalCandidate(MetricScores):
    """One retrained candidate and its figures, and its scores in the run's metric
    (`MetricScores`: what the exported one is chosen by)."""

    trial: int
    genotype: str
    epochs: int
    search_accuracy: float | None  # validation score during the search (short training)
    val_accuracy: float
    val_interval: tuple[float, float]
    val_images: int
    holdout_accuracy: float
    holdout_interval: tuple[float, float]
    holdout_images: int
    train_seconds: float
    latency_ms: float | None
    onnx_max_abs_diff: float | None = None  # only for the exported one

    @property
    def score(self) -> float:
        """The validation score of the run's metric: what the exported one is chosen by."""
        return self.val_accuracy if self.val_score is None else self.val_score

    @property
    def gap_warning(self) -> str | None:
        """Set when validation and holdout differ by more than chance explains (`holdout_gap`)."""
        gap = holdout_gap(
            self.val_accuracy, self.val_images, self.holdout_accuracy, self.holdout_images
        )
        return None if gap is None else f"trial {self.trial}: {gap}"

    def to_json(self) -> dict[str, Any]:
        return {
            "trial": self.trial,
            "genotype": self.genotype,
            "epochs": self.epochs,
            "search_accuracy": self.search_accuracy,
            "val_accuracy": self.val_accuracy,
            "val_interval": list(self.val_interval),
            "val_images": self.val_images,
            "holdout_accuracy": self.holdout_accuracy,
            "holdout_interval": list(self.holdout_interval),
            "holdout_images": self.holdout_images,
            "gap_warning": self.gap_warning,
            "train_seconds": round(self.train_seconds, 3),
            "latency_ms": self.latency_ms,
            "onnx_max_abs_diff": self.onnx_max_abs_diff,
            **self.scores_json(),
        }


@dataclass(frozen=True)
class FinalResult:
    """What `finalize` retrained and wrote; ``candidates[0]`` is the exported one."""

    run_dir: Path
    candidates: list[FinalCandidate]
    steps: list[Step] = field(default_factory=list)
    options: CompressOptions | None = None
    constraints: dict[str, float] = field(default_factory=dict)
    metric: Metric = field(default_factory=lambda: Metric("accuracy"))
    # What always answering the majority class scores, per split (validation, holdout).
    baselines: dict[str, MajorityBaseline] = field(default_factory=dict)

    @property
    def final_dir(self) -> Path:
        return RunDir(self.run_dir).final

    @property
    def best(self) -> FinalCandidate:
        return self.candidates[0]

    @property
    def int8(self) -> bool:
        return any(s.name == "int8" for s in self.steps)

    def reports(self) -> dict[str, dict[str, Any]]:
        """The per-class figures of the model to deploy (the last kept step's, else the
        retrained model's), per split: ``validation`` and ``holdout``."""
        last = next((s for s in reversed(self.steps) if s.kept), None)
        pairs = (
            (last.val_report, last.holdout_report)
            if last is not None
            else (self.best.val_report, self.best.holdout_report)
        )
        return {k: r for k, r in zip(("validation", "holdout"), pairs, strict=True) if r}

    def to_json(self) -> dict[str, Any]:
        return {
            "exported": self.best.trial,
            "onnx": "model.onnx",
            "int8_onnx": "model.int8.onnx" if self.int8 else None,
            "genotype_file": "genotype.txt",
            "interval": "Wilson 95%",
            "constraints": self.constraints,
            "metric": self.metric.name,
            "metric_label": self.metric.label,
            "majority_baseline": {
                split: b.to_json(self.metric) for split, b in self.baselines.items()
            },
            # the model to deploy, class by class
            "validation_report": self.reports().get("validation"),
            "holdout_report": self.reports().get("holdout"),
            "candidates": [c.to_json() for c in self.candidates],
            "options": None if self.options is None else _options_json(self.options),
            "steps": [s.to_json() for s in self.steps],
        }


def _options_json(options: CompressOptions) -> dict[str, Any]:
    d = asdict(options)
    if d["device_profile"] is not None:
        d["device_profile"] = str(d["device_profile"])
    return d
