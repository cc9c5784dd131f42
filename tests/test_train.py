"""Behaviour of edgenas.train: learning, stopping, divergence, determinism, augmentation."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from edgenas.arch import build_model, export_onnx
from edgenas.errors import ConfigError, DataError
from edgenas.train import (
    Distillation,
    Fidelity,
    TrainConfig,
    TrainData,
    TrainResult,
    augment_batch,
    evaluate,
    fit,
    resolve_device,
)

SIDE = 16
FAST = TrainConfig(batch_size=32, lr=1e-2, threads=2, device="cpu")


@dataclass(frozen=True)
class FakeSplits:
    train: np.ndarray
    val: np.ndarray
    holdout: np.ndarray


@dataclass(frozen=True)
class FakeData:
    """Two classes: dark and bright noisy images, learnable in a couple of epochs."""

    labels: np.ndarray
    splits: FakeSplits
    pixels: torch.Tensor = field(repr=False)
    num_classes: int = 2
    channels: int = 3
    augment: tuple[str, ...] = ("flip-h", "flip-v", "rot90", "shift", "brightness", "contrast")

    def images(self, resolution: int) -> torch.Tensor:
        assert resolution == SIDE
        return self.pixels


def make_data(count: int = 500, seed: int = 0) -> FakeData:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=count).astype(np.int64)
    level = np.where(labels == 1, 0.7, 0.3)[:, None, None, None]
    noise = rng.uniform(-0.15, 0.15, size=(count, 3, SIDE, SIDE))
    pixels = torch.from_numpy(np.round((level + noise) * 255).astype(np.uint8))
    order = rng.permutation(count)
    cut1, cut2 = int(0.7 * count), int(0.9 * count)
    splits = FakeSplits(train=order[:cut1], val=order[cut1:cut2], holdout=order[cut2:])
    return FakeData(labels=labels, splits=splits, pixels=pixels)


def make_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 2),
    )


class NanAfter(nn.Module):
    """Passes input through for `calls` training steps, then returns NaN.

    Only forwards with gradients count: the no-grad passes that re-estimate BatchNorm
    statistics before validation are not training steps.
    """

    def __init__(self, calls: int) -> None:
        super().__init__()
        self.calls = calls
        self.seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and torch.is_grad_enabled():
            self.seen += 1
            if self.seen > self.calls:
                return x * float("nan")
        return x


@pytest.fixture(scope="module")
def data() -> FakeData:
    return make_data()


def test_fake_data_satisfies_protocol(data: FakeData) -> None:
    typed: TrainData = data  # checked by mypy when tests are type-checked
    assert typed.num_classes == 2


def test_learns_easy_task(data: FakeData) -> None:
    epochs: list[int] = []

    def report(epoch: int, accuracy: float) -> bool:
        epochs.append(epoch)
        return True

    result = fit(
        make_model(), data, Fidelity(epochs=4), resolution=SIDE, seed=0, config=FAST, report=report
    )
    assert isinstance(result, TrainResult)
    assert result.status == "complete" and result.reason is None
    assert result.epochs == 4 and len(result.history) == 4 and epochs == [1, 2, 3, 4]
    assert result.accuracy == result.history[-1]
    assert result.accuracy is not None and result.accuracy > 0.9
    assert result.train_images == len(data.splits.train)
    assert result.seconds > 0


def test_report_can_stop_training(data: FakeData) -> None:
    calls: list[tuple[int, float]] = []

    def report(epoch: int, accuracy: float) -> bool:
        calls.append((epoch, accuracy))
        return False

    result = fit(
        make_model(), data, Fidelity(epochs=3), resolution=SIDE, seed=0, config=FAST, report=report
    )
    assert result.status == "stopped"
    assert result.epochs == 1 and len(calls) == 1 and calls[0][0] == 1
    assert result.history == (calls[0][1],) and result.accuracy == calls[0][1]
    assert result.reason is not None and "epoch 1" in result.reason


def test_nan_from_the_start_diverges(data: FakeData) -> None:
    model = nn.Sequential(make_model(), NanAfter(0))
    result = fit(model, data, Fidelity(epochs=2), resolution=SIDE, seed=0, config=FAST)
    assert result.status == "diverged"
    assert result.accuracy is None and result.history == () and result.epochs == 0
    assert result.reason == "loss became nan at epoch 1 step 1"
    assert result.steps == 0


def test_nan_later_keeps_last_completed_epoch(data: FakeData) -> None:
    steps_per_epoch = -(-len(data.splits.train) // FAST.batch_size)
    model = nn.Sequential(make_model(), NanAfter(steps_per_epoch + 2))
    result = fit(model, data, Fidelity(epochs=3), resolution=SIDE, seed=0, config=FAST)
    assert result.status == "diverged"
    assert result.epochs == 1 and result.accuracy == result.history[0]
    assert result.reason == "loss became nan at epoch 2 step 3"


def test_huge_learning_rate_diverges(data: FakeData) -> None:
    # Without BatchNorm to renormalise, activations overflow float32 within a step or two.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 14 * 14, 2))
    config = TrainConfig(batch_size=32, lr=1e30, weight_decay=0, threads=2, device="cpu")
    result = fit(model, data, Fidelity(epochs=2), resolution=SIDE, seed=0, config=config)
    assert result.status == "diverged"
    assert result.reason is not None and result.reason.startswith("loss became")
    assert result.epochs == len(result.history)


def test_same_seed_same_training(data: FakeData) -> None:
    fidelity = Fidelity(epochs=2, data_fraction=0.5)
    runs = []
    for _ in range(2):
        model = make_model(seed=3)
        result = fit(model, data, fidelity, resolution=SIDE, seed=7, config=FAST)
        runs.append((result.history, model.state_dict()))
    (history_a, state_a), (history_b, state_b) = runs
    assert history_a == history_b
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)

    other = make_model(seed=3)
    fit(other, data, fidelity, resolution=SIDE, seed=8, config=FAST)
    assert not all(torch.equal(state_a[k], v) for k, v in other.state_dict().items())


def test_data_fraction_trains_on_fewer_images(data: FakeData) -> None:
    full = fit(make_model(), data, Fidelity(epochs=1), resolution=SIDE, seed=0, config=FAST)
    part = fit(
        make_model(),
        data,
        Fidelity(epochs=1, data_fraction=0.25),
        resolution=SIDE,
        seed=0,
        config=FAST,
    )
    train_labels = data.labels[data.splits.train]
    assert full.train_images == len(train_labels)
    # Stratified: each class keeps about a quarter of its images.
    expected = sum(round(np.sum(train_labels == c) * 0.25) for c in (0, 1))
    assert part.train_images == expected
    assert part.steps < full.steps
    assert part.steps == -(-expected // FAST.batch_size)


def test_last_batch_of_one_is_dropped() -> None:
    data = make_data(count=100)
    train = data.splits.train[:65]  # 64 + 1 at batch size 64
    data = FakeData(
        labels=data.labels,
        splits=FakeSplits(train=train, val=data.splits.val, holdout=data.splits.holdout),
        pixels=data.pixels,
    )
    config = TrainConfig(batch_size=64, threads=2, device="cpu")
    result = fit(make_model(), data, Fidelity(epochs=2), resolution=SIDE, seed=0, config=config)
    assert result.status == "complete" and result.steps == 2


def test_threads_are_restored(data: FakeData) -> None:
    before = torch.get_num_threads()
    config = TrainConfig(batch_size=32, threads=1, device="cpu")
    fit(
        make_model(),
        data,
        Fidelity(epochs=1, data_fraction=0.2),
        resolution=SIDE,
        seed=0,
        config=config,
    )
    assert torch.get_num_threads() == before


def test_fit_rejects_bad_arguments(data: FakeData) -> None:
    with pytest.raises(ConfigError, match="resolution"):
        fit(make_model(), data, Fidelity(resolution=32), resolution=SIDE, seed=0, config=FAST)
    with pytest.raises(ConfigError, match="seed"):
        fit(make_model(), data, Fidelity(), resolution=SIDE, seed=-1, config=FAST)
    empty_val = FakeData(
        labels=data.labels,
        splits=FakeSplits(
            train=data.splits.train, val=np.array([], dtype=np.int64), holdout=data.splits.holdout
        ),
        pixels=data.pixels,
    )
    with pytest.raises(DataError, match="validation split is empty"):
        fit(make_model(), empty_val, Fidelity(), resolution=SIDE, seed=0, config=FAST)


def test_evaluate_counts_correct_predictions() -> None:
    class Brightness(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            mean = x.mean(dim=(1, 2, 3))
            return torch.stack([0.5 - mean, mean - 0.5], dim=1)

    images = torch.tensor([0, 255, 0, 255], dtype=torch.uint8).view(4, 1, 1, 1).expand(4, 1, 4, 4)
    model = Brightness().train()
    assert evaluate(model, images, np.array([0, 1, 0, 1]), batch_size=3) == 1.0
    assert evaluate(model, images, torch.tensor([0, 1, 1, 1])) == 0.75
    assert model.training  # mode restored


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epochs": 0}, "epochs"),
        ({"epochs": 2.5}, "epochs"),
        ({"data_fraction": 0.0}, "data_fraction"),
        ({"data_fraction": 1.5}, "data_fraction"),
        ({"data_fraction": float("nan")}, "data_fraction"),
        ({"resolution": 0}, "resolution"),
    ],
)
def test_fidelity_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Fidelity(**kwargs)


def test_fidelity_resolve() -> None:
    assert Fidelity().resolve(96) == 96
    assert Fidelity(resolution=64).resolve(96) == 64


@pytest.mark.parametrize(
    "kwargs",
    [
        {"batch_size": 1},
        {"lr": 0.0},
        {"weight_decay": -1.0},
        {"label_smoothing": 1.0},
        {"augment_strength": -0.5},
        {"threads": 0},
        {"device": "tpu"},
        {"precision": "fp8"},
    ],
)
def test_train_config_validation(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        TrainConfig(**kwargs)


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")


# --- memory format and precision --------------------------------------------------------


class Probe(nn.Module):
    """Passes its input through and records, for every training step, its memory format and
    whether autocast was on."""

    def __init__(self) -> None:
        super().__init__()
        self.channels_last: list[bool] = []
        self.autocast: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and torch.is_grad_enabled():
            self.channels_last.append(x.is_contiguous(memory_format=torch.channels_last))
            self.autocast.append(torch.is_autocast_enabled(x.device.type))
        return x


class ProbedNetwork(nn.Module):
    """An edgenas network with a probe after its stem (16 channels, so the format is visible)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = build_model("r16-stem16-ir_k3_e3_c16_s2_se-conv_k5x3_c16_id-head32", 3, 2)
        self.probe = Probe()
        self.net.stem.act = nn.Sequential(self.net.stem.act, self.probe)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_fit_on_the_cpu_trains_nchw_and_leaves_a_model_that_matches_its_onnx(
    data: FakeData,
) -> None:
    model = ProbedNetwork()
    result = fit(model, data, Fidelity(epochs=2), resolution=SIDE, seed=0, config=FAST)
    assert result.status == "complete"
    # On the CPU training runs in NCHW (channels-last crashed oneDNN on some networks), in fp32...
    assert model.probe.channels_last and not any(model.probe.channels_last)
    assert not any(model.probe.autocast)
    # ...and the weights are back in the standard layout, as callers and state_dicts expect.
    weights = [p for p in model.parameters() if p.ndim == 4]
    assert weights and all(p.is_contiguous() for p in weights)
    assert all(t.is_contiguous() for t in model.state_dict().values())
    # The exported file computes what the trained model computes.
    images = data.images(SIDE)[torch.from_numpy(data.splits.val)]
    x = images.float() / 255.0
    onnx = export_onnx(model.net)
    session = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"image": x.numpy()})
    with torch.no_grad():
        expected = model.eval()(x).numpy()
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)
    accuracy = float((logits.argmax(1) == data.labels[data.splits.val]).mean())
    assert accuracy == pytest.approx(result.accuracy)


