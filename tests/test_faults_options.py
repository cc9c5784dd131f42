"""Fault injection: options and run files that are wrong are refused before anything is
written, in one line naming the option.

Each bad value is one a user could type: a zero or negative count, a limit below zero, a
resolution no network takes or no memory holds, a run file saved in another encoding, a
``--space`` that names something other than a space. Most tests make the config, or run the
command, in this process; two (slow) run the real command as a user would. The command-line
tests check for one error line, no traceback, and a run directory not made or left as it was.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import typer.main
from _cli import run_cli

from edgenas.cli import app
from edgenas.cli._runfile import COMMANDS, read_run_file
from edgenas.errors import ConfigError
from edgenas.finalize import CompressOptions
from edgenas.space import edge_space, load_space
from edgenas.study import SearchConfig, config_from_options

# --------------------------------------------------------------------- each option, in process


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"latency_threads": 0}, "--latency-threads"),
        ({"latency_threads": -3}, "--latency-threads"),
        ({"latency_threads": 100_000}, "--latency-threads"),
        ({"threads": 0}, "--threads"),
        ({"threads": -1}, "--threads"),
        ({"threads": 100_000}, "--threads"),
        ({"batch_size": 0}, "--batch-size"),
        ({"batch_size": 1}, "--batch-size"),  # a batch of one breaks BatchNorm
        ({"train_device": "gpu"}, "--train-device"),
        ({"seed": -1}, "--seed"),
        ({"seed": 2**32}, "--seed"),  # beyond what Optuna's samplers take
        ({"strategy": "magic"}, "--strategy"),
        ({"objective": "speed"}, "--objective"),
        ({"resolutions": "7"}, "--resolution"),
        ({"resolutions": "0"}, "--resolution"),
        ({"resolutions": "64,20000"}, "--resolution"),
        ({"resolutions": "big"}, "--resolution"),
        ({"storage": "not a url"}, "--storage"),
        # From Python, values of the wrong type (the command line's own types are checked by it).
        ({"trials": 2.5}, "--trials"),
        ({"epochs": 1.5}, "--epochs"),
        ({"data_fraction": "0.5"}, "--data-fraction"),
    ],
)
def test_a_bad_value_is_refused_naming_its_option(options: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_options("synthetic", **options)
    message = str(info.value)
    assert named in message
    assert "TrainConfig" not in message  # an internal name means nothing to the user


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("max_latency", "-5ms"),
        ("max_latency", "0ms"),
        ("max_memory", "-50MB"),
        ("max_size", "-2MB"),
        ("max_macs", "-100M"),
        ("max_energy", "-5mJ"),
        ("time_budget", "-30m"),
        ("time_budget", "-1h30m"),
        ("time_budget", "0s"),
    ],
)
def test_a_limit_below_zero_must_be_positive(option: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_options("synthetic", **{option: value})
    message = str(info.value)
    assert "must be positive" in message and "not understood" not in message
    assert "--" + option.replace("_", "-") in message


def test_a_time_budget_in_seconds_below_zero_is_refused() -> None:
    with pytest.raises(ConfigError, match="--time-budget must be positive"):
        config_from_options("synthetic", time_budget=-60)


def test_a_pruning_target_below_zero_must_be_positive() -> None:
    with pytest.raises(ConfigError, match=r"--target-latency.*must be positive"):
        CompressOptions(prune="structured", target_latency="-3ms")


def test_the_bounds_themselves_are_accepted() -> None:
    config = config_from_options(
        "synthetic", resolutions="8,1024", latency_threads=256, threads=256, seed=0, batch_size=2
    )
    assert config.space.distributions()["res"].choices == (8, 1024)
    assert (config.latency_threads, config.threads) == (256, 256)


def test_a_space_made_in_python_with_a_resolution_no_network_takes_is_refused() -> None:
    with pytest.raises(ConfigError, match="the space 'edge': resolutions: 4 is outside 8"):
        SearchConfig(data="synthetic", space=edge_space(resolutions="4,64"))


def test_a_toml_space_with_a_resolution_no_network_takes_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "tiny.toml"
    path.write_text("resolutions = [4, 64]\n")
    with pytest.raises(ConfigError, match=r"tiny\.toml: resolutions: 4 is outside 8"):
        load_space(str(path))


# ------------------------------------------------------------------------- --space module:attr


@pytest.fixture
def user_spaces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A module of things a --space may name; ``calls`` records what was called."""
    (tmp_path / "user_spaces.py").write_text(
        textwrap.dedent(
            """
            from edgenas.space import edge_space

            calls = []

            def needs_width(width):
                calls.append("needs_width")
                return edge_space()

            def breaks():
                calls.append("breaks")
                raise RuntimeError("no space today")

            def gives_text():
                return "edge"

            def small():
                return edge_space(max_depth=1)

            class NotASpace:
                def __init__(self):
                    calls.append("NotASpace")
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "user_spaces", raising=False)
    import user_spaces

    return user_spaces


def test_a_space_function_that_needs_arguments_is_refused_without_being_called(
    user_spaces: Any,
) -> None:
    with pytest.raises(ConfigError, match=r"--space user_spaces:needs_width.*needs arguments"):
        load_space("user_spaces:needs_width")
    assert user_spaces.calls == []


def test_a_class_that_is_not_a_space_is_refused_without_being_made(user_spaces: Any) -> None:
    with pytest.raises(ConfigError, match=r"--space user_spaces:NotASpace.*not a SearchSpace"):
        load_space("user_spaces:NotASpace")
    assert user_spaces.calls == []


def test_a_space_function_that_fails_is_one_config_error(user_spaces: Any) -> None:
    with pytest.raises(ConfigError, match=r"--space user_spaces:breaks.*no space today"):
        load_space("user_spaces:breaks")


def test_a_space_function_returning_something_else_names_its_type(user_spaces: Any) -> None:
    with pytest.raises(ConfigError, match="returned a str, not a SearchSpace"):
        load_space("user_spaces:gives_text")


def test_a_space_function_or_class_without_arguments_still_works(user_spaces: Any) -> None:
    assert load_space("user_spaces:small").distributions()["s0.depth"].choices == (1,)
    assert load_space("edgenas.space:StagedSpace").name == "edge"


def test_a_builtin_that_needs_arguments_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"--space os:system.*needs arguments"):
        load_space("os:system")


# --------------------------------------------------------------------------------- run files


def _commands() -> dict[str, Any]:
    group: Any = typer.main.get_command(app)
    return {name: group.commands[name] for name in COMMANDS}


def test_a_run_file_that_is_not_utf8_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_bytes('data = "synthetic"\n# caf\xe9 au lait\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"run\.toml is not UTF-8"):
        read_run_file(path, _commands())


def test_a_run_file_that_cannot_be_read_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "run.toml"
    path.write_text('data = "synthetic"\n')

    def refuse(self: Path, *args: Any, **kwargs: Any) -> str:
        raise PermissionError(13, "Permission denied", str(self))

    # Tests may run as root, whom file permissions do not stop: the refusal is injected.
    monkeypatch.setattr(Path, "read_text", refuse)
    with pytest.raises(ConfigError, match=r"run\.toml cannot be read \(Permission denied\)"):
        read_run_file(path, _commands())


# ---------------------------------------------------------------------------- the command line


# Settings of a quick search, before the bad option (the last of an option given twice wins):
# where a bad value were taken, the search it starts would still end soon.
SMALL = ["--trials", "1", "--epochs", "1", "--max-depth", "1", "--resolution", "8"]


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _one_error_line(output: str, named: str) -> None:
    assert "Traceback" not in output, output
    assert named in output, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--resolution", "7"], "--resolution 7"),
        (["--resolution", "20000"], "--resolution 20000"),
        (["--latency-threads", "0"], "--latency-threads"),
        (["--latency-threads", "-3"], "--latency-threads"),
        (["--batch-size", "0"], "--batch-size"),
        (["--threads", "0"], "--threads"),
        (["--seed", "-1"], "--seed"),
        (["--max-latency", "-5ms"], "--max-latency"),
        (["--time-budget", "-30m"], "--time-budget"),
        (["--strategy", "magic"], "--strategy"),
        (["--train-device", "gpu"], "--train-device"),
        (["--space", "os:system"], "--space os:system"),
        (["--strategy", "grid"], "--strategy grid"),  # refused for this space, once it is made
        (["--one-shot", "--supernet", "no-such.pt"], "--supernet no-such.pt"),
    ],
)
def test_a_refused_search_writes_nothing(
    tmp_path: Path, invoke: Any, args: list[str], named: str
) -> None:
    out = tmp_path / "run"
    result = invoke("search", "synthetic", "--out", str(out), *SMALL, *args)
    assert result.exit_code == 2, result.output
    _one_error_line(result.output, named)
    assert not out.exists()


def test_a_refused_search_leaves_an_earlier_run_as_it_was(tmp_path: Path, invoke: Any) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "spec.json").write_text('{"epochs": 1}\n')
    (out / "notes.txt").write_text("kept\n")
    before = _snapshot(out)
    result = invoke("search", "synthetic", "--out", str(out), "--resolution", "7")
    assert result.exit_code == 2
    _one_error_line(result.output, "--resolution 7")
    assert _snapshot(out) == before


@pytest.mark.slow
def test_the_real_command_refuses_in_one_line_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "run"
    for args, named in (
        (["--resolution", "7"], "--resolution 7"),
        (["--latency-threads", "0"], "--latency-threads"),
        (["--space", "os:system"], "--space os:system"),
    ):
        proc = run_cli("search", "synthetic", "--out", str(out), *SMALL, *args)
        assert proc.returncode == 2, proc.stderr
        _one_error_line(proc.stderr, named)
        assert not out.exists()


@pytest.mark.slow
def test_the_real_command_names_a_run_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    out = tmp_path / "run"
    path.write_bytes(f'data = "synthetic"\nout = "{out}"\n# caf\xe9\n'.encode("latin-1"))
    proc = run_cli("search", "--config", str(path))
    assert proc.returncode == 2, proc.stderr
    _one_error_line(proc.stderr, str(path))
    assert not out.exists()
