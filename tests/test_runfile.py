"""A run in one file: `edgenas init` writes it, `--config` reads it, the command line wins."""

from __future__ import annotations

import importlib
import itertools
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main
from _cli import run_cli
from typer.testing import CliRunner

from edgenas.cli import app
from edgenas.cli._runfile import COMMANDS, option_keys, read_run_file
from edgenas.errors import ConfigError, EdgenasError
from edgenas.space import load_space

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

GROUP: Any = typer.main.get_command(app)
COMMAND = {name: GROUP.commands[name] for name in COMMANDS}
WIDE = {"COLUMNS": "400"}  # so that rich does not wrap the one-line messages


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), env=WIDE)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def sections(text: str) -> dict[str, list[str]]:
    """The keys each table of a template names, set or commented out ('' is the top level)."""
    found: dict[str, list[str]] = {"": []}
    table = ""
    for line in text.splitlines():
        header = re.fullmatch(r"\[(\w+)\]", line)
        if header:
            table = header[1]
            found[table] = []
        key = re.match(r"(?:# )?([a-z_]+) = ", line)
        if key:
            found[table].append(key[1])
    return found


# ------------------------------------------------------------------------------ edgenas init


def test_init_writes_a_template_that_names_every_option_and_runs_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("init")
    assert result.exit_code == 0, result.output
    text = (tmp_path / "run.toml").read_text()
    data = tomllib.loads(text)
    assert data["data"] == "elpv" and data["out"] == "runs/elpv"
    assert data["search"]["max_latency"] == "5ms" and data["search"]["strategy"] == "tpe"
    keys = sections(text)
    search_keys = set(option_keys(COMMAND["search"]))
    assert search_keys - set(keys["search"]) == {"out", "goal"}  # at the top, with data
    assert {"data", "out", "goal"} <= set(keys[""])
    assert set(keys["finalize"]) == set(option_keys(COMMAND["finalize"]))
    assert {"blocks", "kernels", "expansions", "max_depth", "resolutions", "stems",
            "heads"} <= set(keys["space"])  # fmt: skip
    assert "# [[space.stages]]" in text
    for table in ("search", "finalize"):  # every option is explained on the line above it
        lines = text.split(f"[{table}]\n", 1)[1].split("\n\n", 1)[0].splitlines()
        for above, line in itertools.pairwise(lines):
            if re.match(r"(# )?[a-z_]+ = ", line):
                assert above.startswith("# ") and not re.match(r"# [a-z_]+ = ", above), line
    # As written, it is a working run: the data and run of both commands, the set values.
    run = read_run_file(tmp_path / "run.toml", COMMAND)
    assert run.defaults["search"] == {
        "data": "elpv", "out": "runs/elpv", "max_latency": "5ms", "objective": "accuracy",
        "strategy": "tpe", "trials": 20, "epochs": 3, "seed": 0,
    }  # fmt: skip
    assert run.defaults["finalize"] == {"run": "runs/elpv", "pick": "best", "top": 1,
                                        "quantize": "int8"}  # fmt: skip


def test_every_commented_key_of_the_template_is_valid_once_uncommented(tmp_path: Path) -> None:
    invoke("init", str(tmp_path / "all.toml"))
    text = (tmp_path / "all.toml").read_text()
    # Everything on: [search] space stays off, since the [space] table gives the space.
    text = re.sub(r"(?m)^# ([a-z_]+ = .*|\[\[space\.stages\]\].*)$",
                  lambda m: m[0] if m[1].startswith("space =") else m[1], text)  # fmt: skip
    path = write(tmp_path / "all.toml", text)
    search = read_run_file(path, COMMAND).defaults["search"]
    assert search["goal"].startswith("maximize accuracy")
    assert search["resolution"] == "64,96" and search["kernels"] == "3,5,5x3"
    assert search["baseline"] == ["mobilenetv2:0.5"] and search["no_early_stop"] is True
    assert search["space"] == str(path)
    space = load_space(search["space"], blocks=search["blocks"], max_depth=search["max_depth"])
    assert space.name == "all" and set(space.block_types) == {"ir", "ds"}  # type: ignore[attr-defined]


def test_init_refuses_to_overwrite_a_file_without_force(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "run.toml", "# mine\n")
    result = invoke("init")
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0
    assert "run.toml already exists" in result.output and "--force" in result.output
    assert (tmp_path / "run.toml").read_text() == "# mine\n"
    assert invoke("init", "--force").exit_code == 0
    assert "[search]" in (tmp_path / "run.toml").read_text()


