"""The steps of `edgenas finalize` after full training: distillation, pruning, INT8.

Every step ends with a model exported to ONNX, and that file is what gets measured: accuracy
on the validation and holdout splits with ONNX Runtime, latency (batch 1, the run's threads),
peak memory (a fresh process, as ``edgenas.device`` measures it), file size and its
deflate-compressed size, parameters and MACs. The run's constraints are checked again on these
measured figures, and, with a device profile, on the profile's prediction of the architecture
scaled by what the step changed here (see `predicted_costs`).

Decisions (keep the distilled student, fall back to quantization-aware training) are made on
the validation split; the holdout split only reports.
"""

from __future__ import annotations

import copy
import logging
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgenas._io import write_bytes
from edgenas.arch import Network
from edgenas.cost import Constraints, Costs, parse_latency, parse_size
from edgenas.errors import ConfigError
from edgenas.finalize._scores import MetricScores
from edgenas.train import Metric, class_report, confusion_matrix

__all__ = [
    "PRUNE_METHODS",
    "QUANTIZE_METHODS",
    "CompressOptions",
    "Step",
    "check_constraints",
    "latency_side_by_side",
    "parse_target",
]

log = logging.getLogger("edgenas.finalize")

PRUNE_METHODS = ("none", "structured", "magnitude", "movement")
QUANTIZE_METHODS = ("int8", "none")
# Validation images used to score each pruned layer in the sensitivity analysis.
SENSITIVITY_IMAGES = 512
# Training images ONNX Runtime calibrates the INT8 activation ranges on.
CALIBRATION_IMAGES = 256
# Images converted to float at a time when an ONNX model is scored.
_ONNX_CHUNK = 1024


@dataclass(frozen=True)
class CompressOptions:
    """What `finalize` does after full training (all off: retrain and export only).

    Targets are absolute (``"3ms"``, ``"20MB"``) or relative to the model before pruning
    (``"70%"``).
    """

    distill: bool = False
    teacher: str | None = None  # a trial number or a final/ folder; None: most accurate trial
    prune: str = "none"
    target_latency: str | None = None
    target_memory: str | None = None
    target_size: str | None = None
    sparsity: float = 0.8  # overall weight sparsity for magnitude and movement pruning
    finetune_epochs: int | None = None
    quantize: str = "int8"
    max_accuracy_loss: float = 1.0  # validation points INT8 may lose before QAT is tried
    qat_epochs: int | None = None
    device_profile: Path | None = None

    def __post_init__(self) -> None:
        if self.prune not in PRUNE_METHODS:
            raise ConfigError(
                f"--prune {self.prune!r} is unknown; choose from {', '.join(PRUNE_METHODS)}"
            )
        if self.quantize not in QUANTIZE_METHODS:
            raise ConfigError(
                f"--quantize {self.quantize!r} is unknown; choose from "
                f"{', '.join(QUANTIZE_METHODS)}"
            )
        if self.teacher is not None and not self.distill:
            raise ConfigError("--teacher names the teacher of --distill: add --distill")
        targets = self.targets()
        if self.prune == "structured" and not targets:
            raise ConfigError(
                "--prune structured aims at a target: give --target-latency, --target-memory "
                "or --target-size (such as --target-latency 70%)"
            )
        if len(targets) > 1:
            raise ConfigError(
                f"give one pruning target, not {len(targets)} ({', '.join(targets)}): the "
                "run's constraints are checked on all costs after every step anyway"
            )
        if targets and self.prune != "structured":
            raise ConfigError(
                f"--{next(iter(targets)).replace('_', '-')} sets the target of structured "
                "pruning: add --prune structured"
            )
        for name, text in targets.items():
            parse_target(text, 1.0, name)  # fails early on a bad value
        if not (isinstance(self.sparsity, (int, float)) and 0 < self.sparsity < 1):
            raise ConfigError(f"--sparsity must be a fraction in (0, 1), got {self.sparsity!r}")
        for name in ("finetune_epochs", "qat_epochs"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or value < 1):
                flag = name.replace("_", "-")
                raise ConfigError(f"--{flag} must be a whole number >= 1, got {value!r}")
        if not (math.isfinite(self.max_accuracy_loss) and self.max_accuracy_loss >= 0):
            raise ConfigError(
                f"--max-accuracy-loss must be >= 0 points, got {self.max_accuracy_loss!r}"
            )

    def targets(self) -> dict[str, str]:
        given = {
            "target_latency": self.target_latency,
            "target_memory": self.target_memory,
            "target_size": self.target_size,
        }
        return {k: v for k, v in given.items() if v is not None}


