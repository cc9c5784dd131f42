"""Train one candidate at a given fidelity and report validation accuracy after every epoch."""

from __future__ import annotations

import contextlib
import math
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import nn

from edgenas.errors import ConfigError, DataError
from edgenas.train._augment import augment_batch
from edgenas.train._fidelity import Fidelity
from edgenas.train._metrics import CLASS_WEIGHTS, Metric, loss_class_weights

__all__ = [
    "Distillation",
    "SplitIndices",
    "StepHooks",
    "StreamedImages",
    "TrainConfig",
    "TrainData",
    "TrainResult",
    "autocast_dtype",
    "build_optimizer",
    "evaluate",
    "evaluate_confusion",
    "fit",
    "recalibrate_batchnorm",
    "resolve_device",
    "split_on_device",
]

# On CUDA, reading the loss back forces a host-device sync; checking it for NaN only every few
# steps keeps the GPU queue full. On the CPU the check is free and runs every step.
_CUDA_CHECK_EVERY = 32
# On CUDA, forward-only passes (validation, BatchNorm recalibration) run in batches of at least
# this many images to fill the GPU. On the CPU they use the training batch size: larger batches
# spill the activations out of the cache: 256 images of MobileNetV2 at 96 px took 1.6-1.9x
# the time of 64.
_MIN_CUDA_EVAL_BATCH = 256
# Training images used to re-estimate BatchNorm statistics before each validation.
_RECALIBRATE_IMAGES = 512
# Images per host-to-GPU copy when a split is moved to the GPU.
_COPY_CHUNK = 4096
_DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")
_OPTIMIZERS = ("adamw", "sgd")
_PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def _not_int(value: object) -> bool:
    return isinstance(value, bool) or not isinstance(value, int)


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class SplitIndices(Protocol):
    """Index arrays into a dataset; only the two splits training uses are required."""

    @property
    def train(self) -> np.ndarray: ...

    @property
    def val(self) -> np.ndarray: ...


class TrainData(Protocol):
    """What `fit` needs from a dataset (``edgenas.data.ImageDataset`` provides it)."""

    @property
    def num_classes(self) -> int: ...

    @property
    def channels(self) -> int: ...

    @property
    def augment(self) -> tuple[str, ...]:
        """The augmentations the data allows, by name (`augment_batch`'s ``ops``)."""
        ...

    @property
    def labels(self) -> np.ndarray: ...

    @property
    def class_names(self) -> Sequence[str]:
        """A name per class, indexed by label (``--metric recall:CLASS`` names one)."""
        ...

    @property
    def splits(self) -> SplitIndices: ...

    def images(self, resolution: int) -> torch.Tensor:
        """The whole dataset as uint8 ``(N, C, resolution, resolution)``."""
        ...


