"""INT8 quantization: ORT's static QDQ quantizer, ONNX accuracy, and the QAT fallback."""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn
from torch.nn.utils import parametrize

from edgenas.arch import Network, baseline, build_model, export_onnx
from edgenas.compress._quantize import (
    onnx_accuracy,
    onnx_logits,
    quantization_aware_finetune,
    quantize_int8,
)
from edgenas.data import ImageDataset, load_dataset
from edgenas.device import make_session
from edgenas.errors import ConfigError
from edgenas.train import Fidelity, TrainConfig, evaluate, fit

RESOLUTION = 32
CONFIG = TrainConfig(threads=1)


@dataclass(frozen=True)
class Trained:
    data: ImageDataset
    model: Network
    fp32: bytes
    int8: bytes
    calibration: np.ndarray
    images: torch.Tensor  # uint8, validation and holdout images
    labels: np.ndarray


@pytest.fixture(scope="module")
def trained() -> Trained:
    """A small ResNet (residual adds, projections) trained to ~90% on the synthetic data."""
    data = load_dataset("synthetic", seed=0)
    torch.manual_seed(0)
    model = build_model(
        baseline("resnet:0.25", RESOLUTION), data.channels, data.num_classes, data.mean, data.std
    )
    fit(model, data, Fidelity(epochs=5), resolution=RESOLUTION, seed=0, config=CONFIG)
    pixels = data.images(RESOLUTION)
    calibration = pixels[data.splits.train[:128]].numpy().astype(np.float32) / 255
    fp32 = export_onnx(model)
    index = np.concatenate([data.splits.val, data.splits.holdout])
    return Trained(
        data,
        model,
        fp32,
        quantize_int8(fp32, calibration),
        calibration,
        pixels[index],
        data.labels[index],
    )


def _as_float(images: torch.Tensor) -> np.ndarray:
    return images.numpy().astype(np.float32) / np.float32(255)


