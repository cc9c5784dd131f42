"""Structured channel pruning: per-group sensitivity, pruning to a cost target, persistence."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np
import pytest
import torch
import torch_pruning as tp
from torch import nn

from edgenas.arch import Network, baseline, build_model, export_onnx
from edgenas.compress import (
    ChannelSensitivity,
    PruneResult,
    latency_cost,
    layer_sensitivity,
    load_pruned,
    macs_cost,
    prune_to_target,
    save_pruned,
    size_cost,
)
from edgenas.data import load_dataset
from edgenas.device import make_session
from edgenas.errors import ConfigError
from edgenas.train import Fidelity, TrainConfig, evaluate, fit

SIDE = 32
CLASSES = 4


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _net(name: str, seed: int = 0) -> tuple[Network, torch.Tensor]:
    """An untrained network whose batch norms have seen some inputs, so logits vary per image."""
    torch.manual_seed(seed)
    model = build_model(baseline(name, SIDE), 1, CLASSES)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # a cumulative average: one batch sets the statistics
    with torch.no_grad():
        model.train()
        model(torch.rand(32, 1, SIDE, SIDE))
    for bn in norms:
        bn.momentum = 0.1
    return model.eval(), torch.rand(1, 1, SIDE, SIDE)


def _logit_score(model: nn.Module) -> Callable[[nn.Module], float]:
    """Cheap sensitivity proxy: minus the RMS distance of the logits from the unpruned model's."""
    images = torch.rand(16, 1, SIDE, SIDE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = model.eval()(images)

    def score(m: nn.Module) -> float:
        with torch.no_grad():
            return -float((m.eval()(images) - reference).pow(2).mean().sqrt())

    return score


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def data() -> Any:
    return load_dataset("synthetic", seed=0)


@pytest.fixture(scope="module")
def pruned() -> tuple[Network, PruneResult, float]:
    """MobileNetV3-small (depthwise, squeeze-excite, residuals) pruned to 60% of its size."""
    model, example = _net("mobilenetv3-small")
    sensitivity = layer_sensitivity(model, example, _logit_score(model), ratios=(0.3, 0.6))
    target = 0.6 * size_cost()(model)
    result = prune_to_target(model, example, size_cost(), target, sensitivity, round_to=4)
    return model, result, target


def test_sensitivity_has_one_named_entry_per_prunable_group() -> None:
    model, example = _net("resnet:0.25")
    before = _state(model)
    returned: list[float] = []

    def score(m: nn.Module) -> float:  # more parameters is "better": drops grow with the ratio
        returned.append(float(_params(m)))
        return returned[-1]

    s = layer_sensitivity(model, example, score, ratios=(0.25, 0.5))
    assert _same_state(before, _state(model))  # trials ran on copies

    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    expected = list(
        graph.get_all_groups(ignored_layers=[model.classifier], root_module_types=[nn.Conv2d])
    )
    names = [g.name for g in s.groups]
    assert len(names) == len(set(names)) == len(expected)
    assert names[0] == "stem.conv"
    modules = dict(model.named_modules())
    for g in s.groups:
        assert "classifier" not in g.members
        assert g.name == g.members[0]
        assert isinstance(modules[g.name], nn.Conv2d)
        assert g.channels == modules[g.name].out_channels
        assert len(g.kept) == len(g.scores) == len(g.drops) == 2
        assert all(v in returned for v in g.scores)
        assert g.drops == tuple(s.base_score - v for v in g.scores)
        assert 0 < g.drops[0] < g.drops[1]
        assert s.drop(g.name, 0.0) == 0.0
        assert s.drop(g.name, 0.5) == pytest.approx(g.drops[1])
    assert s.base_score == _params(model)
    # The same network gives the same names.
    again = layer_sensitivity(_net("resnet:0.25")[0], example, score, ratios=(0.25, 0.5))
    assert [g.name for g in again.groups] == names

    text = json.dumps(s.to_json())
    assert ChannelSensitivity.from_json(json.loads(text)) == s


def test_prune_to_size_target(pruned: tuple[Network, PruneResult, float]) -> None:
    model, result, target = pruned
    fresh, _ = _net("mobilenetv3-small")
    assert result.cost_before == pytest.approx(size_cost()(fresh))
    assert size_cost()(model) == pytest.approx(result.cost_after)
    assert result.cost_after <= target
    assert result.evaluations <= 12
    assert _params(model) < _params(fresh)
    assert macs_cost()(model) < macs_cost()(fresh)
    assert any(result.channels_after[n] < c for n, c in result.channels_before.items())
    for name, c in result.channels_before.items():
        assert 1 <= result.channels_after[name] <= c
        assert 0.0 <= result.ratios[name] <= 0.9
    assert model.classifier.out_features == CLASSES
    json.dumps(result.to_json())

    images = torch.rand(5, 1, SIDE, SIDE)
    with torch.no_grad():
        logits = model.eval()(images)
    assert logits.shape == (5, CLASSES)
    session = make_session(export_onnx(model), 1)
    (onnx_logits,) = session.run(None, {"image": images.numpy()})
    assert np.abs(onnx_logits - logits.numpy()).max() <= 1e-4


def test_sensitive_groups_are_pruned_less() -> None:
    model, example = _net("vgg:0.25")
    names = [g.name for g in layer_sensitivity(model, example, lambda m: 0.0, (0.5,)).groups]
    sensitive = names[len(names) // 2]
    full_channels = dict(model.named_modules())[sensitive].out_channels
    full_params = _params(model)

    def score(m: nn.Module) -> float:
        # Losing channels of `sensitive` costs ten times more than losing all other parameters.
        lost = 1 - dict(m.named_modules())[sensitive].out_channels / full_channels
        return -10 * lost - (1 - _params(m) / full_params)

    s = layer_sensitivity(model, example, score)
    target = 0.7 * size_cost()(model)
    result = prune_to_target(model, example, size_cost(), target, s)
    assert result.cost_after <= target
    others = [r for n, r in result.ratios.items() if n != sensitive]
    assert result.ratios[sensitive] < median(others)
    assert result.ratios[sensitive] < max(others) / 4


def test_unreachable_target_raises_and_leaves_model_unchanged() -> None:
    model, example = _net("vgg:0.25")
    s = layer_sensitivity(model, example, _logit_score(model), ratios=(0.5,))
    before = _state(model)
    size = size_cost()(model)
    with pytest.raises(ConfigError, match="cannot be reached") as info:
        prune_to_target(model, example, size_cost(), 0.001 * size, s)
    assert f"{0.001 * size:g}" in str(info.value) and "looser target" in str(info.value)
    assert _same_state(before, _state(model))


def test_sensitivity_of_another_model_is_refused() -> None:
    model, example = _net("vgg:0.25")
    other, _ = _net("resnet:0.25")
    s = layer_sensitivity(other, example, lambda m: 0.0, ratios=(0.5,))
    with pytest.raises(ConfigError, match="layer_sensitivity"):
        prune_to_target(model, example, size_cost(), 0.5 * size_cost()(model), s)


def test_target_already_met_prunes_nothing() -> None:
    model, example = _net("vgg:0.25")
    s = layer_sensitivity(model, example, lambda m: 0.0, ratios=(0.5,))
    before = _state(model)
    result = prune_to_target(model, example, size_cost(), 2 * size_cost()(model), s)
    assert result.evaluations == 1 and all(r == 0 for r in result.ratios.values())
    assert _same_state(before, _state(model))


def test_latency_cost_measures_an_onnx_export() -> None:
    model, _ = _net("vgg:0.25")
    assert latency_cost(threads=1, min_seconds=0.05)(model) > 0


def test_save_and_load_round_trip(
    pruned: tuple[Network, PruneResult, float], tmp_path: Path
) -> None:
    model, _, _ = pruned
    path = tmp_path / "pruned.pt"
    save_pruned(model, path)
    torch.load(path, weights_only=True)  # plain tensors and numbers only
    loaded = load_pruned(model.genotype, 1, CLASSES, path)
    images = torch.rand(4, 1, SIDE, SIDE)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(images), model.eval()(images))
    with pytest.raises(ConfigError, match="classes"):
        load_pruned(model.genotype, 1, CLASSES + 1, path)


def test_pruned_model_fine_tunes(pruned: tuple[Network, PruneResult, float], data: Any) -> None:
    model = copy.deepcopy(pruned[0])
    before = _state(model)
    result = fit(
        model,
        data,
        Fidelity(epochs=1),
        resolution=SIDE,
        seed=0,
        config=TrainConfig(batch_size=64, augment=False, device="cpu"),
    )
    assert result.accuracy is not None and 0 <= result.accuracy <= 1
    assert not _same_state(before, _state(model))
    val = data.splits.val
    accuracy = evaluate(model, data.images(SIDE)[val], data.labels[val])
    assert 0 <= accuracy <= 1
