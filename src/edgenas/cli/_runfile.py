"""A run in one file: the TOML ``edgenas search --config`` and ``edgenas finalize --config`` read.

::

    data = "elpv"            # the DATA of edgenas search
    out = "runs/elpv"        # its --out, and the RUN of edgenas finalize
    # goal = "maximize accuracy with at most 5 ms latency"

    [search]                 # edgenas search's options, with underscores
    max_latency = "5ms"
    trials = 20

    [space]                  # a search space (the keys of a space TOML file)
    blocks = ["ir", "ds"]

    [finalize]               # edgenas finalize's options
    quantize = "int8"

The file's values become the command's defaults: an option given on the command line wins.
The keys are read from the commands' own parameters, so every option has one, and the
template ``edgenas init`` writes lists them all. Paths in the file are read as on the command
line, from the current directory.
"""

from __future__ import annotations

import difflib
import inspect
import json
import re
import sys
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgenas.errors import ConfigError
from edgenas.space import SPACE_KEYS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["COMMANDS", "OptionKey", "option_keys", "read_run_file", "template", "write_template"]

COMMANDS = ("search", "finalize")
TABLES = ("search", "space", "finalize")
# Top-level keys, and the parameter of each command they feed.
_TOP_LEVEL = {
    "data": {"search": "data"},
    "out": {"search": "out", "finalize": "run"},
    "goal": {"search": "goal"},
}
_STAGE_KEYS = ("stride", "widths", "depths")
_EXPECTED = {
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "str": "a string",
    "list": "a list of strings",
}


@dataclass(frozen=True)
class OptionKey:
    """One option of a command as a key of the run file."""

    key: str  # the option's name with underscores: --no-early-stop is no_early_stop
    param: str  # the command's parameter it feeds (--json feeds as_json)
    kind: str  # int, float, bool, str or list
    default: Any
    help: str


def option_keys(command: Any) -> dict[str, OptionKey]:
    """The run-file keys of a Click/Typer command: one per option, ``--config`` aside."""
    function = inspect.unwrap(command.callback)
    hints = typing.get_type_hints(function)
    keys: dict[str, OptionKey] = {}
    for param in command.params:
        long = [o for o in param.opts if o.startswith("--")]
        if not long or "--config" in param.opts:
            continue  # an argument, or the file itself
        key = long[0][2:].replace("-", "_")
        help_text = (getattr(param, "help", None) or "").replace("\\[", "[")
        keys[key] = OptionKey(key, param.name, _kind(hints.get(param.name, str)),
                              param.default, help_text)  # fmt: skip
    return keys


def _kind(annotation: Any) -> str:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if typing.get_origin(annotation) is list:
        return "list"
    if annotation in (bool, int, float):
        return annotation.__name__
    return "str"  # str, Path


# ---------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class RunFile:
    """A run file read and checked: each command's defaults, by parameter name."""

    path: Path
    defaults: Mapping[str, Mapping[str, Any]]


