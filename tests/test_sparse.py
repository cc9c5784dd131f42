"""Unstructured pruning: schedule, targets, magnitude and movement pruning during fit, sizes."""

from __future__ import annotations

import copy
import itertools
import re
from dataclasses import dataclass, field

import pytest
import torch
from torch import nn

from edgenas.arch import Network, baseline, build_model, export_onnx
from edgenas.compress._sparse import (
    GradualMagnitudePruning,
    MovementPruning,
    compressed_size_mb,
    cubic_sparsity,
    layer_targets,
    magnitude_sensitivity,
    prunable_layers,
    sparse_size_mb,
    sparsity,
)
from edgenas.data import ImageDataset, load_dataset
from edgenas.errors import ConfigError
from edgenas.train import Fidelity, TrainConfig, evaluate, fit

CONFIG = TrainConfig(device="cpu")


@pytest.fixture(scope="module")
def data() -> ImageDataset:
    return load_dataset("synthetic", seed=0)


def _model(data: ImageDataset, genotype: str = "resnet:0.25", seed: int = 0) -> Network:
    torch.manual_seed(seed)
    return build_model(baseline(genotype, 32), data.channels, data.num_classes, data.mean, data.std)


def _val_accuracy(model: nn.Module, data: ImageDataset) -> float:
    index = torch.as_tensor(data.splits.val)
    return evaluate(model, data.images(32)[index], torch.as_tensor(data.labels)[index])


@dataclass
class Recorder:
    """Wraps a pruner; checks masked gradients are zero and keeps a mid-training mask."""

    pruner: GradualMagnitudePruning | MovementPruning
    nonzero_masked_grads: int = 0
    checked_grads: int = 0
    mid_masks: dict[str, torch.Tensor] = field(default_factory=dict)

    def after_backward(self, step: int, total: int) -> None:
        self.pruner.after_backward(step, total)
        for name, mask in self.pruner.masks.items():
            grad = self.pruner._weights[name].grad
            assert grad is not None
            self.nonzero_masked_grads += int((grad[~mask] != 0).sum())
            self.checked_grads += int((~mask).sum())

    def after_step(self, step: int, total: int) -> None:
        self.pruner.after_step(step, total)
        if step == total // 3:
            self.mid_masks = {n: m.clone() for n, m in self.pruner.masks.items()}


def _assert_meets(measured: dict[str, float], model: nn.Module, targets: dict[str, float]) -> None:
    """Each layer's sparsity is its target, within one weight."""
    layers = dict(model.named_modules())
    for name, target in targets.items():
        count = layers[name].weight.numel()
        assert abs(measured[name] - target) <= 1 / count + 1e-9, (name, measured[name], target)


# -- schedule and targets ------------------------------------------------------------------------


def test_cubic_schedule_shape() -> None:
    total, final = 100, 0.8
    values = [cubic_sparsity(s, total, final, start=0.2, end=0.6) for s in range(total)]
    assert all(v == 0.0 for v in values[:19])  # fewer than 20 steps done
    assert all(v == final for v in values[59:])  # 60 or more done
    assert all(a <= b for a, b in itertools.pairwise(values))
    # Halfway (40 steps done): s_f + (s_i - s_f) * 0.5**3.
    assert values[39] == pytest.approx(final * (1 - 0.125))
    assert cubic_sparsity(9, 10, 0.5, start=0.0, end=1.0) == 0.5
    assert cubic_sparsity(0, 10, 0.5, initial=0.1, start=0.5, end=1.0) == 0.1


def test_layer_targets_defaults_and_overrides(data: ImageDataset) -> None:
    model = _model(data, "mobilenetv3-small:0.5")
    layers = prunable_layers(model)
    assert "stem.conv" not in layers and "classifier" not in layers
    assert "blocks.0.dw.conv" in layers and "head.conv" in layers
    targets = layer_targets(model, 0.8, overrides={"blocks.*.dw.conv": 0.3, "head.conv": 0.9})
    assert set(targets) == set(layers)
    assert targets["blocks.3.dw.conv"] == 0.3
    assert targets["head.conv"] == 0.9
    assert targets["blocks.3.pw.conv"] == 0.8
    everything = layer_targets(model, 0.5, keep_dense=())
    assert "stem.conv" in everything and "classifier" in everything


