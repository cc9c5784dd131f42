"""INT8 post-training quantization with ONNX Runtime, its accuracy, and a QAT fallback.

`quantize_int8` turns an fp32 ONNX export into a QDQ model that ONNX Runtime's CPU provider
runs with integer kernels (``QLinearConv``, ``QLinearAdd``, ...): per-channel symmetric int8
weights, per-tensor asymmetric uint8 activations, ranges calibrated on training images.
`onnx_accuracy` scores any ONNX model the way `edgenas.train.evaluate` scores a PyTorch one,
so fp32 and int8 numbers are comparable. When post-training quantization loses too much,
`quantization_aware_finetune` fine-tunes the PyTorch model under simulated INT8 and hands it
back as a plain fp32 network for `quantize_int8`.
"""

from __future__ import annotations

import contextlib
import io
import math
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from edgenas.errors import ConfigError

if TYPE_CHECKING:
    from edgenas.arch import Network
    from edgenas.train import TrainConfig, TrainData, TrainResult

__all__ = [
    "CALIBRATION_METHODS",
    "onnx_accuracy",
    "onnx_logits",
    "quantization_aware_finetune",
    "quantize_int8",
]

#: Calibration methods `quantize_int8` accepts, by name.
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
# Images per calibration run: enough to keep ORT busy, small enough for the augmented model's
# intermediate outputs (every tensor of the network) to stay modest in memory.
_CALIBRATION_BATCH = 64
# The weight range ORT uses for symmetric int8 (QuantType.QInt8 with WeightSymmetric).
_WEIGHT_QMIN, _WEIGHT_QMAX = -127, 127
# The activation range ORT uses for asymmetric uint8 (QuantType.QUInt8).
_ACT_QMIN, _ACT_QMAX = 0, 255
# Smoothing of the moving-average activation observers during QAT (as torch.ao's default).
_OBSERVER_MOMENTUM = 0.01


def quantize_int8(
    model_fp32: bytes,
    calibration: np.ndarray,
    *,
    per_channel: bool = True,
    method: str = "minmax",
) -> bytes:
    """Quantize an fp32 ONNX model to INT8 (QDQ format) with ONNX Runtime's static quantizer.

    The model is first pre-processed (shape inference and ORT's basic graph optimisations, which
    fold BatchNorm into the convolutions) so the quantizer sees the graph the runtime will run.
    Activations become uint8 with an asymmetric per-tensor range calibrated on ``calibration``;
    weights become int8, symmetric, one scale per output channel (``per_channel``), 8 bits wide
    (``reduce_range=False``).

    Why U8S8: ORT's x86 integer kernels multiply unsigned activations by signed weights (the
    VNNI ``vpdpbusd`` instruction, or ``vpmaddubsw`` on plain AVX2). Measured with ORT 1.32, one
    thread, 64×64 inputs on a Xeon with AVX-512 VNNI: U8S8 runs mobilenetv2 1.45-1.5×,
    resnet:0.5 2.8× and vgg:0.5 2.9× faster than fp32, while S8S8 activations leave the residual
    ``Add`` nodes and the convolutions next to them as fp32 between Dequantize/Quantize pairs
    and end up slower than fp32 (0.65× and 0.9×). ``reduce_range`` (7-bit weights) changed
    neither speed nor accuracy measurably on that VNNI CPU; it is meant for AVX2 CPUs without
    VNNI, whose 16-bit intermediate sums can saturate, so deploying to one of those may want
    it. Per-tensor weights are up to ~10% faster on depthwise-heavy networks but agreed less
    often with fp32's predictions and lost ~1 accuracy point on two of three briefly trained
    networks, so per-channel is the default.

    Args:
        model_fp32: a serialized fp32 ONNX model with one float image input ``(N, C, H, W)``,
            such as `edgenas.arch.export_onnx` writes.
        calibration: float32 images ``(N, C, H, W)`` in [0, 1], the model's input as in
            training; a few hundred training images are plenty. Never the evaluation images.
        per_channel: one weight scale per output channel (more accurate for small, unevenly
            scaled convolutions such as depthwise ones) rather than one per tensor.
        method: how activation ranges are chosen from the calibration outputs: ``minmax``
            (the observed extremes), ``entropy`` (KL-divergence optimal clipping) or
            ``percentile`` (the 99.999th percentile of the absolute values).

    Returns:
        The serialized quantized model (input and output names as in ``model_fp32``).

    Raises:
        ConfigError: ``model_fp32`` is not an ONNX model with one float image input,
            ``calibration`` has the wrong type, dtype, shape or value range, or ``method`` is
            unknown.
    """
    from onnxruntime.quantization import QuantType

    return _quantize(
        model_fp32,
        calibration,
        per_channel=per_channel,
        method=method,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        reduce_range=False,
    )


