"""Spaces from the command line: TOML files, Python objects, and narrowing flags."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgenas.errors import ConfigError
from edgenas.space import StagedSpace, load_space


def test_toml_narrows_the_edge_space(tmp_path: Path) -> None:
    path = tmp_path / "space.toml"
    path.write_text('blocks = ["ir", "ds"]\nkernels = ["3", "5x3"]\nmax_depth = 2\n'
                    "resolutions = [64]\n")  # fmt: skip
    space = load_space(str(path))
    rng = np.random.default_rng(0)
    for _ in range(50):
        g = space.sample(rng)
        assert g.resolution == 64
        assert {b.type for b in g.blocks} <= {"ir", "ds"}
        assert {b.kernel for b in g.blocks} <= {(3, 3), (5, 3)}
    assert space.name == "space"


def test_toml_stages_and_command_line_overrides(tmp_path: Path) -> None:
    path = tmp_path / "tiny.toml"
    path.write_text(
        "[space]\nstems = [8]\nheads = [0]\n"
        "[[space.stages]]\nstride = 2\nwidths = [16, 24]\ndepths = [1, 2, 3]\n"
        "[[space.stages]]\nstride = 2\nwidths = [32]\n"
    )
    space = load_space(str(path), max_depth=1, blocks="conv")
    assert isinstance(space, StagedSpace)
    g = space.sample(np.random.default_rng(1))
    assert len(g.blocks) == 2 and g.stem == 8 and g.head == 0
    assert all(b.type == "conv" for b in g.blocks)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("blockz = ['ir']\n", "blockz"),
        ("blocks = ['ir'\n", "not valid TOML"),
        ("[[stages]]\nwidths = [8]\n", "stride"),
        ("kernels = ['4']\n", "kernel"),
    ],
)
def test_bad_toml_names_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_space(str(path))


def test_python_space_by_module_attribute() -> None:
    space = load_space("edgenas.space:edge_space")
    assert isinstance(space, StagedSpace) and space.name == "edge"
    with pytest.raises(ConfigError, match="narrow it there"):
        load_space("edgenas.space:edge_space", blocks="ir")
    with pytest.raises(ConfigError, match="cannot import"):
        load_space("no_such_module:space")
    with pytest.raises(ConfigError, match="not understood"):
        load_space("mobile")