def test_int8_model_runs_in_ort_with_qdq_nodes_and_int8_weights(trained: Trained) -> None:
    proto = onnx.load_from_string(trained.int8)
    ops = Counter(node.op_type for node in proto.graph.node)
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > 0
    int8_weights = [t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert any(len(t.dims) == 4 for t in int8_weights)  # convolution kernels
    assert len(trained.int8) < 0.5 * len(trained.fp32)
    session = make_session(trained.int8, 1)
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert [o.name for o in session.get_outputs()] == ["logits"]


def test_int8_logits_agree_with_fp32(trained: Trained) -> None:
    images = _as_float(trained.images)
    fp32 = onnx_logits(trained.fp32, images)
    int8 = onnx_logits(trained.int8, images)
    assert int8.shape == fp32.shape == (len(images), trained.data.num_classes)
    assert (int8.argmax(1) == fp32.argmax(1)).mean() >= 0.9
    fp32_accuracy = onnx_accuracy(trained.fp32, trained.images, trained.labels)
    assert fp32_accuracy > 0.6  # the model has learnt something, so agreement means something
    int8_accuracy = onnx_accuracy(trained.int8, trained.images, trained.labels)
    assert int8_accuracy >= fp32_accuracy - 0.05


def _conv_weight_scales(model: bytes) -> list[tuple[tuple[int, ...], np.ndarray]]:
    """(kernel shape, scale) of every DequantizeLinear that reads a 4-D int8 initializer."""
    proto = onnx.load_from_string(model)
    inits = {t.name: t for t in proto.graph.initializer}
    found = []
    for node in proto.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            weight = inits[node.input[0]]
            if weight.data_type == onnx.TensorProto.INT8 and len(weight.dims) == 4:
                found.append((tuple(weight.dims), numpy_helper.to_array(inits[node.input[1]])))
    return found


def test_per_channel_weights_have_one_scale_per_output_channel(trained: Trained) -> None:
    scales = _conv_weight_scales(trained.int8)
    assert scales
    for dims, scale in scales:
        assert scale.shape == (dims[0],)
    per_tensor = _conv_weight_scales(
        quantize_int8(trained.fp32, trained.calibration[:16], per_channel=False)
    )
    assert per_tensor and all(scale.size == 1 for _, scale in per_tensor)


def test_onnx_accuracy_matches_evaluate(trained: Trained) -> None:
    expected = evaluate(trained.model, trained.images, trained.labels)
    got = onnx_accuracy(trained.fp32, trained.images, trained.labels, batch_size=50)
    assert got == pytest.approx(expected, abs=1e-6)
    assert onnx_accuracy(
        trained.fp32, trained.images.numpy(), torch.as_tensor(trained.labels)
    ) == pytest.approx(expected, abs=1e-6)


def _calibration_cases() -> list[tuple[str, object]]:
    good = np.full((4, 1, RESOLUTION, RESOLUTION), 0.5, dtype=np.float32)
    return [
        ("list", good.tolist()),
        ("uint8", (good * 255).astype(np.uint8)),
        ("float64", good.astype(np.float64)),
        ("3-d", good[0]),
        ("empty", good[:0]),
        ("channels", np.repeat(good, 3, axis=1)),
        ("resolution", good[:, :, :16, :16]),
        ("unscaled", good * 255),
        ("nan", np.where(good > 0, np.nan, good).astype(np.float32)),
    ]


@pytest.mark.parametrize(("case", "calibration"), _calibration_cases())
def test_bad_calibration_is_a_config_error_naming_it(
    trained: Trained, case: str, calibration: Any
) -> None:
    with pytest.raises(ConfigError, match="calibration"):
        quantize_int8(trained.fp32, calibration)


def test_bad_method_or_model_is_a_config_error(trained: Trained) -> None:
    with pytest.raises(ConfigError, match="method"):
        quantize_int8(trained.fp32, trained.calibration, method="mse")
    with pytest.raises(ConfigError, match="ONNX model"):
        quantize_int8(b"not a model", trained.calibration)


def test_quantization_aware_finetune_gives_a_plain_model_that_quantizes(
    trained: Trained,
) -> None:
    model = copy.deepcopy(trained.model)
    images = _as_float(trained.images)
    result = quantization_aware_finetune(
        model,
        trained.data,
        epochs=1,
        resolution=RESOLUTION,
        seed=1,
        config=TrainConfig(threads=1, lr=3e-4),
    )
    assert result.status == "complete" and result.epochs == 1
    # A plain fp32 Network again: no parametrizations, hooks or folded stand-ins.
    assert isinstance(model, Network)
    for module in model.modules():
        assert not parametrize.is_parametrized(module)
        assert not module._forward_hooks and not module._forward_pre_hooks
    assert all(
        isinstance(unit.bn, nn.BatchNorm2d) for unit in model.modules() if hasattr(unit, "bn")
    )
    fp32 = export_onnx(model)
    before, after = onnx_logits(trained.fp32, images), onnx_logits(fp32, images)
    assert np.abs(after - before).max() > 1e-3  # training changed the function, not just folding
    int8 = quantize_int8(fp32, trained.calibration)
    accuracy = onnx_accuracy(int8, trained.images, trained.labels)
    assert 0.5 < accuracy <= 1.0
    # The fake quantization simulated what ORT runs: the validation accuracy fit reported under
    # it is close to the INT8 model's on the same images.
    val = trained.data.splits.val
    val_int8 = onnx_accuracy(int8, trained.data.images(RESOLUTION)[val], trained.data.labels[val])
    assert result.accuracy is not None
    assert abs(val_int8 - result.accuracy) <= 0.05


def test_quantization_aware_finetune_rejects_bad_epochs(trained: Trained) -> None:
    with pytest.raises(ConfigError, match="epochs"):
        quantization_aware_finetune(
            copy.deepcopy(trained.model),
            trained.data,
            epochs=0,
            resolution=RESOLUTION,
            seed=0,
            config=CONFIG,
        )


def test_finalize_scores_a_split_chunk_by_chunk(
    trained: Trained, monkeypatch: pytest.MonkeyPatch
) -> None:
    """finalize's ONNX scoring never holds more than a chunk of a split, and scores what the
    whole split scores (accuracy and the confusion matrix, on rows in any order)."""
    from edgenas.compress import _quantize
    from edgenas.cost import Constraints
    from edgenas.finalize import _steps
    from edgenas.finalize._steps import Measurer
    from edgenas.train import Metric, confusion_matrix

    data = trained.data
    rows = np.concatenate([data.splits.holdout, data.splits.val])[::-1].copy()  # unsorted
    pixels = data.images(RESOLUTION)
    whole = onnx_logits(trained.fp32, _as_float(pixels[torch.as_tensor(rows)])).argmax(axis=1)
    labels = torch.as_tensor(data.labels)
    expected = confusion_matrix(labels.numpy()[rows], whole, data.num_classes)

    seen: list[int] = []  # images per ONNX call
    gathered: list[int] = []  # rows per gather from the pixels

    def counted(model: bytes, images: np.ndarray, **kwargs: Any) -> np.ndarray:
        seen.append(len(images))
        return _quantize.onnx_logits(model, images, **kwargs)

    class Recorded(np.ndarray):
        def __getitem__(self, key: Any) -> Any:
            out = super().__getitem__(key)
            if isinstance(key, np.ndarray):
                gathered.append(len(out))
            return np.asarray(out)

    def mapped(resolution: int) -> Any:  # what the measurer reads pixels from, recorded
        return SimpleNamespace(numpy=lambda: data.images(resolution).numpy().view(Recorded))

    monkeypatch.setattr(_steps, "_ONNX_CHUNK", 7)
    monkeypatch.setattr("edgenas.compress.onnx_logits", counted)
    measurer = Measurer(
        images=mapped, labels=labels, val=torch.as_tensor(data.splits.val),
        holdout=torch.as_tensor(data.splits.holdout), threads=1, constraints=Constraints(),
        predict_latency=None, predict_memory=None, wilson=lambda k, n: (0.0, 1.0),
        metric=Metric.parse("balanced-accuracy"), class_names=data.class_names,
    )  # fmt: skip
    index = torch.as_tensor(rows)
    assert np.array_equal(measurer.confusion(trained.fp32, RESOLUTION, index), expected)
    assert len(seen) == -(-len(rows) // 7) and max(seen) == 7 and sum(seen) == len(rows)
    assert gathered == seen  # each chunk gathered on its own: the split is never copied whole
    accuracy = measurer.accuracy(trained.fp32, RESOLUTION, index)
    assert accuracy == pytest.approx(np.trace(expected) / len(rows))
    assert accuracy == pytest.approx(onnx_accuracy(trained.fp32, pixels[index], labels[index]))
    with pytest.raises(ConfigError, match="empty split"):
        measurer.accuracy(trained.fp32, RESOLUTION, torch.zeros(0, dtype=torch.int64))