def _quantize(
    model_fp32: bytes,
    calibration: np.ndarray,
    *,
    per_channel: bool,
    method: str,
    activation_type: Any,
    weight_type: Any,
    reduce_range: bool,
    extra_options: dict[str, Any] | None = None,
) -> bytes:
    """`quantize_int8` with the data types and options open (for measuring alternatives)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    if method not in methods:
        raise ConfigError(
            f"quantize_int8 method must be one of {', '.join(CALIBRATION_METHODS)}, got {method!r}"
        )
    if not isinstance(per_channel, bool):
        raise ConfigError(f"quantize_int8 per_channel must be True or False, got {per_channel!r}")
    proto = _load_model(model_fp32)
    input_name, input_shape = _image_input(proto)
    batches = _check_calibration(calibration, input_shape)
    options = {"WeightSymmetric": True, "ActivationSymmetric": False, **(extra_options or {})}
    with tempfile.TemporaryDirectory(prefix="edgenas-quantize-") as tmp:
        folder = Path(tmp)
        source, prepared, output = folder / "fp32.onnx", folder / "pre.onnx", folder / "int8.onnx"
        source.write_bytes(model_fp32)
        quant_pre_process(str(source), str(prepared))
        # The histogram calibrators print their progress; the caller has nothing to do with it.
        with contextlib.redirect_stdout(io.StringIO()):
            quantize_static(
                str(prepared),
                str(output),
                _Batches(input_name, batches),
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                reduce_range=reduce_range,
                activation_type=activation_type,
                weight_type=weight_type,
                calibrate_method=methods[method],
                extra_options=options,
            )
        return output.read_bytes()


class _Batches:
    """ORT's ``CalibrationDataReader`` protocol over a list of image batches."""

    def __init__(self, input_name: str, batches: list[np.ndarray]) -> None:
        self._name = input_name
        self._batches = batches
        self._iter: Iterator[np.ndarray] = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._iter, None)
        return None if batch is None else {self._name: batch}

    def rewind(self) -> None:
        self._iter = iter(self._batches)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return ({self._name: b} for b in self._batches)

    def __len__(self) -> int:
        return len(self._batches)


def _load_model(model: bytes) -> Any:
    import onnx

    if not isinstance(model, (bytes, bytearray)):
        raise ConfigError(
            f"the model must be a serialized ONNX model (bytes, as export_onnx returns), got "
            f"{type(model).__name__}"
        )
    try:
        proto = onnx.load_from_string(bytes(model))
    except Exception as error:  # protobuf raises its own DecodeError
        raise ConfigError(f"the model bytes are not an ONNX model: {error}") from error
    if not proto.graph.node:
        raise ConfigError("the model bytes are not an ONNX model: the graph has no nodes")
    return proto


def _image_input(proto: Any) -> tuple[str, tuple[int | None, ...]]:
    """The name and shape (None for symbolic dimensions) of the model's only graph input."""
    import onnx

    initializers = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ConfigError(
            f"quantize_int8 needs a model with one image input, this one has {len(inputs)}: "
            f"{', '.join(i.name for i in inputs) or 'none'}"
        )
    tensor = inputs[0].type.tensor_type
    if tensor.elem_type != onnx.TensorProto.FLOAT:
        raise ConfigError(
            f"quantize_int8 needs an fp32 model; input {inputs[0].name!r} has element type "
            f"{onnx.TensorProto.DataType.Name(tensor.elem_type)}"
        )
    shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim)
    return inputs[0].name, shape


