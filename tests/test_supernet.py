"""The weight-sharing supernet: subnets are slices of it, and extracting one changes nothing."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from torch import nn

from edgenas.arch import BLOCK_TYPES, Genotype
from edgenas.data import ImageDataset, load_dataset
from edgenas.errors import ConfigError
from edgenas.oneshot import (
    SubnetSampler,
    Supernet,
    SupernetEpoch,
    SupernetResult,
    SupernetTraining,
    read_checkpoint,
    stage_positions,
    train_supernet,
)
from edgenas.space import StagedSpace, StageSpec, edge_space
from edgenas.train import TrainConfig

# A small staged space with every block type, kernel shape, SE, residuals and long skips.
SMALL = StagedSpace(
    stages=(StageSpec(1, (8, 16)), StageSpec(2, (16, 24), (1, 2, 3)), StageSpec(2, (24, 32))),
    resolutions=(32, 40),
    stems=(8, 16),
    heads=(0, 64),
    expansions=(1, 3, 6),
)


def _randomised(net: Supernet) -> Supernet:
    """Non-trivial BatchNorm statistics and affine terms, so a wrong slice shows."""
    generator = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=generator) * 0.2)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=generator) + 0.5)
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=generator) + 0.5)
            m.bias.data.copy_(torch.randn(m.bias.shape, generator=generator) * 0.1)
    return net


def _sample(space: StagedSpace, rng: random.Random, **fixed: object) -> Genotype:
    params = {k: rng.choice(d.choices) for k, d in space.distributions().items()}
    for key in params:
        for label, value in fixed.items():
            if key.endswith(f".{label}"):
                params[key] = value
    return space.decode(params)


@pytest.fixture(scope="module")
def supernet() -> Supernet:
    torch.manual_seed(0)
    return _randomised(Supernet(SMALL, 3, 5)).eval()


@pytest.mark.parametrize("block_type", BLOCK_TYPES)
def test_extracted_subnet_equals_the_supernet_on_random_genotypes(
    supernet: Supernet, block_type: str
) -> None:
    rng = random.Random(block_type)
    seen_kernels, seen_skips = set(), set()
    for _ in range(12):
        genotype = _sample(SMALL, rng, type=block_type)
        seen_kernels.update(b.kernel for b in genotype.blocks)
        seen_skips.update(b.skip for b in genotype.blocks)
        x = torch.rand(3, 3, genotype.resolution, genotype.resolution)
        with torch.no_grad():
            expected = supernet(x, genotype)
            network = supernet.extract(genotype)
            assert torch.allclose(network(x), expected, atol=1e-6), str(genotype)
        assert type(network).__name__ == "Network" and network.genotype == genotype
    # the draws covered asymmetric kernels and long skips
    assert (5, 3) in seen_kernels or (3, 5) in seen_kernels
    assert seen_skips - {0}


def test_mixed_genotypes_of_the_default_space_extract_equal() -> None:
    torch.manual_seed(0)
    space = edge_space(max_depth=2, resolutions="64")
    net = _randomised(Supernet(space, 1, 2)).eval()
    rng = random.Random(7)
    for _ in range(6):
        genotype = _sample(space, rng)
        x = torch.rand(2, 1, 64, 64)
        with torch.no_grad():
            assert torch.allclose(net.extract(genotype)(x), net(x, genotype), atol=1e-6)


def test_kernels_are_centre_crops_and_channels_leading_slices(supernet: Supernet) -> None:
    genotype = Genotype.parse(
        "r32-stem8-conv_k5x3_c8-res_k3_c16_s2-ir_k3x5_e3_c24_s2_se-head0"
    )  # fmt: skip
    network = supernet.extract(genotype)
    assert stage_positions(SMALL, genotype) == ((0, 0), (1, 0), (2, 0))
    big = supernet.stages[0][0]["conv"].conv1.conv.weight
    assert big.shape == (16, 16, 7, 7)  # widest output, widest input (stem 16), 7×7
    small = network.blocks[0].conv1.conv.weight
    assert torch.equal(small, big[:8, :8, 1:6, 2:5])
    ir = supernet.stages[2][0]["ir"]
    hidden = 16 * 3  # input channels × expansion
    assert torch.equal(network.blocks[2].dw.conv.weight, ir.dw.conv.weight[:hidden, :, 2:5, 1:6])
    assert torch.equal(network.blocks[2].se.reduce.weight, ir.se.reduce.weight[:16, :hidden])
    # the projection of a res block whose shape changes is the supernet's, sliced
    res = supernet.stages[1][0]["res"]
    assert torch.equal(network.blocks[1].shortcut.conv.weight, res.shortcut.conv.weight[:16, :8])


def test_subnets_share_weights_and_training_one_trains_the_supernet() -> None:
    torch.manual_seed(0)
    net = Supernet(SMALL, 3, 5).train()
    a = Genotype.parse("r32-stem8-ds_k3_c8-ds_k3_c16_s2-ds_k3_c24_s2-head0")
    b = Genotype.parse("r32-stem16-ds_k5_c16-ds_k5_c24_s2-ds_k5_c32_s2-head64")
    shared = net.stages[0][0]["ds"].dw.conv.weight
    before = shared.detach().clone()
    running = net.stages[1][0]["ds"].pw.bn.running_mean.clone()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    nn.functional.cross_entropy(net(x, a), y).backward()
    optimizer.step()
    # a's 3×3 depthwise kernel is the centre of the shared 7×7 (16 channels): only that moved
    moved = (shared.detach() != before).any(dim=1)
    assert moved[:8, 2:5, 2:5].all() and not moved[8:].any() and not moved[:, 0].any()
    # training mode updated the supernet's running statistics through the slice
    assert not torch.equal(net.stages[1][0]["ds"].pw.bn.running_mean[:16], running[:16])
    assert torch.equal(net.stages[1][0]["ds"].pw.bn.running_mean[16:], running[16:])
    # b sees a's update where they overlap
    network = net.extract(b)
    centre = network.blocks[0].dw.conv.weight[:8, :, 1:4, 1:4]
    assert torch.equal(centre, shared.detach()[:8, :, 2:5, 2:5])


def test_largest_and_smallest_subnets_bound_the_space(supernet: Supernet) -> None:
    largest, smallest = supernet.largest_genotype(), supernet.smallest_genotype()
    assert largest.resolution == 40 and smallest.resolution == 32
    assert len(largest.blocks) == 4 + 3 + 4 and len(smallest.blocks) == 3
    assert {b.kernel for b in largest.blocks} == {(7, 7)}
    assert {b.kernel for b in smallest.blocks} == {(3, 3)}
    params = [sum(p.numel() for p in supernet.extract(g).parameters()) for g in (smallest, largest)]
    assert params[0] < params[1]


def test_a_genotype_outside_the_space_is_refused_by_name(supernet: Supernet) -> None:
    outside = Genotype.parse("r32-stem8-conv_k3_c64-head0")
    with pytest.raises(ConfigError, match="does not fit the space"):
        supernet.extract(outside)
    with pytest.raises(ConfigError, match="staged space"):
        Supernet(object(), 3, 5)


# -- training ----------------------------------------------------------------------------------
TINY = StagedSpace(
    stages=(StageSpec(1, (8,), (1,)), StageSpec(2, (8, 16), (1, 2)), StageSpec(2, (16,), (1,))),
    resolutions=(24, 32),
    stems=(8,),
    heads=(0,),
    block_types=("ds", "ir", "res"),
    kernels=("3", "5x3"),
    expansions=(1, 3),
)


@pytest.fixture(scope="module")
def synthetic() -> ImageDataset:
    return load_dataset("synthetic")


class _Killed(Exception):
    """Stands for the process being killed right after an epoch's checkpoint."""