@pytest.mark.parametrize("bad", [1.0, -0.1, float("nan"), True])
def test_bad_sparsity_is_a_config_error(data: ImageDataset, bad: float) -> None:
    model = _model(data)
    with pytest.raises(ConfigError, match=re.escape(repr(bad))):
        layer_targets(model, bad)
    with pytest.raises(ConfigError, match=re.escape("blocks.0.conv1.conv")):
        GradualMagnitudePruning(model, {"blocks.0.conv1.conv": bad})


def test_unknown_layers_are_config_errors(data: ImageDataset) -> None:
    model = _model(data)
    with pytest.raises(ConfigError, match=r"'blocks\.99\.conv'.*valid names: .*blocks\.0\.conv1"):
        layer_targets(model, 0.5, overrides={"blocks.99.conv": 0.5})
    with pytest.raises(ConfigError, match="kept dense"):
        layer_targets(model, 0.5, overrides={"classifier": 0.5})
    with pytest.raises(ConfigError, match=r"'nope'.*valid names"):
        GradualMagnitudePruning(model, {"nope": 0.5})
    with pytest.raises(ConfigError, match="start and end"):
        GradualMagnitudePruning(model, {}, start=0.8, end=0.5)
    with pytest.raises(ConfigError, match=re.escape("keep_dense entry 'stem.conv'")):
        prunable_layers(nn.Sequential(nn.Linear(2, 2)))


def test_hooks_follow_the_schedule_every_few_steps() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(30, 40)
    model = nn.Sequential(layer)
    initial = layer.weight.detach().clone()
    pruner = GradualMagnitudePruning(model, {"0": 0.9}, start=0.2, end=0.8, every=3)
    total, levels = 50, []
    for step in range(total):  # no optimizer: the hooks alone, as fit would call them
        layer.weight.grad = torch.ones_like(layer.weight)
        pruner.after_backward(step, total)
        pruner.after_step(step, total)
        levels.append(sparsity(model)["0"])
        scheduled = pruner.sparsity_at(step, total)["0"]
        assert levels[-1] <= scheduled + 1 / 1200
    assert levels[8] == 0.0  # before start (10 steps done)
    assert levels[39] == pytest.approx(0.9)  # end (40 steps done) reaches the target
    assert all(a <= b for a, b in itertools.pairwise(levels))
    changes = [i for i in range(1, total) if levels[i] != levels[i - 1]]
    assert all(b - a >= 3 for a, b in itertools.pairwise(changes))
    kept = layer.weight.detach() != 0
    assert layer.weight.grad is not None and bool((layer.weight.grad[~kept] == 0).all())
    # The weights did not change, so the survivors are the largest 10% of the initial ones.
    largest = initial.abs().flatten().topk(120).indices
    assert set(kept.flatten().nonzero().flatten().tolist()) == set(largest.tolist())
    assert pruner.finish() == {"0": pytest.approx(0.9)}


# -- gradual magnitude pruning during training ----------------------------------------------------


@dataclass
class MagnitudeRun:
    model: Network
    start_weights: dict[str, torch.Tensor]
    targets: dict[str, float]
    recorder: Recorder
    status: str
    before_finish: dict[str, float]  # measured sparsity after fit, before finish
    final_masks: dict[str, torch.Tensor]
    finished: dict[str, float]  # what finish returned


@pytest.fixture(scope="module")
def magnitude_run(data: ImageDataset) -> MagnitudeRun:
    model = _model(data)
    start_weights = copy.deepcopy(model.state_dict())
    targets = layer_targets(model, 0.8, overrides={"blocks.0.*": 0.5})
    recorder = Recorder(GradualMagnitudePruning(model, targets, start=0.1, end=0.7))
    result = fit(
        model, data, Fidelity(epochs=2), resolution=32, seed=0, config=CONFIG, hooks=recorder
    )
    before_finish = sparsity(model)
    final_masks = recorder.pruner.masks
    finished = recorder.pruner.finish()
    return MagnitudeRun(
        model, start_weights, targets, recorder, result.status, before_finish, final_masks, finished
    )


