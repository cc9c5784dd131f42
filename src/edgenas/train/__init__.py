"""Training of candidate networks: fidelity, recipe, batched augmentation, evaluation.

Example:
    >>> from edgenas.train import Fidelity, TrainConfig, fit
    >>> result = fit(model, dataset, Fidelity(epochs=3), resolution=64, seed=0,
    ...              config=TrainConfig(threads=4))  # doctest: +SKIP
    >>> result.status, result.history  # doctest: +SKIP
    ('complete', (0.71, 0.80, 0.84))
"""

from __future__ import annotations

from edgenas.train._augment import augment_batch
from edgenas.train._fidelity import Fidelity
from edgenas.train._metrics import (
    CLASS_WEIGHTS,
    METRIC_CHOICES,
    Metric,
    class_report,
    confusion_matrix,
    loss_class_weights,
    majority_baseline,
)
from edgenas.train._trainer import (
    Distillation,
    SplitIndices,
    StepHooks,
    TrainConfig,
    TrainData,
    TrainResult,
    autocast_dtype,
    build_optimizer,
    evaluate,
    evaluate_confusion,
    fit,
    recalibrate_batchnorm,
    resolve_device,
    split_on_device,
)

__all__ = [
    "CLASS_WEIGHTS",
    "METRIC_CHOICES",
    "Distillation",
    "Fidelity",
    "Metric",
    "SplitIndices",
    "StepHooks",
    "TrainConfig",
    "TrainData",
    "TrainResult",
    "augment_batch",
    "autocast_dtype",
    "build_optimizer",
    "class_report",
    "confusion_matrix",
    "evaluate",
    "evaluate_confusion",
    "fit",
    "loss_class_weights",
    "majority_baseline",
    "recalibrate_batchnorm",
    "resolve_device",
    "split_on_device",
]
