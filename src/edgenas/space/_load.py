"""Search spaces by name: ``edge``, a TOML file, or ``module:attribute`` (as the command line
and ``edgenas.search()`` give them).

A TOML space file narrows or reshapes the default space::

    # space.toml
    blocks = ["ir", "ds"]        # block types to choose from
    kernels = ["3", "5", "5x3"]  # kernel shapes
    expansions = [3, 4, 6]       # inverted-residual expansions
    max_depth = 3                # at most this many blocks per stage
    resolutions = [64, 96]       # input resolutions
    stems = [16, 24]             # stem widths
    heads = [0, 512]             # head widths (0: none)

    [[stages]]                   # optional: replace the default stages
    stride = 2
    widths = [16, 24]
    depths = [1, 2]

The keys may also sit under a ``[space]`` table of a larger file.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path
from typing import Any

from optuna.distributions import CategoricalDistribution, IntDistribution

from edgenas.errors import ConfigError
from edgenas.space._base import SearchSpace
from edgenas.space._staged import StagedSpace, StageSpec, edge_space

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["SPACE_KEYS", "load_space"]

SPACE_KEYS = {
    "blocks", "kernels", "expansions", "max_depth", "resolutions", "stems", "heads", "se",
    "skips", "stages", "name",
}  # fmt: skip

# Input resolutions a search may choose. Below 8 pixels no network can be built (the smallest
# a Genotype takes); above 1024 a dataset's resized copy and a training batch outgrow the
# memory of most machines (2,000 RGB images at 1024 are 6 GB before any activation).
MIN_RESOLUTION = 8
MAX_RESOLUTION = 1024
# The options that narrow a space, as the command line names them.
_OPTIONS = {"blocks": "--blocks", "kernels": "--kernels", "max_depth": "--max-depth",
            "resolutions": "--resolution"}  # fmt: skip


def load_space(
    spec: str | SearchSpace = "edge",
    *,
    blocks: str | None = None,
    kernels: str | None = None,
    max_depth: int | None = None,
    resolutions: str | None = None,
) -> SearchSpace:
    """The space ``spec`` names, narrowed by the command-line options given.

    ``spec`` is ``edge`` (the default space), a ``.toml`` file (see this module's docstring),
    ``module:attribute`` naming a `SearchSpace`, a subclass of it, or a function of no
    arguments that returns one (nothing else is called), or a space.

    Example:
        >>> load_space("edge", blocks="ir,ds", max_depth=2).block_types
        ('ir', 'ds')
    """
    narrowing = {"blocks": blocks, "kernels": kernels, "max_depth": max_depth,
                 "resolutions": resolutions}  # fmt: skip
    given: dict[str, Any] = {k: v for k, v in narrowing.items() if v is not None}
    if isinstance(spec, SearchSpace):
        space = spec
        where = f"the space {space.name!r}: resolutions"
    elif spec == "edge":
        _check_narrowing(given)
        return edge_space(**given)
    elif spec == "nb201":
        raise ConfigError(
            "the nb201 space is a tabular benchmark: edgenas does not build or train its cells. "
            "Judge strategies on it with `edgenas bench nb201 --table CSV`, or search the edge "
            "space (--space edge)"
        )
    elif spec.endswith(".toml"):
        _check_narrowing(given)
        return _space_from_toml(Path(spec), given)
    elif ":" in spec:
        space = _space_from_python(spec)
        where = f"--space {spec}: resolutions"
    else:
        raise ConfigError(
            f"space {spec!r} is not understood; use edge, a .toml file, or module:attribute"
        )
    if given:
        raise ConfigError(
            f"{_OPTIONS[next(iter(given))]} narrows the edge space or a TOML space; "
            f"the space {spec!r} is given in Python, narrow it there"
        )
    _check_resolutions(_offered_resolutions(space), where)
    return space


def _check_narrowing(given: dict[str, Any]) -> None:
    """Each narrowing option checked alone, so that the one at fault is named as typed."""
    for key, value in given.items():
        option = _OPTIONS[key]
        try:
            narrowed = edge_space(**{key: value})
        except ConfigError as exc:
            message = str(exc)
            raise ConfigError(message if option in message else f"{option}: {message}") from None
        if key == "resolutions":
            _check_resolutions(narrowed.resolutions, f"--resolution {value}")


def _check_resolutions(resolutions: Any, where: str) -> None:
    bad = [r for r in resolutions if not MIN_RESOLUTION <= r <= MAX_RESOLUTION]
    if bad:
        raise ConfigError(
            f"{where}: {', '.join(str(r) for r in bad)} is outside {MIN_RESOLUTION}–"
            f"{MAX_RESOLUTION} pixels, the input sizes the networks are built for; choose "
            "resolutions within it, such as 64,96"
        )


def _offered_resolutions(space: SearchSpace) -> list[int]:
    """The input resolutions a space's ``res`` label offers (none for a space without it)."""
    dist = space.distributions().get("res")
    if isinstance(dist, CategoricalDistribution):
        return [r for r in dist.choices if isinstance(r, int) and not isinstance(r, bool)]
    if isinstance(dist, IntDistribution):
        return [dist.low, dist.high]
    return []


def _space_from_toml(path: Path, given: dict[str, Any]) -> SearchSpace:
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise ConfigError(f"space file {path} {what}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"space file {path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"space file {path} is not UTF-8 text; save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(
            f"space file {path} cannot be read ({exc.strerror or type(exc).__name__})"
        ) from None
    data = data.get("space", data)
    unknown = set(data) - SPACE_KEYS
    if unknown:
        raise ConfigError(
            f"space file {path}: key(s) {', '.join(sorted(unknown))} unknown; "
            f"use {', '.join(sorted(SPACE_KEYS))}"
        )
    merged = {**data, **given}
    base = edge_space(
        blocks=merged.get("blocks"),
        kernels=merged.get("kernels"),
        expansions=merged.get("expansions"),
        max_depth=None if "stages" in data else merged.get("max_depth"),
        resolutions=merged.get("resolutions"),
        se=merged.get("se"),
        skips=merged.get("skips"),
    )
    changes: dict[str, Any] = {"name": str(data.get("name", path.stem))}
    if "stems" in data:
        changes["stems"] = tuple(int(v) for v in data["stems"])
    if "heads" in data:
        changes["heads"] = tuple(int(v) for v in data["heads"])
    if "stages" in data:
        try:
            stages = [
                StageSpec(int(s["stride"]), tuple(int(w) for w in s["widths"]),
                          tuple(int(d) for d in s.get("depths", (1, 2, 3, 4))))
                for s in data["stages"]
            ]  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"space file {path}: each [[stages]] needs stride and widths ({exc})"
            ) from None
        if "max_depth" in merged:
            limit = int(merged["max_depth"])
            stages = [
                StageSpec(s.stride, s.widths, tuple(d for d in s.depths if d <= limit) or (1,))
                for s in stages
            ]
        changes["stages"] = tuple(stages)
    fields = {f: getattr(base, f) for f in (
        "stages", "resolutions", "stems", "heads", "block_types", "kernels", "expansions", "se",
        "activations", "residuals", "skips")}  # fmt: skip
    fields.update(changes)
    if "resolutions" in data:
        _check_resolutions(base.resolutions, f"space file {path}: resolutions")
    return StagedSpace(**fields)


def _space_from_python(spec: str) -> SearchSpace:
    """The space ``module:attribute`` names: a `SearchSpace`, or a `SearchSpace` subclass or a
    function called without arguments. Nothing else is called."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(
            f"--space {spec}: write module:attribute, such as mypackage.spaces:my_space"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"--space {spec}: cannot import {module_name} ({exc})") from None
    except Exception as exc:  # the module's own code failed as it ran
        raise ConfigError(
            f"--space {spec}: importing {module_name} failed: {type(exc).__name__}: {exc}"
        ) from None
    if not hasattr(module, attr):
        raise ConfigError(f"--space {spec}: the module {module_name} has no attribute {attr}")
    obj = getattr(module, attr)
    if isinstance(obj, SearchSpace):
        return obj
    kind = "SearchSpace subclass" if isinstance(obj, type) else "function"
    if not (
        (isinstance(obj, type) and issubclass(obj, SearchSpace))
        or (callable(obj) and not isinstance(obj, type))
    ):
        what = f"the class {obj.__name__}" if isinstance(obj, type) else f"a {type(obj).__name__}"
        raise ConfigError(
            f"--space {spec} is {what}, not a SearchSpace, a SearchSpace subclass or a function "
            "returning one"
        )
    try:
        inspect.signature(obj).bind()
    except ValueError:  # no signature to read (some built-ins): not called blindly
        raise ConfigError(
            f"--space {spec}: cannot tell whether {attr} can be called without arguments; "
            "name a SearchSpace, or a function of none that returns one"
        ) from None
    except TypeError as exc:
        raise ConfigError(
            f"--space {spec}: the {kind} {attr} needs arguments ({exc}); name a SearchSpace, "
            "or a function of none that returns one"
        ) from None
    try:
        space = obj()
    except Exception as exc:
        raise ConfigError(f"--space {spec}: {attr}() failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(space, SearchSpace):
        raise ConfigError(
            f"--space {spec}: {attr}() returned a {type(space).__name__}, not a SearchSpace"
        )
    return space