@dataclass(frozen=True)
class TrainConfig:
    """How candidates are trained, the same for every candidate of a search."""

    # Images per optimizer step.
    batch_size: int = 64
    # Peak learning rate of the one-cycle schedule.
    lr: float = 3e-3
    # Weight decay on weights only (not on biases or norm scales): decoupled for AdamW, L2 for SGD.
    weight_decay: float = 0.05
    # "adamw", or "sgd" (momentum 0.9, Nesterov; it usually wants a learning rate ~10x AdamW's).
    optimizer: str = "adamw"
    # Cross-entropy label smoothing; softens overconfident short-budget training.
    label_smoothing: float = 0.1
    # The augmentations the dataset allows (its ``augment``: flips, turns, shifts, brightness,
    # contrast) during training; False turns them all off.
    augment: bool = True
    # Scales the shift, brightness and contrast ranges; 0 disables them (flips stay).
    augment_strength: float = 1.0
    # torch.set_num_threads during fit; None leaves torch's default.
    threads: int | None = None
    # "auto" (CUDA when available), "cpu", "cuda" or "cuda:N".
    device: str = "auto"
    # Arithmetic of the training steps: "auto" (mixed precision on CUDA, bf16 where the GPU has
    # it, else fp16 with loss scaling; fp32 on the CPU), "fp32", "bf16" or "fp16" (mixed
    # precision under torch.autocast). Validation always runs in fp32, as the exported model does.
    precision: str = "auto"
    # The validation score reported after each epoch (see `Metric`): "accuracy" (top-1),
    # "balanced-accuracy", "macro-f1" or "recall:CLASS".
    metric: str = "accuracy"
    # Weights of the classes in the loss: "none", or "balanced" (rarer classes weigh more, as
    # scikit-learn's "balanced", over the training images used).
    class_weights: str = "none"

    def __post_init__(self) -> None:
        if _not_int(self.batch_size) or self.batch_size < 2:
            # A batch of one breaks BatchNorm in train mode.
            raise ConfigError(
                f"TrainConfig.batch_size must be an integer >= 2, got {self.batch_size!r}"
            )
        if not _finite(self.lr) or self.lr <= 0:
            raise ConfigError(f"TrainConfig.lr must be a number > 0, got {self.lr!r}")
        if not _finite(self.weight_decay) or self.weight_decay < 0:
            raise ConfigError(
                f"TrainConfig.weight_decay must be a number >= 0, got {self.weight_decay!r}"
            )
        if self.optimizer not in _OPTIMIZERS:
            raise ConfigError(
                f"TrainConfig.optimizer must be one of {', '.join(_OPTIMIZERS)}, "
                f"got {self.optimizer!r}"
            )
        if not _finite(self.label_smoothing) or not 0 <= self.label_smoothing < 1:
            raise ConfigError(
                f"TrainConfig.label_smoothing must be in [0, 1), got {self.label_smoothing!r}"
            )
        if not _finite(self.augment_strength) or self.augment_strength < 0:
            raise ConfigError(
                f"TrainConfig.augment_strength must be a number >= 0, got {self.augment_strength!r}"
            )
        if self.threads is not None and (_not_int(self.threads) or self.threads < 1):
            raise ConfigError(
                f"TrainConfig.threads must be None or an integer >= 1, got {self.threads!r}"
            )
        if not isinstance(self.device, str) or not _DEVICE_PATTERN.fullmatch(self.device):
            raise ConfigError(
                f"TrainConfig.device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}"
            )
        if self.precision not in _PRECISIONS:
            raise ConfigError(
                f"TrainConfig.precision must be one of {', '.join(_PRECISIONS)}, "
                f"got {self.precision!r}"
            )
        if not isinstance(self.metric, str):
            raise ConfigError(f"TrainConfig.metric must be text, got {self.metric!r}")
        Metric.parse(self.metric)
        if self.class_weights not in CLASS_WEIGHTS:
            raise ConfigError(
                f"TrainConfig.class_weights must be one of {', '.join(CLASS_WEIGHTS)}, "
                f"got {self.class_weights!r}"
            )


class StepHooks(Protocol):
    """Called around every optimizer step of `fit` (used by pruning schedules).

    ``after_backward`` runs once the gradients are computed and before the optimizer uses
    them; ``after_step`` runs after the optimizer step. ``step`` counts from 0 and ``total`` is
    the number of steps the whole fit will take.
    """

    def after_backward(self, step: int, total: int) -> None: ...

    def after_step(self, step: int, total: int) -> None: ...


@dataclass(frozen=True)
class Distillation:
    """Knowledge distillation (Hinton et al., 2015): the loss is ``(1 - alpha)`` times the
    label-smoothed cross-entropy plus ``alpha * T²`` times the KL divergence between the
    teacher's and the student's softened (temperature ``T``) predictions.

    A teacher that works at another input size than the student (a supernet's largest subnet,
    say) is given ``resolution``: the student's batch is resized to it (bilinear, antialiased)
    before the teacher sees it."""

    teacher: nn.Module  # maps the student's input batch to logits; kept in eval mode
    alpha: float = 0.5
    temperature: float = 4.0
    resolution: int | None = None  # the teacher's input side, when it differs from the student's

    def __post_init__(self) -> None:
        if not _finite(self.alpha) or not 0 <= self.alpha <= 1:
            raise ConfigError(f"Distillation.alpha must be in [0, 1], got {self.alpha!r}")
        if not _finite(self.temperature) or self.temperature <= 0:
            raise ConfigError(
                f"Distillation.temperature must be a number > 0, got {self.temperature!r}"
            )
        if self.resolution is not None and (_not_int(self.resolution) or self.resolution < 1):
            raise ConfigError(
                f"Distillation.resolution must be an integer >= 1 or None, got {self.resolution!r}"
            )

    def loss(
        self, logits: torch.Tensor, inputs: torch.Tensor, hard_loss: torch.Tensor
    ) -> torch.Tensor:
        side = self.resolution
        with torch.no_grad():
            if side is not None and inputs.shape[-2:] != (side, side):
                inputs = nn.functional.interpolate(
                    inputs, size=(side, side), mode="bilinear", antialias=True
                )
            teacher_logits = self.teacher(inputs)
        t = self.temperature
        soft = nn.functional.kl_div(
            nn.functional.log_softmax(logits / t, dim=1),
            nn.functional.log_softmax(teacher_logits / t, dim=1),
            reduction="batchmean",
            log_target=True,
        )
        return (1 - self.alpha) * hard_loss + self.alpha * t * t * soft