def read_run_file(path: Path, commands: Mapping[str, Any]) -> RunFile:
    """Read and check the run file at ``path`` against the options of ``commands``
    (``{"search": ..., "finalize": ...}``, Click/Typer commands).

    Raises :class:`ConfigError` naming the file, the key at fault and the fix.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise ConfigError(
            f"config file {path} {what}: write one with `edgenas init {path}`, or give the "
            "path of an existing one"
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}; fix that line") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not UTF-8 text (byte {exc.start} is not); save it as UTF-8"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"config file {path} cannot be read ({exc.strerror or type(exc).__name__}); check "
            "its permissions, or give another file"
        ) from None
    keys = {name: option_keys(commands[name]) for name in COMMANDS}
    top: dict[str, Any] = {}
    tables: dict[str, dict[str, Any]] = {name: {} for name in TABLES}
    for key, value in data.items():
        if key in TABLES:
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: {key} must be a table, written [{key}] on its own line")
            tables[key] = value
        elif key in _TOP_LEVEL:
            top[key] = _convert(path, "", key, "str", value)
        else:
            raise ConfigError(_unknown_top_level(path, key, value, keys))
    defaults: dict[str, dict[str, Any]] = {name: {} for name in COMMANDS}
    for name in COMMANDS:
        for key, value in tables[name].items():
            option = keys[name].get(key)
            if option is None:
                raise ConfigError(_unknown_key(path, name, key, keys))
            defaults[name][option.param] = _convert(path, name, key, option.kind, value)
    _check_space(path, tables["space"])
    for key, value in top.items():
        for command, param in _TOP_LEVEL[key].items():
            if param in defaults[command] and command == "search":
                raise ConfigError(
                    f"{path}: {key} is given twice, at the top and in [search]; keep one"
                )
            defaults[command][param] = value
    if tables["space"]:
        if "space" in defaults["search"]:
            raise ConfigError(
                f"{path}: the space is given twice, as [search] space and as a [space] table; "
                "keep one"
            )
        if path.suffix != ".toml":
            raise ConfigError(
                f"{path}: a [space] table is read from files ending in .toml; rename the file"
            )
        # load_space reads the [space] table of a larger file: the file is the space.
        defaults["search"]["space"] = str(path)
    return RunFile(path, defaults)


def _convert(path: Path, table: str, key: str, kind: str, value: Any) -> Any:
    """``value`` as the option expects it; lists and numbers are accepted for text options
    (resolution = [64, 96] is --resolution 64,96)."""
    scalar = isinstance(value, (str, int, float)) and not isinstance(value, bool)
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == "float" and scalar and not isinstance(value, str):
        return float(value)
    if kind == "str" and scalar:
        return str(value)
    if kind == "str" and _scalar_list(value) and value:
        return ",".join(str(v) for v in value)
    if kind == "list" and scalar:
        return [str(value)]
    if kind == "list" and _scalar_list(value):
        return [str(v) for v in value]
    where = f"[{table}] {key}" if table else key
    raise ConfigError(
        f"{path}: {where} must be {_EXPECTED[kind]} (such as {key} = "
        f"{_toml(_example(kind))}), not {_toml(value)}"
    )


def _scalar_list(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value
    )


def _example(kind: str) -> Any:
    return {"int": 20, "float": 0.5, "bool": True, "str": "5ms", "list": ["mobilenetv2"]}[kind]


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def _unknown_top_level(path: Path, key: str, value: Any, keys: Mapping[str, Any]) -> str:
    if isinstance(value, dict) or (
        isinstance(value, list) and value and all(isinstance(v, dict) for v in value)
    ):
        if key == "stages":
            return f"{path}: unknown table [[stages]]: in a run file it is [[space.stages]]"
        suggestion = _suggest(key, list(TABLES))
        suggestion = suggestion.replace("mean ", "mean [").replace("?", "]?")
        return f"{path}: unknown table [{key}]{suggestion} (the tables are {_listed(TABLES)})"
    for command in COMMANDS:
        if key in keys[command]:
            return f"{path}: {key} is an option of edgenas {command}: put it under [{command}]"
    if key in SPACE_KEYS:
        return f"{path}: {key} describes the space: put it under [space]"
    suggestion = _suggest(key, list(_TOP_LEVEL))
    return (
        f"{path}: unknown key {key}{suggestion} (at the top: {_listed(_TOP_LEVEL)}; "
        f"the tables: {_listed(TABLES)})"
    )


def _unknown_key(path: Path, table: str, key: str, keys: Mapping[str, Any]) -> str:
    for other in COMMANDS:
        if other != table and key in keys[other]:
            return f"{path}: [{table}] has no key {key}: it is an option of edgenas {other}, put it under [{other}]"
    if key in _TOP_LEVEL and key != "goal":
        return (
            f"{path}: [{table}] has no key {key}: put it at the top of the file, before any table"
        )
    suggestion = _suggest(key, list(keys[table]))
    return (
        f"{path}: [{table}] has no key {key}{suggestion} (its keys are the options of "
        f"edgenas {table}, with underscores: see edgenas {table} --help)"
    )


def _check_space(path: Path, space: dict[str, Any]) -> None:
    for key, value in space.items():
        if key not in SPACE_KEYS:
            raise ConfigError(
                f"{path}: [space] has no key {key}{_suggest(key, sorted(SPACE_KEYS))} "
                f"(its keys: {_listed(sorted(SPACE_KEYS))})"
            )
        if key == "stages" and not (
            isinstance(value, list) and all(isinstance(v, dict) for v in value)
        ):
            raise ConfigError(
                f"{path}: [space] stages must be tables, each written [[space.stages]] "
                "with stride and widths"
            )
    for stage in space.get("stages", []):
        for key in stage:
            if key not in _STAGE_KEYS:
                raise ConfigError(
                    f"{path}: [[space.stages]] has no key {key}"
                    f"{_suggest(key, list(_STAGE_KEYS))} (its keys: {_listed(_STAGE_KEYS)})"
                )


def _listed(names: Any) -> str:
    return ", ".join(names)


def _toml(value: Any) -> str:
    """``value`` written as in a TOML file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