# ------------------------------------------------------------------- what the file feeds


class _Captured(EdgenasError):
    pass


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What search and finalize would run, without training: the call ends there."""
    calls: dict[str, list[Any]] = {"search": [], "finalize": []}

    def search(config: Any, view: Any) -> Any:
        calls["search"].append(config)
        raise _Captured("captured")

    def finalize(run: Path, **kwargs: Any) -> Any:
        calls["finalize"].append({"run": run, **kwargs})
        raise _Captured("captured")

    # By module: the package edgenas also has functions named search and finalize.
    monkeypatch.setattr(importlib.import_module("edgenas.study"), "run_search", search)
    monkeypatch.setattr(importlib.import_module("edgenas.finalize"), "finalize", finalize)
    return calls


SEARCH_FILE = """\
data = "synthetic"
out = "runs/syn"

[search]
max_latency = "9ms"
trials = 7
epochs = 2
resolution = [64, 96]
baseline = ["vgg"]
no_early_stop = true
seed = 3
"""


def test_search_takes_the_file_values_and_the_command_line_wins(
    tmp_path: Path, captured: dict[str, Any]
) -> None:
    path = write(tmp_path / "run.toml", SEARCH_FILE)
    invoke("search", "--config", str(path))
    config = captured["search"].pop()
    assert (config.data, config.out, config.trials, config.epochs, config.seed) == (
        "synthetic", Path("runs/syn"), 7, 2, 3)  # fmt: skip
    assert config.constraints.max_latency_ms == 9.0
    assert config.space.resolutions == (64, 96)
    assert config.baselines == ("vgg",) and config.early_stopping is False
    # Options and DATA given on the command line win, wherever they stand.
    invoke("search", "other", "--trials", "2", "--config", str(path), "--max-latency", "4ms")
    config = captured["search"].pop()
    assert (config.data, config.trials, config.epochs) == ("other", 2, 2)
    assert config.constraints.max_latency_ms == 4.0


def test_a_file_is_the_equivalent_command_line(tmp_path: Path, captured: dict[str, Any]) -> None:
    path = write(tmp_path / "run.toml", SEARCH_FILE)
    invoke("search", "--config", str(path))
    invoke("search", "synthetic", "--out", "runs/syn", "--max-latency", "9ms", "--trials", "7",
           "--epochs", "2", "--resolution", "64,96", "--baseline", "vgg", "--no-early-stop",
           "--seed", "3")  # fmt: skip
    from_file, from_options = captured["search"]
    assert from_file == from_options


def test_the_goal_comes_from_the_top_or_from_search_and_options_win(
    tmp_path: Path, captured: dict[str, Any]
) -> None:
    top = write(
        tmp_path / "top.toml", 'data = "synthetic"\ngoal = "accuracy vs latency under 20 ms"\n'
    )
    invoke("search", "--config", str(top))
    config = captured["search"].pop()
    assert config.objective == "pareto" and config.constraints.max_latency_ms == 20.0
    invoke("search", "--config", str(top), "--max-latency", "7ms")
    assert captured["search"].pop().constraints.max_latency_ms == 7.0
    inside = write(tmp_path / "inside.toml",
                   'data = "synthetic"\n[search]\ngoal = "best accuracy under 5ms"\n')  # fmt: skip
    invoke("search", "--config", str(inside))
    assert captured["search"].pop().constraints.max_latency_ms == 5.0


def test_a_space_table_is_the_space_unless_the_command_line_gives_one(
    tmp_path: Path, captured: dict[str, Any]
) -> None:
    path = write(tmp_path / "narrow.toml", 'data = "synthetic"\n\n[space]\nblocks = ["ir"]\n'
                 "resolutions = [64]\n\n[[space.stages]]\nstride = 2\nwidths = [16]\n")  # fmt: skip
    invoke("search", "--config", str(path))
    space = captured["search"].pop().space
    assert space.name == "narrow" and space.block_types == ("ir",) and len(space.stages) == 1
    invoke("search", "--config", str(path), "--space", "edge")
    assert captured["search"].pop().space.name == "edge"


def test_finalize_takes_the_run_and_its_options_from_the_file(
    tmp_path: Path, captured: dict[str, Any]
) -> None:
    path = write(tmp_path / "run.toml", 'out = "runs/syn"\n\n[finalize]\nepochs = 4\n'
                 'prune = "structured"\ntarget_latency = "70%"\nquantize = "none"\n')  # fmt: skip
    invoke("finalize", "--config", str(path))
    call = captured["finalize"].pop()
    assert call["run"] == Path("runs/syn") and call["epochs"] == 4
    options = call["options"]
    assert (options.prune, options.target_latency, options.quantize) == (
        "structured", "70%", "none")  # fmt: skip
    invoke("finalize", "runs/other", "--config", str(path), "--epochs", "1")
    call = captured["finalize"].pop()
    assert call["run"] == Path("runs/other") and call["epochs"] == 1


# -------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('data = "synthetic"\n[search]\ntrials =\n', ["not valid TOML", "line 3"]),
        ("[search]\ntrails = 3\n", ["[search] has no key trails", "did you mean trials?"]),
        ('[search]\ntrials = "many"\n', ["[search] trials", "whole number", '"many"']),
        ('[search]\nno_early_stop = "yes"\n', ["no_early_stop", "true or false"]),
        ("[serach]\ntrials = 3\n", ["unknown table [serach]", "did you mean [search]?"]),
        ('[search]\nprune = "structured"\n', ["prune", "put it under [finalize]"]),
        ("trials = 3\n", ["trials", "put it under [search]"]),
        ("dataa = 'x'\n", ["unknown key dataa", "did you mean data?"]),
        ("[space]\nkernel = ['3']\n", ["[space] has no key kernel", "did you mean kernels?"]),
        ("[space]\n[[space.stages]]\nstrides = 2\n", ["[[space.stages]]", "did you mean stride?"]),
        ("[[stages]]\nstride = 2\n", ["[[space.stages]]"]),
        ('out = "a"\n[search]\nout = "b"\n', ["out is given twice"]),
        ('[search]\nspace = "edge"\n[space]\nblocks = ["ir"]\n', ["space is given twice"]),
    ],
)  # fmt: skip
def test_a_bad_file_gets_one_line_naming_the_file_and_the_fix(
    tmp_path: Path, text: str, named: list[str]
) -> None:
    path = write(tmp_path / "run.toml", text)
    with pytest.raises(ConfigError) as info:
        read_run_file(path, COMMAND)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    for part in named:
        assert part in message


def test_the_command_line_prints_the_error_alone(tmp_path: Path) -> None:
    path = write(tmp_path / "run.toml", '[search]\ntrials = "many"\n')
    for command in COMMANDS:
        result = invoke(command, "--config", str(path))
        assert result.exit_code == 2
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and "trials" in lines[0]
    result = invoke("search", "--config", str(tmp_path / "missing.toml"))
    assert result.exit_code == 2 and "missing.toml does not exist" in result.output
    assert "edgenas init" in result.output
    result = invoke("search")
    assert result.exit_code == 2 and "--config" in result.output


# ------------------------------------------------------------------------------ end to end


@pytest.mark.slow
def test_a_search_from_a_file_records_its_values_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "syn"
    path = write(tmp_path / "run.toml", f'data = "synthetic"\nout = {json.dumps(str(out))}\n'
                 '[search]\nmax_latency = "50ms"\ntrials = 1\nepochs = 1\nresolution = 64\n'
                 "max_depth = 2\nseed = 1\n")  # fmt: skip
    first = run_cli("search", "--config", str(path), "--seed", "5")
    assert first.returncode == 0, first.stderr
    spec = json.loads((out / "spec.json").read_text())
    assert spec["data"] == "synthetic" and spec["epochs"] == 1
    assert spec["constraints"] == {"max_latency_ms": 50.0}
    assert spec["seed"] == 5  # the command line won over the file
    assert spec["space"]["choices"]["res"] == [64]
    results = json.loads((out / "results.json").read_text())
    assert sum(t["trained"] for t in results["trials"]) == 1
    again = run_cli("search", "--config", str(path), "--seed", "5")
    assert again.returncode == 0, again.stderr
    assert json.loads((out / "spec.json").read_text()) == spec
    resumed = json.loads((out / "results.json").read_text())
    assert [t["number"] for t in resumed["trials"]] == [t["number"] for t in results["trials"]]


def test_the_readme_example_is_a_valid_run_file(tmp_path: Path) -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("## A run in one file", 1)[1]
    example = section.split("```toml\n", 1)[1].split("```", 1)[0]
    path = write(tmp_path / "run.toml", example)
    run = read_run_file(path, COMMAND)
    assert run.defaults["search"]["resolution"] == "64,96"
    assert run.defaults["search"]["space"] == str(path)
    assert run.defaults["finalize"]["run"] == "runs/elpv"
    load_space(str(path))