def test_magnitude_pruning_reaches_targets_and_still_learns(
    data: ImageDataset, magnitude_run: MagnitudeRun
) -> None:
    run, model = magnitude_run, magnitude_run.model
    assert run.status == "complete"
    measured = sparsity(model)
    _assert_meets(measured, model, run.targets)
    # The schedule reached the targets during training (end=0.7), before finish was called.
    _assert_meets(run.before_finish, model, run.targets)
    assert run.finished == {name: measured[name] for name in run.targets}
    assert measured["stem.conv"] == 0.0
    assert measured["classifier"] == 0.0
    assert measured["overall"] > 0.7
    # Still a plain Network with the same parameters, better than chance, and exportable.
    assert type(model) is Network
    assert set(model.state_dict()) == set(run.start_weights)
    assert _val_accuracy(model, data) > 1 / data.num_classes + 0.1
    assert len(export_onnx(model)) > 0


def test_masked_weights_stay_zero_and_get_no_gradient(magnitude_run: MagnitudeRun) -> None:
    run = magnitude_run
    assert run.recorder.mid_masks, "pruning had started by a third of training"
    assert run.recorder.checked_grads > 0
    assert run.recorder.nonzero_masked_grads == 0
    layers = dict(run.model.named_modules())
    for name, mid in run.recorder.mid_masks.items():
        weight = layers[name].weight.detach()
        assert (weight[~mid] == 0).all(), name  # pruned by then, still zero after the fit
        assert not (~mid & run.final_masks[name]).any(), name  # never revived
    with pytest.raises(RuntimeError, match="finished"):
        run.recorder.pruner.after_step(0, 1)


# -- movement pruning ------------------------------------------------------------------------------


def test_movement_pruning_reaches_targets_with_other_weights(
    data: ImageDataset, magnitude_run: MagnitudeRun
) -> None:
    targets = magnitude_run.targets
    model = _model(data)
    model.load_state_dict(magnitude_run.start_weights)  # the magnitude run's initial weights
    pruner = MovementPruning(model, targets, start=0.1, end=0.7)
    fit(model, data, Fidelity(epochs=2), resolution=32, seed=0, config=CONFIG, hooks=pruner)
    assert pruner.scores and all(torch.isfinite(s).all() for s in pruner.scores.values())
    movement_masks = pruner.masks
    pruner.finish()
    measured = sparsity(model)
    _assert_meets(measured, model, targets)
    assert measured["stem.conv"] == 0.0 and measured["classifier"] == 0.0
    magnitude_masks = magnitude_run.final_masks
    differing = sum(int((movement_masks[n] != magnitude_masks[n]).sum()) for n in targets)
    assert differing > 0.05 * sum(m.numel() for m in movement_masks.values())
    assert _val_accuracy(model, data) > 1 / data.num_classes


# -- one-shot use, sizes and sensitivity -----------------------------------------------------------


def test_compressed_size_shrinks_with_sparsity(data: ImageDataset) -> None:
    dense = _model(data, "mobilenetv3-small:0.5")
    sparse = copy.deepcopy(dense)
    targets = layer_targets(sparse, 0.8)
    GradualMagnitudePruning(sparse, targets).finish()  # never trained: one-shot pruning
    _assert_meets(sparsity(sparse), sparse, targets)
    assert sparsity(sparse)["overall"] > 0.7
    dense_onnx, sparse_onnx = export_onnx(dense), export_onnx(sparse)
    assert compressed_size_mb(sparse_onnx) < 0.6 * compressed_size_mb(dense_onnx)
    assert compressed_size_mb(dense_onnx) < len(dense_onnx) / 1e6
    assert sparse_size_mb(sparse) < sparse_size_mb(dense)


def test_sensitivity_targets_make_insensitive_layers_sparser() -> None:
    torch.manual_seed(0)
    big, small = nn.Linear(20, 20), nn.Linear(20, 20)
    model = nn.Sequential(big, small)
    with torch.no_grad():
        big.weight.mul_(100.0)  # the score below is dominated by this layer

    def weight_mass(m: nn.Module) -> float:
        return float(sum(p.detach().abs().sum() for n, p in m.named_parameters() if "weight" in n))

    before = copy.deepcopy(model.state_dict())
    result = magnitude_sensitivity(model, weight_mass, (0.5, 0.8, 0.9), keep_dense=())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # untouched
    assert set(result.scores) == {"0", "1"} and set(result.scores["0"]) == {0.5, 0.8, 0.9}
    targets = result.targets(0.6)
    assert targets["1"] > targets["0"]
    assert sum(targets.values()) / 2 == pytest.approx(0.6)  # equal sizes: plain mean
    with pytest.raises(ConfigError, match="measure higher sparsities"):
        result.targets(0.95)