# --------------------------------------------------------------------------------- template

# Values shown for options without a default, as in their help.
_EXAMPLES: dict[str, dict[str, Any]] = {
    "search": {
        "max_latency": "5ms",
        "max_memory": "50MB",
        "max_size": "2MB",
        "max_macs": "100M",
        "max_energy": "5mJ",
        "energy_coefficients": "pj_per_mac=150,pj_per_byte=50",
        "weights": "accuracy=0.6,latency=0.3,size=0.1",
        "time_budget": "2h",
        "resolution": [64, 96],
        "augment": "flip-h,shift,brightness,contrast",
        "blocks": ["ir", "ds"],
        "kernels": ["3", "5", "5x3"],
        "max_depth": 3,
        "baseline": ["mobilenetv2:0.5"],
        "threads": 4,
        "device": "pi4.json",
        "address": "auto",
        "storage": "postgresql+psycopg://user@host:5432/edgenas",
        "warm_start": "baselines",
        "stop_when_stable": 10,
        "supernet": "runs/elpv/supernet.pt",
    },
    "finalize": {
        "epochs": 9,
        "teacher": "runs/elpv-large/final",
        "prune": "structured",
        "target_latency": "3ms",
        "target_memory": "40MB",
        "target_size": "50%",
        "finetune_epochs": 2,
        "qat_epochs": 2,
        "device": "pi4.json",
    },
}
# Set in the template (the rest is commented out).
_SET = {
    "search": {"max_latency", "objective", "strategy", "trials", "epochs", "seed"},
    "finalize": {"pick", "top", "quantize"},
}
# Short comments where the option's help is too long for one line.
_COMMENTS = {
    "search": {
        "max_memory": "Peak memory limit, such as 50MB (an estimate of what ONNX Runtime holds).",
        "max_energy": "Limit on the estimated energy per inference, such as 5mJ or 800uJ.",
        "energy_coefficients": "Coefficients of the energy estimate in picojoules (default: a Cortex-A72-class CPU).",
        "objective": "accuracy (max accuracy within the limits), pareto (accuracy vs latency), or weighted.",
        "weights": "Weights of the weighted objective (latency, size and energy normalised by their limits).",
        "metric": "The score searched for: accuracy, balanced-accuracy, macro-f1 or recall:CLASS.",
        "class_weights": "Weights of the classes in the training loss: none, or balanced (rare classes weigh more).",
        "strategy": "Search strategy: guided, tpe, random, grid, nsga2, gp, evolution or reinforce.",
        "trials": "Candidates to train (candidates rejected by the constraints do not count).",
        "resolution": "Input resolutions the search may choose (default: the space's, 64–224).",
        "augment": "Augmentations that keep the class: flip-h, flip-v, rot90, shift, brightness, contrast, or none (default: the data's).",
        "resize": "Other aspect ratios made square: pad (black borders), crop (centre) or squash.",
        "space": "Search space: edge, a TOML file, or module:attribute (or a [space] table below).",
        "blocks": "Narrow the space to these block types (of conv, res, bneck, ds, ir).",
        "baseline": "Evaluate these baselines first: mobilenetv2, mobilenetv3-small, resnet, vgg (:width).",
        "device": "Device profile: predict latency from it instead of measuring each candidate here.",
        "fidelity_schedule": "none (stop a candidate clearly behind finished ones), sh (successive halving) or hyperband.",
        "workers": "Trainings at once, each in its own process; the cores are shared out among them.",
        "executor": "Where trainings run: local (this machine) or ray (a Ray cluster; extra edgenas[ray]).",
        "address": "With executor = \"ray\": 'auto' or HOST:PORT; left out, Ray is started for this search.",
        "storage": "Keep the study in this database (any SQLAlchemy URL) instead of RUN/study.db.",
        "warm_start": "Enqueue first: 'baselines' or an earlier run directory (its Pareto front).",
        "stop_when_stable": "End the search once the front has not improved for N trainings.",
        "search_training": "Search the training too: learning rate, batch size, optimiser, weight decay, augmentation.",
        "one_shot": "Train one supernet, judge subnets by inherited weights, train the best few again.",
        "supernet": "With one_shot: reuse the supernet.pt of an earlier one-shot search.",
        "supernet_epochs": "With one_shot: epochs of the supernet's training (fewer if the time budget is short).",
        "subnets": "With one_shot: subnets judged by the weights they inherit.",
        "finetune": "With one_shot: the best subnets made into models: as judged, fine-tuned and from scratch.",
    },
    "finalize": {
        "top": 'With pick = "best": retrain the K best feasible trials.',
        "distill": "Train a fresh copy of the model with a teacher; kept when better on validation.",
        "teacher": "The teacher for distill: a trial number, or a final/ folder of a run on the same data.",
        "prune": "none; structured (remove channels, aimed at a target_*); magnitude or movement (to sparsity).",
    },
}
_HEADER = """\
# A run in one file. Edit it, then:
#   edgenas search --config {name}      search (options given on the command line win)
#   edgenas finalize --config {name}    retrain, compress and export the best
# Keys are the commands' options with underscores (--max-latency is max_latency); remove the
# "# " before a key to set it. Paths are read from the current directory.

# The data: a folder of class subfolders, a CSV manifest, or elpv, elpv4, synthetic.
data = "elpv"
# The run directory (search's --out, finalize's RUN). Running the search again resumes it.
out = "runs/elpv"
# The objective and limits in words, instead of max_latency and objective below (the keys
# of [search] win over it):
# goal = "maximize accuracy with at most 5 ms latency and 50 MB memory"
"""
_SPACE = """
[space]
# The search space, narrowed or reshaped (the default is the edge space; see --space).
# blocks = ["ir", "ds"]        # block types to choose from (conv, res, bneck, ds, ir)
# kernels = ["3", "5", "5x3"]  # kernel shapes
# expansions = [3, 4, 6]       # inverted-residual expansions
# max_depth = 3                # at most this many blocks per stage
# resolutions = [64, 96]       # input resolutions
# stems = [16, 24]             # stem widths
# heads = [0, 512]             # head widths (0: none)
#
# [[space.stages]]             # optional: replace the default stages, one table each
# stride = 2
# widths = [16, 24]
# depths = [1, 2]
"""