def _check_calibration(
    calibration: object, input_shape: tuple[int | None, ...]
) -> list[np.ndarray]:
    """Validate the calibration images and cut them into batches."""
    if not isinstance(calibration, np.ndarray):
        raise ConfigError(
            f"calibration must be a NumPy float32 array of images (N, C, H, W) in [0, 1], got "
            f"{type(calibration).__name__}; pass e.g. images.numpy().astype(np.float32) / 255"
        )
    if calibration.dtype != np.float32:
        hint = " (uint8 pixels: divide by 255 first)" if calibration.dtype == np.uint8 else ""
        raise ConfigError(
            f"calibration must have dtype float32, got {calibration.dtype}{hint}; pass "
            f"calibration.astype(np.float32)"
        )
    if calibration.ndim != 4 or calibration.shape[0] == 0:
        raise ConfigError(
            f"calibration must hold at least one image, shaped (N, C, H, W), got shape "
            f"{calibration.shape}"
        )
    expected = input_shape[1:]
    if len(input_shape) != 4 or any(
        e is not None and e != got for e, got in zip(expected, calibration.shape[1:], strict=True)
    ):
        wanted = "(N, " + ", ".join("?" if e is None else str(e) for e in expected) + ")"
        raise ConfigError(
            f"calibration images have shape {calibration.shape}, but the model's input takes "
            f"{wanted}; resize the images to the model's resolution and channel count"
        )
    low, high = float(calibration.min()), float(calibration.max())
    if not (math.isfinite(low) and math.isfinite(high)) or low < 0.0 or high > 1.0:
        raise ConfigError(
            f"calibration values must be finite and lie in [0, 1] (pixels / 255, as the "
            f"models take them), got {low:g}..{high:g}"
        )
    return [
        np.ascontiguousarray(calibration[start : start + _CALIBRATION_BATCH])
        for start in range(0, calibration.shape[0], _CALIBRATION_BATCH)
    ]


def onnx_logits(
    model: bytes, images: np.ndarray, *, threads: int = 1, batch_size: int = 256
) -> np.ndarray:
    """Run an ONNX model with ONNX Runtime's CPU provider on float images, batch by batch.

    Args:
        model: a serialized ONNX model with one image input.
        images: float32 ``(N, C, H, W)`` in the model's input scale ([0, 1] for edgenas models).
        threads: intra-op threads of the session (`edgenas.device.make_session`).
        batch_size: images per run.

    Returns:
        The first output, float32 ``(N, classes)``.
    """
    images = np.asarray(images)
    if images.dtype != np.float32 or images.ndim != 4 or images.shape[0] == 0:
        raise ConfigError(
            f"onnx_logits expects float32 images (N, C, H, W) with N >= 1, got dtype "
            f"{images.dtype} and shape {images.shape}"
        )
    return np.concatenate(list(_run(model, images, threads, batch_size, _identity)))


def onnx_accuracy(
    model: bytes,
    images_uint8: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    *,
    threads: int = 1,
    batch_size: int = 256,
) -> float:
    """Top-1 accuracy (0..1) of an ONNX model on uint8 images ``(N, C, H, W)``.

    Each batch is scaled to [0, 1] in float32 exactly as `edgenas.train.evaluate` does, so an
    fp32 export scores what its PyTorch model scores and an INT8 model's loss is the difference.
    """
    pixels = _numpy(images_uint8)
    targets = _numpy(labels)
    if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[0] == 0:
        raise ConfigError(
            f"onnx_accuracy expects uint8 images of shape (N, C, H, W) with N >= 1, got dtype "
            f"{pixels.dtype} and shape {pixels.shape}"
        )
    if targets.shape != (pixels.shape[0],):
        raise ConfigError(
            f"onnx_accuracy needs one label per image: {pixels.shape[0]} images, labels of "
            f"shape {targets.shape}"
        )
    correct, start = 0, 0
    for logits in _run(model, pixels, threads, batch_size, _to_unit_float):
        stop = start + logits.shape[0]
        correct += int((logits.argmax(axis=1) == targets[start:stop]).sum())
        start = stop
    return correct / pixels.shape[0]


