"""edgenas.space: the search-space contract (run against every space), labels, narrowing,
baselines in the space, user-defined staged spaces."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from optuna.distributions import CategoricalDistribution

from edgenas.arch import BLOCK_TYPES, KERNELS, Genotype, baseline
from edgenas.errors import ConfigError
from edgenas.space import EDGE_STAGES, SearchSpace, StagedSpace, StageSpec, edge_space

# ---------------------------------------------------------------------------------------------
# spaces every contract test runs against


def _custom() -> StagedSpace:
    return StagedSpace(
        stages=(StageSpec(2, (16, 24)), StageSpec(1, (16, 24), (1, 3)), StageSpec(2, (32, 48))),
        resolutions=(32, 48),
        stems=(8, 16),
        heads=(0, 64),
        block_types=("ir", "ds", "res"),
        kernels=("3", "5x3"),
        expansions=(2, 4),
        name="tiny",
    )


SPACES: dict[str, Callable[[], SearchSpace]] = {
    "edge": edge_space,
    "narrowed": lambda: edge_space(blocks="ir,ds", kernels="3,5,5x3", max_depth=3),
    "no-skips-no-se": lambda: edge_space(skips=False, se=False, resolutions="64,96"),
    "custom": _custom,
}


@pytest.fixture(params=sorted(SPACES))
def space_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def space(space_name: str) -> SearchSpace:
    return SPACES[space_name]()


def _random_params(space: SearchSpace, rng: np.random.Generator) -> dict[str, Any]:
    params = {}
    for label, dist in space.distributions().items():
        assert isinstance(dist, CategoricalDistribution)
        params[label] = dist.choices[int(rng.integers(len(dist.choices)))]
    return params


# ---------------------------------------------------------------------------------------------
# the contract


def test_decode_inverts_encode_on_samples(space: SearchSpace) -> None:
    rng = np.random.default_rng(0)
    for _ in range(300):
        g = space.sample(rng)
        params = space.encode(g)
        assert space.decode(params) == g, str(g)
        assert space.contains(g)


def test_encode_of_decoded_params_decodes_the_same(space: SearchSpace) -> None:
    rng = np.random.default_rng(1)
    dists = space.distributions()
    for _ in range(200):
        g = space.decode(_random_params(space, rng))
        params = space.encode(g)
        # every label is assigned one of its own choices, so the params can be enqueued as a trial
        assert params.keys() == dists.keys()
        for label, value in params.items():
            assert value in dists[label].choices, label  # type: ignore[attr-defined]
        assert space.decode(params) == g, str(g)


def test_same_seed_same_samples(space: SearchSpace) -> None:
    first = [space.sample(np.random.default_rng(7)) for _ in range(3)]
    again = [space.sample(np.random.default_rng(7)) for _ in range(3)]
    assert first == again
    rng_a, rng_b = np.random.default_rng(7), np.random.default_rng(7)
    assert [str(space.sample(rng_a)) for _ in range(20)] == [
        str(space.sample(rng_b)) for _ in range(20)
    ]
    rng = np.random.default_rng(8)
    assert len({str(space.sample(rng)) for _ in range(20)}) > 1


def test_labels_are_stable(space: SearchSpace, space_name: str) -> None:
    other = SPACES[space_name]()
    d1, d2, d3 = space.distributions(), space.distributions(), other.distributions()
    assert list(d1) == list(d2) == list(d3)
    assert d1 == d3
    d1.clear()  # callers get a copy
    assert space.distributions() == d2
    # the description a run stores is JSON and the same for an equal space
    assert json.loads(json.dumps(space.describe())) == other.describe()


def test_decode_with_a_missing_label_is_a_config_error(space: SearchSpace) -> None:
    params = _random_params(space, np.random.default_rng(2))
    del params["s0.depth"]
    with pytest.raises(ConfigError, match=r"s0\.depth"):
        space.decode(params)


# ---------------------------------------------------------------------------------------------
# the edge space: labels, narrowing


def test_edge_labels() -> None:
    d = edge_space().distributions()
    for label in ("res", "stem", "head", "s0.depth", "s0.width", "s0.act", "s2.b1.k", "s5.b3.skip"):
        assert label in d
    assert d["s2.b1.k"].choices == KERNELS  # type: ignore[attr-defined]
    assert d["s1.b0.type"].choices == BLOCK_TYPES  # type: ignore[attr-defined]
    assert d["s0.depth"].choices == (1, 2, 3, 4)  # type: ignore[attr-defined]
    assert f"s{len(EDGE_STAGES)}.depth" not in d
    assert "s0.b4.k" not in d  # no block beyond the deepest choice


def test_narrowed_space_samples_only_what_was_asked() -> None:
    space = edge_space(blocks="ir,ds", kernels="3,5,5x3", max_depth=3)
    d = space.distributions()
    assert all(d[f"s{i}.depth"].choices == (1, 2, 3) for i in range(len(EDGE_STAGES)))  # type: ignore[attr-defined]
    assert "s0.b3.type" not in d
    rng = np.random.default_rng(3)
    seen_types, seen_kernels = set(), set()
    for _ in range(200):
        g = space.sample(rng)
        seen_types |= {b.type for b in g}
        seen_kernels |= {b.kernel for b in g}
        params = space.encode(g)
        assert all(params[f"s{i}.depth"] <= 3 for i in range(len(EDGE_STAGES)))
        assert len(g) <= 3 * len(EDGE_STAGES)
        # the stride-2 blocks start stages 1, 2, 3 and 5 (stage 4 has stride 1): so the runs
        # between them hold stages 0, 1, 2, 3+4 and 5
        cuts = [0, *(i for i, b in enumerate(g) if b.stride == 2), len(g)]
        runs = [b - a for a, b in itertools.pairwise(cuts)]
        assert len(runs) == 5
        assert all(r <= limit for r, limit in zip(runs, [3, 3, 3, 6, 3], strict=True)), str(g)
    assert seen_types == {"ir", "ds"}
    assert seen_kernels == {(3, 3), (5, 5), (5, 3)}
    # the unnarrowed space holds what the narrowed one leaves out
    g = space.sample(rng)
    with_conv = g.with_blocks([replace(g.blocks[0], type="conv", expansion=1), *g.blocks[1:]])
    assert not space.contains(with_conv)
    assert edge_space().contains(with_conv)


def test_narrowing_options() -> None:
    assert edge_space(se=False).distributions()["s0.b0.se"].choices == (False,)  # type: ignore[attr-defined]
    assert edge_space(skips=False).distributions()["s0.b0.skip"].choices == (0,)  # type: ignore[attr-defined]
    assert edge_space(expansions=[3, 6]).distributions()["s3.b2.e"].choices == (3, 6)  # type: ignore[attr-defined]
    assert edge_space(resolutions="64, 96").distributions()["res"].choices == (64, 96)  # type: ignore[attr-defined]
    assert edge_space(kernels="3, 5X3").kernels == ("3", "5x3")
    assert edge_space(max_depth=1).distributions()["s4.depth"].choices == (1,)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"blocks": "ir,mbconv"}, "mbconv"),
        ({"max_depth": 0}, "0"),
        ({"expansions": "0,6"}, "[0]"),
        ({"expansions": "six"}, "'six'"),
        ({"resolutions": "96px"}, "'96px'"),
        ({"blocks": ""}, "block types"),
    ],
)
def test_bad_narrowing_is_a_config_error(options: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        edge_space(**options)
    assert fragment in str(info.value)


def test_bad_kernel_narrowing_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="'4'"):
        edge_space(kernels="3,4")


# ---------------------------------------------------------------------------------------------
# baselines and genotypes from outside the space


def test_mobilenetv2_is_in_the_edge_space() -> None:
    space = edge_space()
    g = baseline("mobilenetv2")
    assert space.contains(g)
    params = space.encode(g)
    assert space.decode(params) == g
    assert [params[f"s{i}.depth"] for i in range(6)] == [1, 2, 3, 4, 3, 3]
    assert params["head"] == 1280


def test_resnet_is_not_in_the_edge_space() -> None:
    space = edge_space()
    g = baseline("resnet")
    assert not space.contains(g)
    with pytest.raises(ConfigError) as info:
        space.encode(g)
    message = str(info.value)
    assert str(g) in message
    assert "does not fit the space 'edge'" in message
    assert "stage 0" in message


def test_resnet_rejection_names_the_width() -> None:
    with pytest.raises(ConfigError, match=r"widths \[64\]"):
        edge_space().encode(baseline("resnet"))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("r100-stem16-ir_k3_e4_c16-head0", "res 100"),
        ("r96-stem12-ir_k3_e4_c16-head0", "stem 12"),
        ("r96-stem16-ir_k3_e4_c16-head100", "head 100"),
        ("r96-stem16-ir_k9_e4_c16-ir_k3_e4_c24_s2-ir_k3_e4_c32_s2-ir_k3_e4_c48_s2"
         "-ir_k3_e4_c64-ir_k3_e4_c96_s2-head0", "k=9"),
        ("r96-stem16-ir_k3_e4_c16", "does not fit the space 'edge'"),
    ],
)  # fmt: skip
def test_encode_names_what_is_out_of_the_space(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        edge_space().encode(Genotype.parse(text))
    assert fragment in str(info.value)


# ---------------------------------------------------------------------------------------------
# user-defined spaces


def test_user_defined_staged_space() -> None:
    space = _custom()
    d = space.distributions()
    assert {k.split(".")[0] for k in d if k.startswith("s")} == {"s0", "s1", "s2", "stem"}
    assert "s1.b2.type" in d
    assert "s0.b3.type" in d and "s0.b4.type" not in d  # default depths go up to 4
    rng = np.random.default_rng(4)
    depths = set()
    for _ in range(100):
        g = space.sample(rng)
        assert g.resolution in (32, 48)
        assert {b.type for b in g} <= {"ir", "ds", "res"}
        assert [b.stride for b in g].count(2) == 2
        depths.add(space.encode(g)["s1.depth"])
    assert depths == {1, 3}
    # lists are accepted where tuples are expected
    as_lists = StagedSpace(stages=[StageSpec(1, (8,))], resolutions=[32], block_types=["ds"])  # type: ignore[arg-type]
    assert as_lists.resolutions == (32,)
    assert str(as_lists.sample(np.random.default_rng(0))).startswith("r32-")


def test_stage_depths_in_any_order() -> None:
    space = StagedSpace(
        stages=(StageSpec(1, (16,), (2, 1)),), resolutions=(32,), stems=(16,), heads=(0,)
    )
    rng = np.random.default_rng(0)
    for _ in range(20):
        g = space.sample(rng)
        assert space.decode(space.encode(g)) == g


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda: StageSpec(3, (16,)), "stride"),
        (lambda: StageSpec(1, ()), "widths"),
        (lambda: StageSpec(1, (16,), (0, 1)), "depths"),
        (lambda: StagedSpace(stages=()), "at least one stage"),
        (lambda: StagedSpace(resolutions=()), "resolutions"),
        (lambda: StagedSpace(expansions=(1, 9)), "[9]"),
        (lambda: StagedSpace(skips=(0, 1)), "[1]"),
        (lambda: StagedSpace(block_types=("ir", "vit")), "vit"),
    ],
)
def test_bad_space_definition_is_a_config_error(make: Callable[[], Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        make()
    assert fragment in str(info.value)