def parse_target(text: str, current: float, name: str) -> float:
    """An absolute target (ms or MB), or ``"70%"`` of ``current``."""
    flag = "--" + name.replace("_", "-")
    text = str(text).strip()
    if text.endswith("%"):
        try:
            share = float(text[:-1]) / 100
        except ValueError:
            raise ConfigError(f"{flag} {text!r} is not a percentage such as 70%") from None
        if not 0 < share < 1:
            raise ConfigError(f"{flag} {text!r}: a relative target must be between 0% and 100%")
        return share * current
    try:
        return parse_latency(text) if name == "target_latency" else parse_size(text)
    except ConfigError as exc:
        raise ConfigError(f"{flag}: {exc}") from None


@dataclass(frozen=True)
class Step(MetricScores):
    """One step's model, as measured here, and what the step did, and its scores in the run's
    metric (`MetricScores`: what the steps decide by)."""

    name: str
    onnx: str  # path relative to final/
    kept: bool  # whether the next step starts from this model
    val_accuracy: float
    holdout_accuracy: float
    holdout_interval: tuple[float, float]
    latency_ms: float
    peak_memory_mb: float | None
    size_mb: float  # the ONNX file
    compressed_size_mb: float  # the ONNX file deflated (what sparse weights save)
    params: int
    macs: int
    seconds: float  # what the step took (training included)
    detail: dict[str, Any] = field(default_factory=dict)
    predicted: dict[str, Any] | None = None
    constraints: dict[str, dict[str, Any]] = field(default_factory=dict)
    onnx_check: dict[str, Any] = field(default_factory=dict)

    @property
    def score(self) -> float:
        """The validation score of the run's metric: what keeps or drops a step."""
        return self.val_accuracy if self.val_score is None else self.val_score

    def costs(self) -> Costs:
        return Costs(
            latency_ms=self.latency_ms,
            peak_memory_mb=math.nan if self.peak_memory_mb is None else self.peak_memory_mb,
            size_mb=self.size_mb,
            params=self.params,
            macs=self.macs,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "onnx": self.onnx,
            "kept": self.kept,
            "val_accuracy": self.val_accuracy,
            "holdout_accuracy": self.holdout_accuracy,
            "holdout_interval": list(self.holdout_interval),
            "latency_ms": self.latency_ms,
            "peak_memory_mb": self.peak_memory_mb,
            "size_mb": self.size_mb,
            "compressed_size_mb": self.compressed_size_mb,
            "params": self.params,
            "macs": self.macs,
            "seconds": round(self.seconds, 3),
            "detail": self.detail,
            "predicted": self.predicted,
            "constraints": self.constraints,
            "onnx_check": self.onnx_check,
            **self.scores_json(),
        }


def check_constraints(
    constraints: Constraints, costs: Costs, predicted: Costs | None = None
) -> dict[str, dict[str, Any]]:
    """Per active limit: the limit, the measured value, whether it holds (None: not measured
    for this step), and the same for the device prediction when there is one."""
    out: dict[str, dict[str, Any]] = {}
    for name, limit in constraints.active().items():
        entry: dict[str, Any] = {"limit": limit}
        for label, c in (("measured", costs), ("predicted", predicted)):
            if c is None:
                continue
            value = constraints.violations(c)[name] * limit + limit
            known = math.isfinite(value)
            entry[label] = value if known else None
            entry[f"{label}_holds"] = (value <= limit) if known else None
        out[name] = entry
    return out


