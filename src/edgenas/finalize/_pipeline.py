"""Runs the compression steps on the retrained model: distillation, pruning, INT8 (see
`_steps` for what each step measures)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgenas.arch import Genotype, Network, build_model, export_onnx
from edgenas.compress import count_params_macs
from edgenas.errors import ConfigError
from edgenas.finalize._clock import EpochClock
from edgenas.finalize._steps import (
    CALIBRATION_IMAGES,
    SENSITIVITY_IMAGES,
    CompressOptions,
    Measurer,
    Step,
    deep_copy,
    latency_side_by_side,
    onnx_agreement,
    parse_target,
)
from edgenas.train import Distillation, Fidelity, TrainConfig, evaluate, evaluate_confusion, fit

log = logging.getLogger("edgenas.finalize")

STEPS_DIR = "steps"


def finetune_epochs(options: CompressOptions, epochs: int) -> int:
    """Fine-tuning epochs after pruning: ``--finetune-epochs``, else a share of training's."""
    if options.finetune_epochs:
        return options.finetune_epochs
    if options.prune == "structured":
        return max(1, epochs // 3)
    return max(2, epochs // 2)  # unstructured sparsity is reached gradually while training


def planned_epochs(options: CompressOptions, epochs: int) -> int:
    """The training epochs the compression steps will run after full training of ``epochs``
    (quantization-aware training, needed only when INT8 loses too much, and retraining a
    teacher are added when they start)."""
    planned = epochs if options.distill else 0
    if options.prune != "none":
        planned += finetune_epochs(options, epochs)
    return planned


@dataclass
class Pipeline:
    """Everything the steps share; ``steps`` grows as they complete."""

    final: Path
    data: Any
    genotype: Genotype
    config: TrainConfig
    epochs: int
    seed: int
    options: CompressOptions
    measurer: Measurer
    teacher_source: Callable[[], tuple[Network, dict[str, Any]]]
    onnx_diff: Callable[[nn.Module, bytes, torch.Tensor], float]
    save: Callable[[list[Step]], None]  # writes final.json with the steps so far
    say: Callable[[str], None]
    clock: EpochClock

    def __post_init__(self) -> None:
        self.steps: list[Step] = []
        self.models: list[bytes] = []

    # -- helpers ---------------------------------------------------------------------------

    @property
    def resolution(self) -> int:
        return self.genotype.resolution

    def _path(self, name: str) -> Path:
        slug = name.replace(" ", "-")
        return self.final / STEPS_DIR / f"{len(self.steps) + 1}-{slug}.onnx"

    def _images(self) -> torch.Tensor:
        return self.data.images(self.resolution)

    def _holdout_check(self, model: nn.Module, onnx: bytes) -> dict[str, Any]:
        index = torch.as_tensor(self.data.splits.holdout)[:32]
        return {"max_abs_diff": self.onnx_diff(model, onnx, self._images()[index])}

    def _record(self, step: Step, onnx: bytes) -> Step:
        self.steps.append(step)
        self.models.append(onnx)
        self.save(self.steps)
        return step

    def _measure_fp32(
        self, name: str, model: Network, started: float, *, kept: bool = True,
        detail: dict[str, Any] | None = None,
    ) -> tuple[Step, bytes]:  # fmt: skip
        model = model.cpu().eval()
        onnx = export_onnx(model)
        check = self._holdout_check(model, onnx)
        self.say(f"{name}: measuring accuracy, latency and peak memory")
        step = self.measurer.measure(
            name, onnx, self._path(name), resolution=self.resolution,
            params_macs=count_params_macs(model, self.resolution, self.data.channels),
            started=started, kept=kept, detail=detail, onnx_check=check,
        )  # fmt: skip
        return self._record(step, onnx), onnx

    def _fit(
        self, label: str, model: nn.Module, epochs: int, *, lr_scale: float = 1.0,
        seed_offset: int = 0, teacher: Network | None = None, hooks: Any = None,
    ) -> None:  # fmt: skip
        config = replace(self.config, lr=self.config.lr * lr_scale)
        result = fit(
            model, self.data, Fidelity(epochs=epochs), resolution=self.resolution,
            seed=self.seed + seed_offset, config=config,
            distill=self._distillation(teacher),
            hooks=hooks, report=self.clock.reporter(label, epochs),
        )  # fmt: skip
        if result.status == "diverged":
            raise ConfigError(
                f"training diverged ({result.reason}); try a lower learning rate or fewer "
                "compression steps"
            )

    def _distillation(self, teacher: Network | None) -> Distillation | None:
        """Distillation from ``teacher``, fed at its own resolution; None without one."""
        if teacher is None:
            return None
        return Distillation(teacher, resolution=teacher.genotype.resolution)

    # -- the steps -------------------------------------------------------------------------

    def run(self, model: Network, train_seconds: float) -> tuple[Network, bytes | None]:
        """Measure the retrained model, then run the chosen steps; returns the final fp32
        model and the INT8 model (None when not quantized)."""
        opts = self.options
        current = model
        step, onnx = self._measure_fp32(
            "full training", model, time.perf_counter() - train_seconds,
            detail={"epochs": self.epochs},
        )  # fmt: skip
        teacher: Network | None = None
        if opts.distill:
            teacher, info = self.teacher_source()
            current, step, onnx = self._distill(current, step, onnx, teacher, info)
        if opts.prune == "structured":
            current, step, onnx = self._structured(current, teacher)
        elif opts.prune in ("magnitude", "movement"):
            current, step, onnx = self._unstructured(current, teacher)
        int8 = self._int8(current, step, onnx) if opts.quantize == "int8" else None
        self._side_by_side()
        return current, int8

    def _distill(
        self, current: Network, base: Step, base_onnx: bytes, teacher: Network,
        info: dict[str, Any],
    ) -> tuple[Network, Step, bytes]:  # fmt: skip
        started = time.perf_counter()
        self.say(f"distillation: training a new student for {self.epochs} epoch(s)")
        torch.manual_seed(self.seed)
        student = build_model(self.genotype, self.data.channels, self.data.num_classes,
                              self.data.mean, self.data.std)  # fmt: skip
        self._fit("distillation", student, self.epochs, teacher=teacher)
        alpha, temperature = Distillation.alpha, Distillation.temperature
        detail = {
            "teacher": info,
            "alpha": alpha,
            "temperature": temperature,
            "epochs": self.epochs,
            "without": {
                "val_accuracy": base.val_accuracy,
                "holdout_accuracy": base.holdout_accuracy,
                "val_score": base.val_score,
                "holdout_score": base.holdout_score,
            },
        }
        step, onnx = self._measure_fp32("distillation", student, started, detail=detail)
        kept = step.score > base.score  # in the run's metric; a tie keeps the simpler recipe
        if not kept:
            self.steps[-1] = step = replace(step, kept=False)
            self.save(self.steps)
            log.warning(
                "distillation: the student scored %.1f%% on validation (%s), %.1f%% without "
                "a teacher; the model trained without one goes on",
                100 * step.score, self.measurer.metric.label, 100 * base.score,
            )  # fmt: skip
            return current, base, base_onnx
        return student, step, onnx

    def _structured(self, current: Network, teacher: Network | None) -> tuple[Network, Step, bytes]:
        from edgenas.compress import latency_cost, layer_sensitivity, prune_to_target

        opts = self.options
        started = time.perf_counter()
        score = self._scorer()
        example = torch.zeros(1, self.data.channels, self.resolution, self.resolution)
        model = deep_copy(current)
        self.say("structured pruning: sensitivity of each layer")
        name, text = next(iter(opts.targets().items()))
        # ONNX Runtime's kernels run channel counts that are multiples of 8 much faster than
        # odd ones (a model pruned to odd counts can be slower than before): keep them rounded.
        round_to = 8
        sensitivity = layer_sensitivity(model, example, score, round_to=round_to)
        cost, unit = self._cost(name, latency_cost)
        target = parse_target(text, cost(model), name)
        self.say(f"structured pruning: pruning to {name.split('_')[1]} <= {target:.3g} {unit}")
        result = prune_to_target(model, example, cost, target, sensitivity, round_to=round_to)
        before_ft = score(model)
        epochs = finetune_epochs(opts, self.epochs)
        self.say(f"structured pruning: fine-tuning {epochs} epoch(s)")
        self._fit("fine-tuning", model, epochs, lr_scale=0.5, seed_offset=1, teacher=teacher)
        detail = {
            "target": {
                "cost": name.removeprefix("target_"),
                "value": target,
                "unit": unit,
                "given": text,
            },
            "pruning": result.to_json(),
            "sensitivity": sensitivity.to_json(),
            "finetune_epochs": epochs,
            "metric": self.measurer.metric.name,
            "val_score_before_finetune": before_ft,
            "distilled": teacher is not None,
        }
        step, onnx = self._measure_fp32("structured pruning", model, started, detail=detail)
        return model, step, onnx

    def _scorer(self) -> Callable[[nn.Module], float]:
        """The run's metric on (up to) the first SENSITIVITY_IMAGES validation images."""
        index = torch.as_tensor(self.data.splits.val)[:SENSITIVITY_IMAGES]
        x, y = self._images()[index], torch.as_tensor(self.data.labels)[index]
        metric, classes = self.measurer.metric, list(self.measurer.class_names)
        if metric.kind == "accuracy" or not classes:
            return lambda m: evaluate(m, x, y)
        return lambda m: metric.score(evaluate_confusion(m, x, y, len(classes)), classes)

    def _cost(
        self, name: str, latency_cost: Callable[..., Callable[[nn.Module], float]]
    ) -> tuple[Callable[[nn.Module], float], str]:
        threads = self.measurer.threads
        if name == "target_latency":
            return latency_cost(threads=threads), "ms"
        if name == "target_size":
            return (lambda m: len(_export(m)) / 1e6), "MB"
        from edgenas.device import measure_onnx_memory

        baseline: dict[Any, float] = {}

        def memory(m: nn.Module) -> float:
            return measure_onnx_memory(_export(m), threads=threads, baseline_mb=baseline).peak_mb

        return memory, "MB"

    def _unstructured(
        self, current: Network, teacher: Network | None
    ) -> tuple[Network, Step, bytes]:
        from edgenas.compress import (
            GradualMagnitudePruning,
            MovementPruning,
            magnitude_sensitivity,
            sparsity,
        )

        opts = self.options
        started = time.perf_counter()
        model = deep_copy(current)
        score = self._scorer()
        self.say(f"{opts.prune} pruning: sensitivity of each layer to sparsity")
        levels = sorted({0.5, 0.8, 0.9, 0.95, round(opts.sparsity, 3)})
        sensitivity = magnitude_sensitivity(model, score, sparsities=tuple(levels))
        # Less sensitive layers get sparser, so that the whole reaches the target sparsity.
        targets = sensitivity.targets(opts.sparsity)
        method = GradualMagnitudePruning if opts.prune == "magnitude" else MovementPruning
        pruner = method(model, targets)
        epochs = finetune_epochs(opts, self.epochs)
        self.say(f"{opts.prune} pruning to {opts.sparsity:.0%} sparsity over {epochs} epoch(s)")
        self._fit(f"{opts.prune} pruning", model, epochs, lr_scale=0.5, seed_offset=1,
                  teacher=teacher, hooks=pruner)  # fmt: skip
        pruner.finish()
        measured = sparsity(model)
        detail = {
            "method": opts.prune,
            "sparsity_target": opts.sparsity,
            "layer_targets": targets,
            "sensitivity": {
                "unpruned": sensitivity.dense,
                "scores": {
                    name: {f"{k:g}": v for k, v in by.items()}
                    for name, by in sensitivity.scores.items()
                },
            },
            "sparsity": measured,
            "finetune_epochs": epochs,
            "distilled": teacher is not None,
            "note": "ONNX Runtime does not run faster on unstructured zeros; they shrink the "
            "compressed file",
        }
        step, onnx = self._measure_fp32(f"{opts.prune} pruning", model, started, detail=detail)
        return model, step, onnx

    def _int8(self, current: Network, base: Step, fp32: bytes) -> bytes:
        from edgenas.compress import quantization_aware_finetune, quantize_int8

        opts = self.options
        started = time.perf_counter()
        images = self._images()
        train = np.asarray(self.data.splits.train)
        rng = np.random.default_rng(self.seed)
        pick = rng.choice(train, size=min(CALIBRATION_IMAGES, len(train)), replace=False)
        calibration = images[torch.as_tensor(np.sort(pick))].float().div(255.0).numpy()
        self.say(f"int8: post-training quantization, calibrated on {len(pick)} training images")
        int8 = quantize_int8(fp32, calibration)
        val_index = torch.as_tensor(self.data.splits.val)
        # Decided in the run's metric: --max-accuracy-loss is in its points.
        val8 = self.measurer.score(int8, self.resolution, val_index)
        loss = 100 * (base.score - val8)
        detail: dict[str, Any] = {
            "method": "post-training static (ONNX Runtime, QDQ, per-channel weights)",
            "calibration_images": len(pick),
            "metric": self.measurer.metric.name,
            "ptq_val_score": val8,
            "fp32_val_score": base.score,
            "fp32_val_accuracy": base.val_accuracy,
            "max_accuracy_loss_points": opts.max_accuracy_loss,
        }
        if loss > opts.max_accuracy_loss:
            epochs = opts.qat_epochs or max(1, self.epochs // 4)
            self.say(
                f"int8: post-training quantization lost {loss:.1f} points of "
                f"{self.measurer.metric.label} on validation; "
                f"quantization-aware training for {epochs} epoch(s)"
            )
            qat = deep_copy(current)
            self.clock.add(epochs)
            quantization_aware_finetune(
                qat, self.data, epochs=epochs, resolution=self.resolution, seed=self.seed + 2,
                config=replace(self.config, lr=self.config.lr * 0.1),
                report=self.clock.reporter("quantization-aware training", epochs),
            )  # fmt: skip
            qat_int8 = quantize_int8(export_onnx(qat.cpu().eval()), calibration)
            qat_val = self.measurer.score(qat_int8, self.resolution, val_index)
            detail["qat"] = {"epochs": epochs, "val_score": qat_val}
            if qat_val > val8:
                int8, val8 = qat_int8, qat_val
                detail["method"] = "quantization-aware training, then ONNX Runtime QDQ"
            else:
                detail["qat"]["kept"] = False
        holdout = torch.as_tensor(self.data.splits.holdout)[:256]
        check = onnx_agreement(fp32, int8, images[holdout])
        step = self.measurer.measure(
            "int8", int8, self._path("int8"), resolution=self.resolution,
            params_macs=(base.params, base.macs), started=started, detail=detail,
            onnx_check=check,
        )  # fmt: skip
        self._record(step, int8)
        return int8

    def _side_by_side(self) -> None:
        """Time every step's model again, interleaved, so their ratios are fair."""
        if len(self.models) < 2:
            return
        self.say("timing every step's model side by side")
        timed = latency_side_by_side(self.models, threads=self.measurer.threads)
        steps: list[Step] = []
        for step, (median, spread) in zip(self.steps, timed, strict=True):
            step = replace(step, latency_ms=median,
                           detail={**step.detail, "latency_iqr_ms": spread})  # fmt: skip
            if not steps:
                self.measurer.rebase(step)
            steps.append(self.measurer.recheck(step))
        self.steps[:] = steps
        self.save(self.steps)


def _export(model: nn.Module) -> bytes:
    assert isinstance(model, Network)
    return export_onnx(model)