def test_evaluate_restores_the_memory_format() -> None:
    model = ProbedNetwork().eval()
    images = torch.randint(0, 256, (8, 3, SIDE, SIDE), dtype=torch.uint8)
    evaluate(model, images, np.zeros(8, dtype=np.int64))
    assert all(p.is_contiguous() for p in model.parameters())


class MaxGradient:
    """StepHooks that record the largest gradient after every backward pass."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.seen: list[float] = []

    def after_backward(self, step: int, total: int) -> None:
        grads = [p.grad.abs().max() for p in self.model.parameters() if p.grad is not None]
        self.seen.append(float(torch.stack(grads).max()))

    def after_step(self, step: int, total: int) -> None:
        pass


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_and_hooks_see_true_gradients(
    data: FakeData, precision: str
) -> None:
    config = TrainConfig(batch_size=32, lr=1e-2, threads=2, device="cpu", precision=precision)
    model = ProbedNetwork()
    hooks = MaxGradient(model)
    result = fit(model, data, Fidelity(epochs=3), resolution=SIDE, seed=0, config=config,
                 hooks=hooks)  # fmt: skip
    assert result.status == "complete"
    assert result.accuracy is not None and result.accuracy > 0.9
    assert model.probe.autocast and all(model.probe.autocast)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # fp32 master weights
    # fp16 scales the loss by 2**16 before backward; the hooks must see unscaled gradients.
    reference = MaxGradient(fp32 := ProbedNetwork())
    fit(fp32, data, Fidelity(epochs=1, data_fraction=0.1), resolution=SIDE, seed=0,
        config=FAST, hooks=reference)  # fmt: skip
    assert 0.1 < hooks.seen[0] / reference.seen[0] < 10


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_trains_in_mixed_precision_channels_last(data: FakeData) -> None:
    model = ProbedNetwork()
    config = TrainConfig(batch_size=32, lr=1e-2, device="cuda")
    result = fit(model, data, Fidelity(epochs=3), resolution=SIDE, seed=0, config=config)
    assert result.status == "complete"
    assert result.accuracy is not None and result.accuracy > 0.9
    assert all(model.probe.channels_last) and all(model.probe.autocast)
    assert all(p.is_cuda and p.is_contiguous() for p in model.parameters())
    images = data.images(SIDE)[torch.from_numpy(data.splits.val)]
    assert evaluate(model, images, data.labels[data.splits.val]) == pytest.approx(
        result.accuracy, abs=0.02
    )


# --- augmentation -------------------------------------------------------------------------


class SizeTeacher(nn.Module):
    """A teacher that records the side of every batch it is given, and predicts class 0."""

    def __init__(self) -> None:
        super().__init__()
        self.sides: set[tuple[int, int]] = set()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sides.add((x.shape[-2], x.shape[-1]))
        return torch.tensor([[4.0, -4.0]]).expand(x.shape[0], 2)


@pytest.mark.parametrize(("resolution", "seen"), [(None, (SIDE, SIDE)), (24, (24, 24))])
def test_distillation_feeds_the_teacher_at_its_resolution(
    data: FakeData, resolution: int | None, seen: tuple[int, int]
) -> None:
    teacher = SizeTeacher()
    distill = Distillation(teacher, resolution=resolution)
    result = fit(make_model(), data, Fidelity(epochs=1, data_fraction=0.2), resolution=SIDE,
                 seed=0, config=FAST, distill=distill)  # fmt: skip
    assert result.status == "complete"
    assert teacher.sides == {seen}


def test_distillation_rejects_a_bad_resolution() -> None:
    with pytest.raises(ConfigError, match=r"Distillation\.resolution"):
        Distillation(SizeTeacher(), resolution=0)


JITTER = ("shift", "brightness", "contrast")
FLIPS = ("flip-h", "flip-v")


@pytest.mark.parametrize("strength", [0.0, 1.0, 3.0])
@pytest.mark.parametrize("ops", [(*FLIPS, "rot90", *JITTER), ("rot90", *JITTER), (*FLIPS, *JITTER)])
def test_augment_keeps_shape_dtype_range(ops: tuple[str, ...], strength: float) -> None:
    x = torch.rand(32, 3, 12, 12)
    original = x.clone()
    g = torch.Generator().manual_seed(0)
    out = augment_batch(x, g, ops=ops, strength=strength)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(x, original)  # input untouched


def test_augment_changes_images_and_is_seeded() -> None:
    x = torch.rand(16, 3, 16, 16)
    ops = (*FLIPS, "rot90", *JITTER)
    a = augment_batch(x, torch.Generator().manual_seed(1), ops=ops, strength=1.0)
    b = augment_batch(x, torch.Generator().manual_seed(1), ops=ops, strength=1.0)
    assert torch.equal(a, b)
    assert not torch.allclose(a, x)


def test_flips_leave_a_symmetric_image_unchanged() -> None:
    half = torch.rand(8, 3, 4, 4)
    top = torch.cat([half, half.flip(3)], dim=3)
    x = torch.cat([top, top.flip(2)], dim=2)  # mirror-symmetric both ways, 8x8
    out = augment_batch(x, torch.Generator().manual_seed(0), ops=FLIPS, strength=0)
    assert torch.equal(out, x)


def test_nothing_enabled_is_identity() -> None:
    x = torch.rand(4, 1, 5, 7)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(augment_batch(x, g, ops=JITTER, strength=0.0), x)
    assert torch.equal(augment_batch(x, g, ops=(), strength=1.0), x)


def test_rot90_only_rotates() -> None:
    base = torch.rand(1, 2, 6, 6)
    x = base.expand(64, -1, -1, -1)
    out = augment_batch(x, torch.Generator().manual_seed(0), ops=("rot90",), strength=0)
    turns = [torch.rot90(base[0], k, dims=(1, 2)) for k in range(4)]
    seen = set()
    for image in out:
        matches = [k for k, turned in enumerate(turns) if torch.equal(image, turned)]
        assert len(matches) == 1, "every output must be a pure rotation of the input"
        seen.add(matches[0])
    assert seen == {0, 1, 2, 3}


def test_rot90_on_non_square_keeps_shape() -> None:
    x = torch.rand(16, 1, 4, 6)
    out = augment_batch(x, torch.Generator().manual_seed(0), ops=("rot90",), strength=0)
    assert out.shape == x.shape
    for image, source in zip(out, x, strict=True):
        assert torch.equal(image, source) or torch.equal(image, source.flip(1, 2))


def test_shift_moves_content_by_at_most_an_eighth() -> None:
    x = torch.zeros(64, 1, 16, 16)
    x[:, :, 8, 8] = 1.0  # a single bright pixel at the centre
    g = torch.Generator().manual_seed(0)
    # Strength 1 also jitters brightness/contrast, which moves no pixels.
    out = augment_batch(x, g, ops=JITTER, strength=1.0)
    peaks = out.flatten(1).argmax(dim=1)
    rows, cols = peaks // 16, peaks % 16
    assert (rows - 8).abs().max() <= 2 and (cols - 8).abs().max() <= 2
    assert len(set(zip(rows.tolist(), cols.tolist(), strict=True))) > 5


def test_augment_rejects_bad_input() -> None:
    g = torch.Generator()
    with pytest.raises(ValueError, match="float images"):
        augment_batch(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), g, ops=FLIPS, strength=1.0)
    with pytest.raises(ValueError, match="strength"):
        augment_batch(torch.zeros(2, 3, 4, 4), g, ops=FLIPS, strength=-1.0)
    with pytest.raises(ValueError, match="twirl"):
        augment_batch(torch.zeros(2, 3, 4, 4), g, ops=("twirl",), strength=1.0)
