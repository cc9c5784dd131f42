"""What ``edgenas finalize`` retrained and wrote: the records behind ``final/final.json``, the
model card and the report."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgenas.finalize._intervals import holdout_gap
from edgenas.finalize._steps import CompressOptions, Step
from edgenas.study import FINAL_DIR, RunDir

__all__ = ["FINAL_DIR", "FinalCandidate", "FinalResult"]


@dataclass(frozen=True)
class FinalCandidate:
    """One retrained candidate and its figures."""

    trial: int
    genotype: str
    epochs: int
    search_accuracy: float | None  # validation accuracy during the search (short training)
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
        }


@dataclass(frozen=True)
class FinalResult:
    """What `finalize` retrained and wrote; ``candidates[0]`` is the exported one."""

    run_dir: Path
    candidates: list[FinalCandidate]
    steps: list[Step] = field(default_factory=list)
    options: CompressOptions | None = None
    constraints: dict[str, float] = field(default_factory=dict)

    @property
    def final_dir(self) -> Path:
        return RunDir(self.run_dir).final

    @property
    def best(self) -> FinalCandidate:
        return self.candidates[0]

    @property
    def int8(self) -> bool:
        return any(s.name == "int8" for s in self.steps)

    def to_json(self) -> dict[str, Any]:
        return {
            "exported": self.best.trial,
            "onnx": "model.onnx",
            "int8_onnx": "model.int8.onnx" if self.int8 else None,
            "genotype_file": "genotype.txt",
            "interval": "Wilson 95%",
            "constraints": self.constraints,
            "candidates": [c.to_json() for c in self.candidates],
            "options": None if self.options is None else _options_json(self.options),
            "steps": [s.to_json() for s in self.steps],
        }


def _options_json(options: CompressOptions) -> dict[str, Any]:
    d = asdict(options)
    if d["device_profile"] is not None:
        d["device_profile"] = str(d["device_profile"])
    return d