def latency_side_by_side(
    models: Sequence[bytes], *, threads: int = 1, rounds: int = 7, runs: int = 30
) -> list[tuple[float, float]]:
    """Median latency (ms) and its interquartile spread per model, timed in interleaved rounds
    (each round runs every model ``runs`` times), so a machine that slows down or speeds up
    affects every model alike and their ratios stay honest."""
    from edgenas.device import make_session

    sessions = []
    for model in models:
        session = make_session(model, threads)
        inp = session.get_inputs()[0]
        shape = [d if isinstance(d, int) else 1 for d in inp.shape]
        feed = {inp.name: np.random.default_rng(0).random(shape, dtype=np.float32)}
        for _ in range(5):
            session.run(None, feed)
        sessions.append((session, feed))
    per_model: list[list[float]] = [[] for _ in models]
    for _ in range(rounds):
        for i, (session, feed) in enumerate(sessions):
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                session.run(None, feed)
                times.append((time.perf_counter() - t0) * 1e3)
            per_model[i].append(statistics.median(times))
    out = []
    for medians in per_model:
        q = statistics.quantiles(medians, n=4) if len(medians) > 1 else [medians[0]] * 3
        out.append((statistics.median(medians), q[2] - q[0]))
    return out


@dataclass
class Measurer:
    """Exports and measures a step's model; shares what it can between steps."""

    images: Callable[[int], torch.Tensor]  # uint8 images at a resolution
    labels: torch.Tensor
    val: torch.Tensor
    holdout: torch.Tensor
    threads: int
    constraints: Constraints
    predict_latency: float | None  # the profile's prediction for the unpruned architecture
    predict_memory: float | None
    wilson: Callable[[float, int], tuple[float, float]]
    metric: Metric = field(default_factory=lambda: Metric("accuracy"))
    class_names: Sequence[str] = ()
    _baseline: dict[Any, float] = field(default_factory=dict)
    _reference: tuple[float, float | None] | None = None  # first step's latency and memory

    def predictions(self, model: bytes, resolution: int, index: torch.Tensor) -> np.ndarray:
        """The ONNX model's predicted class for each of the images ``index``.

        The rows are gathered from the (memory-mapped) pixels a chunk at a time, so scoring a
        split of any size holds one chunk of it, never a copy of the split.
        """
        from edgenas.compress import onnx_logits

        pixels = self.images(resolution).numpy()  # a view of the cache, not a copy
        rows = np.asarray(index, dtype=np.int64)
        if rows.size == 0:
            raise ConfigError("an ONNX model cannot be scored on an empty split")
        predicted = []
        for start in range(0, len(rows), _ONNX_CHUNK):  # float copies of a chunk at a time
            # the same IEEE division as the trainer's x.float().div(255)
            chunk = pixels[rows[start : start + _ONNX_CHUNK]].astype(np.float32) / np.float32(255)
            predicted.append(onnx_logits(model, chunk, threads=self.threads).argmax(axis=1))
        return np.concatenate(predicted)

    def accuracy(self, model: bytes, resolution: int, index: torch.Tensor) -> float:
        """The ONNX model's top-1 accuracy (0..1) on the images ``index``."""
        truth = self.labels.numpy()[np.asarray(index, dtype=np.int64)]
        return float((self.predictions(model, resolution, index) == truth).mean())

    def confusion(self, model: bytes, resolution: int, index: torch.Tensor) -> np.ndarray:
        """The ONNX model's confusion matrix on the images ``index`` (rows: true class)."""
        truth = self.labels.numpy()[np.asarray(index, dtype=np.int64)]
        predicted = self.predictions(model, resolution, index)
        return confusion_matrix(truth, predicted, len(self.class_names))

    def score(self, model: bytes, resolution: int, index: torch.Tensor) -> float:
        """The run's metric of the ONNX model on the images ``index``."""
        if self.metric.kind == "accuracy" or not self.class_names:
            return self.accuracy(model, resolution, index)
        return self.metric.score(self.confusion(model, resolution, index), self.class_names)

    def measure(
        self,
        name: str,
        onnx: bytes,
        path: Path,
        *,
        resolution: int,
        params_macs: tuple[int, int],
        started: float,
        kept: bool = True,
        detail: dict[str, Any] | None = None,
        onnx_check: dict[str, Any] | None = None,
    ) -> Step:
        from edgenas.compress import compressed_size_mb
        from edgenas.device import (
            MemoryMeasurementError,
            measure_onnx_latency,
            measure_onnx_memory,
        )

        write_bytes(path, onnx)
        scores: dict[str, Any] = {}
        if self.class_names:
            val_confusion = self.confusion(onnx, resolution, self.val)
            hold_confusion = self.confusion(onnx, resolution, self.holdout)
            val_report = class_report(val_confusion, self.class_names)
            hold_report = class_report(hold_confusion, self.class_names)
            val_acc, hold_acc = float(val_report["accuracy"]), float(hold_report["accuracy"])
            scores = {
                "metric": self.metric.name,
                "val_score": self.metric.score(val_confusion, self.class_names),
                "holdout_score": self.metric.score(hold_confusion, self.class_names),
                "val_report": val_report,
                "holdout_report": hold_report,
            }
        else:
            val_acc = self.accuracy(onnx, resolution, self.val)
            hold_acc = self.accuracy(onnx, resolution, self.holdout)
        latency = measure_onnx_latency(
            onnx, threads=self.threads, min_runs=30, stable_within=0.02, max_seconds=20
        ).median_ms
        memory: float | None = None
        try:
            memory = measure_onnx_memory(
                onnx, threads=self.threads, baseline_mb=self._baseline
            ).peak_mb
        except MemoryMeasurementError as exc:
            log.warning("%s: peak memory not measured (%s)", name, exc)
        params, macs = params_macs
        step = Step(
            name=name,
            onnx=str(path.relative_to(path.parent.parent)),
            kept=kept,
            val_accuracy=val_acc,
            holdout_accuracy=hold_acc,
            holdout_interval=self.wilson(hold_acc * len(self.holdout), len(self.holdout)),
            latency_ms=latency,
            peak_memory_mb=memory,
            size_mb=len(onnx) / 1e6,
            compressed_size_mb=compressed_size_mb(onnx),
            params=params,
            macs=macs,
            seconds=time.perf_counter() - started,
            detail=detail or {},
            onnx_check=onnx_check or {},
            **scores,
        )
        if self._reference is None:
            self.rebase(step)
        return self.recheck(step)

    def rebase(self, step: Step) -> None:
        """Take ``step`` (the fully trained model) as what the device prediction scales from."""
        self._reference = (step.latency_ms, step.peak_memory_mb)

    def recheck(self, step: Step) -> Step:
        """The step's constraints, on its measured costs and on the scaled prediction."""
        predicted = predicted_costs(step, self._reference, self.predict_latency,
                                    self.predict_memory)  # fmt: skip
        predicted_json = None
        if predicted is not None:
            predicted_json = {
                "latency_ms": predicted.latency_ms,
                "peak_memory_mb": None
                if math.isnan(predicted.peak_memory_mb)
                else predicted.peak_memory_mb,
                "method": "the profile's prediction of the architecture, times the ratio this "
                "step changed the cost by, measured here",
            }
        return replace(
            step,
            predicted=predicted_json,
            constraints=check_constraints(self.constraints, step.costs(), predicted),
        )