def _train(
    data: ImageDataset, path: Path, epochs: int, stop_after: int | None = None
) -> tuple[Supernet, SupernetResult, list[SupernetEpoch]]:
    torch.manual_seed(0)
    net = Supernet(TINY, data.channels, data.num_classes, data.mean, data.std)
    sampler = SubnetSampler(TINY, data.channels, data.num_classes, seed=0, pool=50)
    seen: list[SupernetEpoch] = []

    def progress(epoch: SupernetEpoch) -> None:
        seen.append(epoch)
        if epoch.epoch == stop_after:
            raise _Killed

    result = train_supernet(
        net, data, sampler, training=SupernetTraining(epochs=epochs, random_subnets=1),
        config=TrainConfig(batch_size=64), checkpoint=path, progress=progress,
    )  # fmt: skip
    return net, result, seen


def test_a_killed_training_resumes_where_it_stopped(
    synthetic: ImageDataset, tmp_path: Path
) -> None:
    whole = tmp_path / "whole" / "supernet.pt"
    net, result, seen = _train(synthetic, whole, epochs=2)
    assert result.status == "complete" and result.epochs == 2 and result.resumed_from == 0
    assert [e.epoch for e in seen] == [1, 2] and "left" in seen[0].time_left
    # the teacher learns: better than chance (4 classes) on validation after two epochs
    assert seen[-1].teacher_accuracy > 0.4
    finished = read_checkpoint(whole)
    assert finished.complete and "optimizer" not in finished.state

    cut = tmp_path / "cut" / "supernet.pt"
    with pytest.raises(_Killed):
        _train(synthetic, cut, epochs=2, stop_after=1)
    halfway = read_checkpoint(cut)
    assert halfway.epoch == 1 and not halfway.complete and "optimizer" in halfway.state
    resumed, result, seen = _train(synthetic, cut, epochs=2)
    assert result.resumed_from == 1 and [e.epoch for e in seen] == [2]
    # the resumed training took the steps the uninterrupted one took
    expected = net.state_dict()
    for name, tensor in resumed.state_dict().items():
        assert torch.allclose(tensor, expected[name], atol=1e-5), name


def test_a_checkpoint_of_another_supernet_is_refused(
    synthetic: ImageDataset, tmp_path: Path
) -> None:
    path = tmp_path / "supernet.pt"
    _train(synthetic, path, epochs=1)
    other = StagedSpace(stages=TINY.stages, resolutions=(32,), stems=(8,), heads=(0,),
                        block_types=("ds",), kernels=("3",))  # fmt: skip
    net = Supernet(other, 1, 4)
    sampler = SubnetSampler(other, 1, 4, pool=10)
    once = SupernetTraining(epochs=1)
    with pytest.raises(ConfigError, match="another space"):
        train_supernet(net, synthetic, sampler, training=once, checkpoint=path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="cannot be read"):
        train_supernet(net, synthetic, sampler, training=once, checkpoint=path)


def test_a_time_limit_cuts_the_epochs_to_what_it_holds(synthetic: ImageDataset) -> None:
    torch.manual_seed(0)
    net = Supernet(TINY, synthetic.channels, synthetic.num_classes)
    sampler = SubnetSampler(TINY, synthetic.channels, synthetic.num_classes, pool=20)
    # 50 epochs asked for, and far less time than one takes: the schedule is made for one
    result = train_supernet(
        net, synthetic, sampler, training=SupernetTraining(epochs=50, seconds=0.01)
    )
    assert result.status == "complete" and result.epochs == 1