def _numpy(array: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        return array.detach().cpu().numpy()
    return np.asarray(array)


def _identity(batch: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(batch)


def _to_unit_float(batch: np.ndarray) -> np.ndarray:
    """uint8 pixels to float32 in [0, 1]: the same IEEE division as ``x.float().div_(255)``."""
    return batch.astype(np.float32) / np.float32(255.0)


def _run(
    model: bytes,
    images: np.ndarray,
    threads: int,
    batch_size: int,
    prepare: Callable[[np.ndarray], np.ndarray],
) -> Iterator[np.ndarray]:
    """The model's first output for each batch of ``images``, in order."""
    from edgenas.device import make_session

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    _load_model(model)  # a clear error for bytes that are not a model
    session = make_session(bytes(model), threads)
    name = session.get_inputs()[0].name
    for start in range(0, images.shape[0], batch_size):
        outputs = session.run(None, {name: prepare(images[start : start + batch_size])})
        yield np.asarray(outputs[0], dtype=np.float32)


# --- quantization-aware fine-tuning ---------------------------------------------------------


class _FoldedBias(nn.Module):
    """A BatchNorm folded into the convolution before it: only the per-channel bias is left.

    Not a ``_BatchNorm``, so `edgenas.train.fit` neither puts it in batch-statistics mode nor
    re-estimates statistics for it; the convolution's (fake-quantized) weights are then exactly
    the folded weights ORT will quantize.
    """

    def __init__(self, bias: torch.Tensor) -> None:
        super().__init__()
        self.bias = nn.Parameter(bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias.view(1, -1, 1, 1)


class _FakeQuantWeight(nn.Module):
    """Per-output-channel symmetric int8 fake quantization, scales from the current weights."""

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        absmax = weight.detach().abs().flatten(1).amax(dim=1)
        scale = (absmax * 2 / (_WEIGHT_QMAX - _WEIGHT_QMIN)).clamp_min(1e-12).float()
        zero = torch.zeros_like(scale, dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(
            weight, scale, zero, 0, _WEIGHT_QMIN, _WEIGHT_QMAX
        )


class _ActivationObserver:
    """A per-tensor uint8 fake quantizer whose range is a moving average of batch ranges."""

    def __init__(self) -> None:
        self.low: torch.Tensor | None = None
        self.high: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor, training: bool) -> torch.Tensor:
        if training or self.low is None or self.high is None:
            with torch.no_grad():
                low, high = x.detach().amin().clamp_max(0), x.detach().amax().clamp_min(0)
                if self.low is None or self.high is None:
                    self.low, self.high = low, high
                elif training:
                    self.low = self.low + _OBSERVER_MOMENTUM * (low - self.low)
                    self.high = self.high + _OBSERVER_MOMENTUM * (high - self.high)
        assert self.low is not None and self.high is not None
        scale = ((self.high - self.low) / (_ACT_QMAX - _ACT_QMIN)).clamp_min(1e-12).float()
        zero = (_ACT_QMIN - torch.round(self.low / scale)).clamp(_ACT_QMIN, _ACT_QMAX)
        return torch.fake_quantize_per_tensor_affine(
            x, scale.reshape(()), zero.to(torch.int32).reshape(()), _ACT_QMIN, _ACT_QMAX
        )


def quantization_aware_finetune(
    model: Network,
    data: TrainData,
    *,
    epochs: int,
    resolution: int,
    seed: int,
    config: TrainConfig,
    report: Callable[[int, float], bool] | None = None,
) -> TrainResult:
    """Fine-tune ``model`` in place under simulated INT8, then leave it a plain fp32 network.

    What is simulated is what `quantize_int8` will produce: every BatchNorm that follows a
    convolution is folded into it (as ORT's pre-processing does) and stays frozen; the
    convolution and linear weights are fake-quantized per output channel, symmetric int8, with
    scales from the current weights (ORT computes the same scales from the final weights); the
    inputs of every convolution and linear layer and the outputs of every conv-norm-activation
    unit (the tensors ORT quantizes in front of and behind its integer kernels) are
    fake-quantized to uint8 with ranges from moving-average observers. Gradients pass through
    the rounding unchanged (straight-through estimator). Training is `edgenas.train.fit` with
    ``config``, so the recipe is the project's; a learning rate around a tenth of the original
    training's suits fine-tuning.

    Afterwards the fake quantization is removed and each folded BatchNorm is restored as an
    identity-statistics BatchNorm holding the folded bias, so the result is an ordinary fp32
    `Network` (same modules, same outputs as during the last validation without the rounding).
    Export it with `edgenas.arch.export_onnx` and quantize it with `quantize_int8`: the weight
    quantization then matches the one trained against exactly, and the activation ranges are
    re-calibrated (the observers' ranges are not exported). Where post-training INT8 already
    matches fp32 this buys nothing over an ordinary fine-tune; it is the fallback for when it
    does not.

    ``report`` is `fit`'s: called after each epoch with the epoch and validation accuracy.

    Returns:
        `fit`'s result; its validation accuracies were measured with the fake quantization on,
        so they estimate the INT8 model's accuracy.
    """
    from torch.nn.utils import parametrize

    from edgenas.train import Fidelity, fit

    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ConfigError(
            f"quantization_aware_finetune epochs must be an integer >= 1, got {epochs!r}"
        )
    model.eval()
    folded = _fold_batchnorms(model)
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    handles: list[torch.utils.hooks.RemovableHandle] = []
    try:
        for layer in layers:
            parametrize.register_parametrization(layer, "weight", _FakeQuantWeight())
            handles.append(layer.register_forward_pre_hook(_input_quantizer()))
        for unit, _, _ in folded:
            handles.append(unit.register_forward_hook(_output_quantizer()))
        result = fit(
            model, data, Fidelity(epochs=epochs), resolution=resolution, seed=seed,
            config=config, report=report,
        )  # fmt: skip
    finally:
        for handle in handles:
            handle.remove()
        for layer in layers:
            if parametrize.is_parametrized(layer, "weight"):
                parametrize.remove_parametrizations(layer, "weight", leave_parametrized=False)
        _unfold_batchnorms(folded)
        model.eval()
    return result


def _input_quantizer() -> Any:
    observer = _ActivationObserver()

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return (observer(args[0], module.training), *args[1:])

    return hook


def _output_quantizer() -> Any:
    observer = _ActivationObserver()

    def hook(module: nn.Module, args: object, output: torch.Tensor) -> torch.Tensor:
        return observer(output, module.training)

    return hook


def _fold_batchnorms(model: nn.Module) -> list[tuple[nn.Module, float, float | None]]:
    """Fold each ``conv`` → ``bn`` pair (ConvBnAct units) into the conv.

    Returns the units with their BatchNorm's ``eps`` and ``momentum``, for `_unfold_batchnorms`.
    """
    units: list[tuple[nn.Module, float, float | None]] = []
    for unit in model.modules():
        conv, bn = getattr(unit, "conv", None), getattr(unit, "bn", None)
        if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)):
            continue
        assert bn.running_mean is not None and bn.running_var is not None
        with torch.no_grad():
            gain = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            bias = bn.bias - bn.running_mean * gain
            if conv.bias is not None:
                bias = bias + conv.bias * gain
                conv.bias.zero_()
            conv.weight.mul_(gain.view(-1, 1, 1, 1))
        unit.bn = _FoldedBias(bias)
        units.append((unit, bn.eps, bn.momentum))
    return units


def _unfold_batchnorms(units: list[tuple[nn.Module, float, float | None]]) -> None:
    """Put back BatchNorms with identity statistics that apply the learnt folded bias."""
    for unit, eps, momentum in units:
        folded = unit.bn
        assert isinstance(folded, _FoldedBias)
        bn = nn.BatchNorm2d(folded.bias.shape[0], eps=eps, momentum=momentum)
        bn.to(folded.bias.device)
        with torch.no_grad():
            bn.weight.fill_(1.0)
            bn.bias.copy_(folded.bias)
            bn.running_mean.zero_()  # type: ignore[union-attr]
            bn.running_var.fill_(1.0 - eps)  # type: ignore[union-attr]
        bn.eval()
        unit.bn = bn