def predicted_costs(
    step: Step,
    reference: tuple[float, float | None] | None,
    latency: float | None,
    memory: float | None,
) -> Costs | None:
    """The device profile predicts architectures from its block table, and a pruned or INT8
    model is no longer one of them: its prediction is the architecture's, scaled by the ratio
    between this step's measured cost and the fully trained model's."""
    if latency is None or reference is None:
        return None
    ref_latency, ref_memory = reference
    mem = math.nan
    if memory is not None and ref_memory and step.peak_memory_mb is not None:
        mem = memory * step.peak_memory_mb / ref_memory
    return Costs(
        latency_ms=latency * step.latency_ms / ref_latency,
        peak_memory_mb=mem,
        size_mb=step.size_mb,
        params=step.params,
        macs=step.macs,
    )


def onnx_agreement(reference: bytes, model: bytes, images: torch.Tensor) -> dict[str, float]:
    """How closely an INT8 model follows its fp32 source: share of equal top-1 predictions and
    the largest absolute logit difference, on uint8 ``images``."""
    from edgenas.compress import onnx_logits

    x = images.float().div(255.0).numpy()
    a = onnx_logits(reference, x)
    b = onnx_logits(model, x)
    return {
        "top1_agreement": float((a.argmax(1) == b.argmax(1)).mean()),
        "max_abs_diff": float(np.abs(a - b).max()),
        "images": len(x),
    }


def deep_copy(model: Network) -> Network:
    return copy.deepcopy(model).cpu().eval()