@dataclass(frozen=True)
class TrainResult:
    """The outcome of one `fit`: a record, never modified after it is made.

    ``accuracy`` and ``history`` hold the validation score of ``config.metric``: top-1
    accuracy by default, else balanced accuracy, macro F1 or a class's recall (the name stays
    for compatibility). ``top1`` is always top-1 accuracy.
    """

    # Validation score (0..1, of config.metric) after the last completed epoch; None if none.
    accuracy: float | None
    # Validation score after each completed epoch.
    history: tuple[float, ...]
    # Epochs completed (one per entry of history).
    epochs: int
    # Wall-clock seconds of the whole fit, data transfer included.
    seconds: float
    # "complete", "stopped" (the report callback asked to stop) or "diverged" (loss NaN/inf).
    status: str
    # Why training ended early, in words; None when complete.
    reason: str | None
    # Optimizer steps taken.
    steps: int = 0
    # Training images used (after the fidelity's data_fraction).
    train_images: int = 0
    # Top-1 validation accuracy after the last completed epoch; None if none completed.
    top1: float | None = None
    # The last completed epoch's validation confusion matrix (rows: true class, columns:
    # predicted class); None if none completed.
    confusion: tuple[tuple[int, ...], ...] | None = None


def resolve_device(name: str) -> torch.device:
    """Turn "auto", "cpu", "cuda" or "cuda:N" into a device that is present on this machine.

    Raises:
        ConfigError: the name is unknown, or CUDA is asked for but not available.
    """
    if not isinstance(name, str) or not _DEVICE_PATTERN.fullmatch(name):
        raise ConfigError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {name!r} was asked for, but CUDA is not available here (no GPU, or a "
                f"CPU-only PyTorch build); use device 'cpu' or 'auto'"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ConfigError(
                f"device {name!r} was asked for, but this machine has {count} CUDA device(s) "
                f"(cuda:0 to cuda:{count - 1})"
            )
    return device


def evaluate(
    model: nn.Module,
    images_uint8: torch.Tensor,
    labels: torch.Tensor | np.ndarray,
    *,
    batch_size: int | None = None,
    device: torch.device | str | None = None,
) -> float:
    """Top-1 accuracy (0..1) of ``model`` on uint8 images ``(N, C, H, W)``.

    Images are moved to the device batch by batch and scaled to [0, 1] as in training. The
    model is moved to ``device`` if one is given (a name as in `resolve_device`); by default it
    stays where it is. Its train/eval mode and memory format are restored afterwards.
    ``batch_size`` defaults to what runs fastest on the device (64 on the CPU, 256 on CUDA).
    """
    targets, batch_size, target = _evaluation(model, images_uint8, labels, batch_size, device)
    was_training = model.training
    try:
        with _channels_last(_memory_format(target), model):
            return _accuracy(model, images_uint8, targets, batch_size, target)
    finally:
        model.train(was_training)


def evaluate_confusion(
    model: nn.Module,
    images_uint8: torch.Tensor,
    labels: torch.Tensor | np.ndarray,
    classes: int,
    *,
    batch_size: int | None = None,
    device: torch.device | str | None = None,
    rows: np.ndarray | torch.Tensor | None = None,
) -> np.ndarray:
    """The confusion matrix ``(classes, classes)`` of ``model`` on uint8 images
    ``(N, C, H, W)``: row = true class, column = predicted class. Any `Metric` and
    `class_report` are computed from it.

    Batching, the device and the model's mode and memory format are as in `evaluate`; the
    counts stay on the device until the end. With ``rows``, only those images are scored
    (``labels`` are theirs), read batch by batch: a split of a memory-mapped dataset is then
    never copied whole.

    Example:
        >>> confusion = evaluate_confusion(model, images, labels, 2)  # doctest: +SKIP
        >>> Metric.parse("balanced-accuracy").score(confusion, ["ok", "defect"])  # doctest: +SKIP
    """
    if _not_int(classes) or classes < 1:
        raise ValueError(f"classes must be an integer >= 1, got {classes!r}")
    source: torch.Tensor | StreamedImages = images_uint8
    if rows is not None:
        index = torch.as_tensor(np.asarray(rows), dtype=torch.long)
        source = StreamedImages(images_uint8, index, torch.device("cpu"))
    targets, batch_size, target = _evaluation(model, source, labels, batch_size, device)
    if int(targets.min()) < 0 or int(targets.max()) >= classes:
        raise ValueError(
            f"labels must lie in [0, {classes}), found {int(targets.min())}..{int(targets.max())}"
        )
    was_training = model.training
    try:
        with _channels_last(_memory_format(target), model):
            return _confusion(model, source, targets, batch_size, target, classes)
    finally:
        model.train(was_training)


def _evaluation(
    model: nn.Module,
    images_uint8: torch.Tensor | StreamedImages,
    labels: torch.Tensor | np.ndarray,
    batch_size: int | None,
    device: torch.device | str | None,
) -> tuple[torch.Tensor, int, torch.device]:
    """Check the arguments of `evaluate`; returns the labels, batch size and device to use
    (the model moved there when a device is given)."""
    if images_uint8.dtype != torch.uint8 or images_uint8.ndim != 4:
        raise ValueError(
            f"evaluate expects uint8 images of shape (N, C, H, W), got dtype "
            f"{images_uint8.dtype} and shape {tuple(images_uint8.shape)}"
        )
    targets = torch.as_tensor(labels)
    if targets.shape != (images_uint8.shape[0],):
        raise ValueError(
            f"evaluate needs one label per image: {images_uint8.shape[0]} images, "
            f"labels of shape {tuple(targets.shape)}"
        )
    if images_uint8.shape[0] == 0:
        raise ValueError("evaluate needs at least one image, got none")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if device is None:
        target = _model_device(model)
    else:
        target = resolve_device(device) if isinstance(device, str) else torch.device(device)
        model.to(target)
    batch_size = batch_size or _eval_batch_size(target, TrainConfig.batch_size)
    return targets.long(), batch_size, target


def fit(
    model: nn.Module,
    data: TrainData,
    fidelity: Fidelity,
    *,
    resolution: int,
    seed: int,
    config: TrainConfig = TrainConfig(),  # frozen, so one shared default is safe
    report: Callable[[int, float], bool] | None = None,
    distill: Distillation | None = None,
    hooks: StepHooks | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``data``'s training split and validate after every epoch.

    Recipe: AdamW (or SGD with Nesterov momentum, ``config.optimizer``), a one-cycle learning-rate schedule over all steps, label-smoothed
    cross-entropy, batched augmentation. The training subset (``fidelity.data_fraction`` of the
    training split, drawn per class) and the validation split are read batch by batch from
    ``data.images`` (a memory-mapped dataset is never copied whole); on a GPU with room they
    are moved there once (`split_on_device`). Batches are shuffled per epoch. A final batch of a single image is dropped, since
    BatchNorm cannot train on it. Before each validation, BatchNorm statistics are re-estimated
    on up to 512 training images with the current weights (``torch.optim.swa_utils.update_bn``).

    Speed: on CUDA the model (and a distillation teacher) train in channels-last memory format,
    which cuDNN runs fastest, and are put back in the standard format on return, so the weights,
    ``state_dict`` and ONNX export are as before (on the CPU they stay NCHW). The
    optimizer is the fused (multi-tensor) implementation. On CUDA, training steps run in mixed
    precision (``config.precision``). The model is left on the device in eval mode.

    Args:
        model: maps float images in [0, 1] (normalisation is the model's own) to logits.
        data: the dataset (see `TrainData`).
        fidelity: epochs and data fraction; its resolution, if set, must equal ``resolution``.
        resolution: the input side length to train at, usually
            ``fidelity.resolve(genotype.resolution)``.
        seed: a non-negative integer; it seeds torch's global generator (dropout and the like),
            the training subsample, the shuffling and the augmentation. The model's
            initialisation is the caller's: given the same initial weights and seed, two fits
            on the CPU give the same history.
        config: optimisation settings, device and threads.
        report: called after each epoch as ``report(epoch, score)`` with epoch counted
            from 1 and the validation score of ``config.metric`` (top-1 accuracy by default);
            returning False stops training at once (status "stopped").
        distill: a teacher and how much its softened predictions weigh in the loss; the
            teacher sees the same (augmented) batch as the student.
        hooks: called after each backward pass and each optimizer step (see `StepHooks`).

    Returns:
        A `TrainResult`. A loss that becomes NaN or infinite ends training with status
        "diverged" and the accuracy of the last completed epoch (None if there was none). On
        CUDA the loss is checked every few steps rather than every step.

    Raises:
        ConfigError: bad seed, resolution or device.
        DataError: the dataset does not fit the description in `TrainData`.
    """
    started = time.perf_counter()
    if _not_int(seed) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    if _not_int(resolution) or resolution < 1:
        raise ConfigError(f"resolution must be an integer >= 1, got {resolution!r}")
    if fidelity.resolution is not None and fidelity.resolution != resolution:
        raise ConfigError(
            f"fit was called with resolution={resolution} but the fidelity asks for "
            f"{fidelity.resolution}; pass resolution=fidelity.resolve(native_resolution)"
        )
    previous_threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    teacher = () if distill is None else (distill.teacher,)
    memory_format = _memory_format(resolve_device(config.device))
    try:
        with _channels_last(memory_format, model, *teacher):
            return _fit(
                model, data, fidelity, resolution, seed, config, report, started, distill, hooks
            )
    finally:
        if config.threads is not None:
            torch.set_num_threads(previous_threads)


def _fit(
    model: nn.Module,
    data: TrainData,
    fidelity: Fidelity,
    resolution: int,
    seed: int,
    config: TrainConfig,
    report: Callable[[int, float], bool] | None,
    started: float,
    distill: Distillation | None = None,
    hooks: StepHooks | None = None,
) -> TrainResult:
    torch.manual_seed(seed)
    # Independent streams per purpose, so changing e.g. the augmentation does not reshuffle data.
    subsample_seed, shuffle_seed, augment_seed = (
        int(s) for s in np.random.SeedSequence(seed).generate_state(3)
    )
    device = resolve_device(config.device)

    labels = _labels(data)
    class_names = _class_names(data)
    metric = Metric.parse(config.metric)
    metric.check_classes(class_names)
    confusion = np.zeros((data.num_classes, data.num_classes), dtype=np.int64)
    images = data.images(resolution)
    _check_images(images, data, resolution, len(labels))
    train_index = _split(data.splits.train, "train", len(labels))
    val_index = _split(data.splits.val, "val", len(labels))
    train_index = _stratified_subsample(train_index, labels, fidelity.data_fraction, subsample_seed)
    if len(train_index) < 2:
        raise DataError(
            f"the training split has {len(train_index)} image(s) after taking "
            f"data_fraction={fidelity.data_fraction}; at least 2 are needed to train"
        )
    if len(val_index) == 0:
        raise DataError("the validation split is empty; give it some images to score candidates")

    x_train, y_train = split_on_device(images, labels, train_index, device)
    x_val, y_val = split_on_device(images, labels, val_index, device)
    model.to(device)
    if distill is not None:
        distill.teacher.to(device).eval()

    count = len(train_index)
    batch_size = min(config.batch_size, count)
    # Drop a last batch of one image (BatchNorm cannot train on it); keep any larger remainder.
    steps_per_epoch = count // batch_size + (1 if count % batch_size > 1 else 0)
    optimizer = build_optimizer(model, config)
    amp_dtype = autocast_dtype(config.precision, device)
    # fp16 needs loss scaling to keep small gradients from underflowing; bf16 does not.
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    total_steps = fidelity.epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=total_steps
    )
    loss_fn = _loss(config, labels[train_index], data.num_classes, device)
    shuffle_generator = torch.Generator().manual_seed(shuffle_seed)
    augment_generator = torch.Generator(device=device).manual_seed(augment_seed)
    check_every = 1 if device.type == "cpu" else _CUDA_CHECK_EVERY
    eval_batch = _eval_batch_size(device, config.batch_size)

    history: list[float] = []
    steps = 0
    status, reason = "complete", None
    for epoch in range(1, fidelity.epochs + 1):
        model.train()
        order = torch.randperm(count, generator=shuffle_generator).to(device, non_blocking=True)
        pending: list[torch.Tensor] = []  # losses not yet checked for NaN/inf
        for step in range(steps_per_epoch):
            index = order[step * batch_size : (step + 1) * batch_size]
            inputs = x_train[index].float().div_(255.0)
            if config.augment:
                inputs = augment_batch(
                    inputs,
                    augment_generator,
                    ops=data.augment,
                    strength=config.augment_strength,
                )
            inputs = inputs.contiguous(memory_format=_memory_format(device))
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = model(inputs)
                loss = loss_fn(logits, y_train[index])
                if distill is not None:
                    loss = distill.loss(logits, inputs, loss)
            pending.append(loss.detach())
            if len(pending) >= check_every or step == steps_per_epoch - 1:
                bad = _first_nonfinite(pending)
                if bad is not None:
                    value, offset = bad
                    at_step = step + 1 - len(pending) + offset + 1
                    status = "diverged"
                    reason = f"loss became {value} at epoch {epoch} step {at_step}"
                    break
                pending.clear()
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if hooks is not None:
                scaler.unscale_(optimizer)  # hooks see the true gradients
                hooks.after_backward(steps, total_steps)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            if hooks is not None:
                hooks.after_step(steps, total_steps)
            steps += 1
        if status == "diverged":
            break
        _recalibrate_batchnorm(model, x_train, eval_batch)
        confusion = _confusion(model, x_val, y_val, eval_batch, device, data.num_classes)
        accuracy = metric.score(confusion, class_names)
        history.append(accuracy)
        if report is not None and not report(epoch, accuracy):
            status = "stopped"
            reason = f"the report callback asked to stop after epoch {epoch}"
            break

    model.eval()
    return TrainResult(
        accuracy=history[-1] if history else None,
        history=tuple(history),
        epochs=len(history),
        seconds=time.perf_counter() - started,
        status=status,
        reason=reason,
        steps=steps,
        train_images=count,
        top1=float(np.trace(confusion)) / int(confusion.sum()) if history else None,
        confusion=tuple(tuple(int(n) for n in row) for row in confusion) if history else None,
    )


def recalibrate_batchnorm(
    model: nn.Module,
    images_uint8: torch.Tensor,
    *,
    batch_size: int | None = None,
    max_images: int = _RECALIBRATE_IMAGES,
) -> None:
    """Re-estimate ``model``'s BatchNorm statistics on the first ``max_images`` of the uint8
    images ``(N, C, H, W)`` (on the model's device), leaving the weights as they are.

    A network whose weights come from elsewhere (a supernet's slices, a short training) scores
    at chance with running statistics that belong to other weights; averaging them afresh makes
    it comparable to a network trained on its own.
    """
    device = _model_device(model)
    batch = batch_size or _eval_batch_size(device, TrainConfig.batch_size)
    _recalibrate_batchnorm(model, images_uint8[:max_images].to(device), batch, max_images)


def _recalibrate_batchnorm(
    model: nn.Module,
    x_train: torch.Tensor | StreamedImages,
    batch_size: int,
    max_images: int = _RECALIBRATE_IMAGES,
) -> None:
    """Re-estimate BatchNorm statistics on training images with the current weights.

    After a few dozen steps the running averages still remember the random initial weights, and a
    short-trained candidate then scores at chance in eval mode though it has learnt. Averaging
    the statistics afresh (as Once-for-All does for its subnets) makes short trainings comparable.
    """
    count = min(len(x_train), max_images)
    batches = (
        _as_input(x_train[start : min(start + batch_size, count)], x_train.device)
        for start in range(0, count, batch_size)
    )
    torch.optim.swa_utils.update_bn(batches, model)


def _scored_batches(
    model: nn.Module,
    images: torch.Tensor | StreamedImages,
    labels: torch.Tensor,
    batch_size: int,
    device: torch.device,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(logits, true classes) of each batch, on the device; iterate under inference mode."""
    model.eval()
    for start in range(0, images.shape[0], batch_size):
        batch = images[start : start + batch_size].to(device, non_blocking=True)
        target = labels[start : start + batch_size].to(device, non_blocking=True)
        yield model(_as_input(batch, device)), target


def _accuracy(
    model: nn.Module,
    images: torch.Tensor | StreamedImages,
    labels: torch.Tensor,
    batch_size: int,
    device: torch.device,
) -> float:
    """Top-1 accuracy; the count stays on the device until the end to avoid a sync per batch."""
    correct = torch.zeros((), dtype=torch.long, device=device)
    with torch.inference_mode():
        for logits, target in _scored_batches(model, images, labels, batch_size, device):
            correct += (logits.argmax(dim=1) == target).sum()
    return int(correct.item()) / images.shape[0]


def _confusion(
    model: nn.Module,
    images: torch.Tensor | StreamedImages,
    labels: torch.Tensor,
    batch_size: int,
    device: torch.device,
    classes: int,
) -> np.ndarray:
    """The confusion matrix (rows: true class); counted on the device and read back once.

    ``index_add_`` rather than ``bincount``, which on CUDA reads the largest value back (a
    sync per batch) to size its output.
    """
    counts = torch.zeros(classes * classes, dtype=torch.long, device=device)
    with torch.inference_mode():
        for logits, target in _scored_batches(model, images, labels, batch_size, device):
            if logits.shape[1] != classes:
                raise ValueError(
                    f"the model gives {logits.shape[1]} outputs per image, the data has "
                    f"{classes} classes"
                )
            cells = target * classes + logits.argmax(dim=1)
            counts.index_add_(0, cells, torch.ones_like(cells))
    return counts.view(classes, classes).cpu().numpy()


def _loss(config: TrainConfig, labels: np.ndarray, classes: int, device: torch.device) -> nn.Module:
    """Label-smoothed cross-entropy, its classes weighted as ``config.class_weights`` says
    (over ``labels``, those of the training images used)."""
    weights = loss_class_weights(labels, classes, config.class_weights)
    weight = None if weights is None else torch.tensor(weights, dtype=torch.float32, device=device)
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=config.label_smoothing)


def _class_names(data: TrainData) -> list[str]:
    """The data's class names; a dataset made before they were asked for gets numbers."""
    names = getattr(data, "class_names", None)
    if names is None:
        return [str(c) for c in range(data.num_classes)]
    return [str(n) for n in names]


def _as_input(images_uint8: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 pixels to the float [0, 1] batch the model takes, in the device's memory format."""
    return images_uint8.float().div_(255.0).contiguous(memory_format=_memory_format(device))


def _memory_format(device: torch.device) -> torch.memory_format:
    """Channels-last on CUDA (what cuDNN's tensor-core kernels want), NCHW on the CPU.

    On the CPU, channels-last made a training step of MobileNetV2 at 96 px take 0.65x the time,
    but with PyTorch 2.13 the oneDNN kernels corrupted the heap (a crash) while training some
    edge-space networks in that format, so the CPU keeps NCHW until the cause is isolated.
    """
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format


@contextlib.contextmanager
def _channels_last(memory_format: torch.memory_format, *modules: nn.Module) -> Iterator[None]:
    """Hold the modules' 4-D weights in ``memory_format`` inside the block, NCHW after it.

    The parameters stay the same objects, so optimizers and pruning hooks made before keep
    working.
    """
    if memory_format == torch.contiguous_format:
        yield
        return
    # Module.to takes memory_format at run time, though its type stubs leave it out.
    for module in modules:
        module.to(memory_format=memory_format)  # type: ignore[call-overload]
    try:
        yield
    finally:
        for module in modules:
            module.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]


def _eval_batch_size(device: torch.device, train_batch: int) -> int:
    return max(train_batch, _MIN_CUDA_EVAL_BATCH) if device.type == "cuda" else train_batch


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The dtype training runs in under autocast for ``precision`` (a `TrainConfig` value) on
    ``device``, or None for plain fp32."""
    if precision == "auto":
        if device.type != "cuda":
            return None  # bf16 on the CPU ran slower than fp32 without AMX units
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def _first_nonfinite(losses: list[torch.Tensor]) -> tuple[float, int] | None:
    """The first NaN/inf loss and its position in ``losses``, or None if all are finite."""
    stacked = torch.stack(losses)
    finite = torch.isfinite(stacked)
    if bool(finite.all()):
        return None
    position = int((~finite).nonzero()[0, 0])
    return float(stacked[position]), position


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer of ``config`` (fused AdamW or Nesterov SGD) over ``model``'s parameters,
    with weight decay on weights only."""
    groups = _param_groups(model, config.weight_decay)
    # The fused kernels update all parameters in one pass instead of a Python loop over them;
    # on a CPU that is a few percent of a small network's step (BENCHMARKS.md, trainer speed).
    if config.optimizer == "sgd":
        # Nesterov momentum: the usual SGD recipe for small convolutional networks.
        return torch.optim.SGD(
            groups,
            lr=config.lr,
            momentum=0.9,
            nesterov=True,
            weight_decay=config.weight_decay,
            fused=True,
        )
    return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay, fused=True)


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, object]]:
    """Decay weight matrices and kernels only: decaying biases and norm scales hurts small nets."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _labels(data: TrainData) -> np.ndarray:
    labels = np.asarray(data.labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"dataset labels must be a 1-D integer array, got dtype {labels.dtype} and "
            f"shape {labels.shape}"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= data.num_classes):
        raise DataError(
            f"dataset labels must lie in [0, {data.num_classes}) (num_classes), found "
            f"{labels.min()}..{labels.max()}"
        )
    return labels.astype(np.int64, copy=False)


def _check_images(images: torch.Tensor, data: TrainData, resolution: int, count: int) -> None:
    expected = (count, data.channels, resolution, resolution)
    if images.dtype != torch.uint8 or tuple(images.shape) != expected:
        raise DataError(
            f"dataset.images({resolution}) must give uint8 images of shape {expected} "
            f"(one per label), got dtype {images.dtype} and shape {tuple(images.shape)}"
        )


def _split(index: np.ndarray, name: str, count: int) -> np.ndarray:
    index = np.asarray(index)
    if index.ndim != 1 or (index.size and not np.issubdtype(index.dtype, np.integer)):
        raise DataError(f"the {name} split must be a 1-D integer index array, got {index.dtype}")
    if index.size and (index.min() < 0 or index.max() >= count):
        raise DataError(
            f"the {name} split indexes images {index.min()}..{index.max()}, but the dataset "
            f"has {count}"
        )
    return index.astype(np.int64, copy=False)


def _stratified_subsample(
    index: np.ndarray, labels: np.ndarray, fraction: float, seed: int
) -> np.ndarray:
    """Keep ``fraction`` of each class's images (at least one per class present), in order."""
    if fraction >= 1.0:
        return index
    rng = np.random.default_rng(seed)
    split_labels = labels[index]
    kept = [
        rng.choice(members, size=max(1, round(len(members) * fraction)), replace=False)
        for members in (index[split_labels == c] for c in np.unique(split_labels))
    ]
    return np.sort(np.concatenate(kept)) if kept else index


def split_on_device(
    images: torch.Tensor, labels: np.ndarray, index: np.ndarray, device: torch.device
) -> tuple[torch.Tensor | StreamedImages, torch.Tensor]:
    """A split's images and labels for training or validation on ``device``.

    On the CPU the images are read batch by batch from ``images``, never copied as a whole: a
    large dataset memory-maps them from its decode cache, so no process then owns a copy of
    the split, whatever the data's size; and numpy's gather is faster than torch's indexing
    of uint8 tensors, so small data trains faster this way too (BENCHMARKS.md, factory
    scale). On a GPU with room for the split it is copied there once, in chunks so the host
    never holds a second copy of it; else it too is read batch by batch.
    """
    targets = torch.from_numpy(labels[index]).to(device)
    rows = torch.from_numpy(index)
    if device.type == "cuda":
        size = len(index) * (images[0].numel() if len(images) else 0)
        free, _ = torch.cuda.mem_get_info(device)
        if size <= free // 2:
            subset = torch.empty((len(index), *images.shape[1:]), dtype=images.dtype, device=device)
            array = images.numpy()
            for start in range(0, len(index), _COPY_CHUNK):
                part = torch.from_numpy(array[index[start : start + _COPY_CHUNK]]).pin_memory()
                subset[start : start + len(part)].copy_(part, non_blocking=True)
            return subset, targets
    return StreamedImages(images, rows, device), targets


class StreamedImages:
    """Rows of an image tensor read batch by batch (gathered on the host, then moved).

    Acts where `fit` uses a split's tensor: ``len``, ``shape``, ``device`` and indexing by a
    slice or by positions (a tensor on any device) give uint8 images on ``device``.
    """

    def __init__(self, images: torch.Tensor, rows: torch.Tensor, device: torch.device) -> None:
        self.images = images
        self._array = images.numpy()  # shares the memory (a mapped file stays mapped)
        self._rows = rows.numpy()
        self.device = device

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self._rows), *self.images.shape[1:]))

    @property
    def dtype(self) -> torch.dtype:
        return self.images.dtype

    @property
    def ndim(self) -> int:
        return self.images.ndim

    def __getitem__(self, key: slice | torch.Tensor) -> torch.Tensor:
        rows = self._rows[key] if isinstance(key, slice) else self._rows[key.cpu().numpy()]
        # numpy's fancy indexing gathers uint8 rows far faster than torch's indexing.
        batch = torch.from_numpy(self._array[rows])
        if self.device.type == "cuda":
            return batch.pin_memory().to(self.device, non_blocking=True)
        return batch


def _model_device(model: nn.Module) -> torch.device:
    for parameter in model.parameters():
        return parameter.device
    for buffer in model.buffers():
        return buffer.device
    return torch.device("cpu")