def template(commands: Mapping[str, Any], name: str = "run.toml") -> str:
    """The commented run file ``edgenas init`` writes: every option of ``commands`` as a key."""
    keys = {command: option_keys(commands[command]) for command in COMMANDS}
    parts = [_HEADER.format(name=name)]
    parts.append(_table("search", keys["search"], skip=set(_TOP_LEVEL)))
    parts.append(_SPACE)
    parts.append(_table("finalize", keys["finalize"], skip=set()))
    return "".join(parts)


def _table(command: str, keys: Mapping[str, OptionKey], skip: set[str]) -> str:
    lines = [
        "",
        f"[{command}]",
        f"# The options of edgenas {command} (see edgenas {command} --help).",
    ]
    for key, option in keys.items():
        if key in skip:
            continue
        lines.append(f"# {_COMMENTS[command].get(key) or _first_sentence(option.help)}")
        value = _EXAMPLES[command].get(key, option.default)
        if value is None:
            value = {"int": 1, "float": 1.0, "str": "", "list": []}.get(option.kind, "")
        if option.kind == "bool" and key not in _SET[command]:
            value = not option.default
        prefix = "" if key in _SET[command] else "# "
        lines.append(f"{prefix}{key} = {_toml(value)}")
    return "\n".join(lines) + "\n"


def _first_sentence(text: str) -> str:
    first = re.split(r"(?<=\.)\s", " ".join(text.split()), maxsplit=1)[0]
    return first if first.endswith(".") else first + "."


def write_template(path: Path, commands: Mapping[str, Any], *, force: bool = False) -> None:
    """Write the template to ``path``; refuse to replace a file unless ``force``."""
    path = Path(path)
    if path.exists() and not force:
        raise ConfigError(
            f"{path} already exists; choose another path, or add --force to overwrite it"
        )
    if path.parent != Path() and not path.parent.is_dir():
        raise ConfigError(f"cannot write {path}: the folder {path.parent} does not exist")
    path.write_text(template(commands, str(path)))
