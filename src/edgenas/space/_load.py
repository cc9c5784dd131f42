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
import sys
from pathlib import Path
from typing import Any

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
    ``module:attribute`` naming a `SearchSpace` or a function returning one, or a space.

    Example:
        >>> load_space("edge", blocks="ir,ds", max_depth=2).block_types
        ('ir', 'ds')
    """
    narrowing = {"blocks": blocks, "kernels": kernels, "max_depth": max_depth,
                 "resolutions": resolutions}  # fmt: skip
    given: dict[str, Any] = {k: v for k, v in narrowing.items() if v is not None}
    if isinstance(spec, SearchSpace):
        space = spec
    elif spec == "edge":
        return edge_space(**given)
    elif spec == "nb201":
        raise ConfigError(
            "the nb201 space is a tabular benchmark: edgenas does not build or train its cells. "
            "Judge strategies on it with `edgenas bench nb201 --table CSV`, or search the edge "
            "space (--space edge)"
        )
    elif spec.endswith(".toml"):
        return _space_from_toml(Path(spec), given)
    elif ":" in spec:
        space = _space_from_python(spec)
    else:
        raise ConfigError(
            f"space {spec!r} is not understood; use edge, a .toml file, or module:attribute"
        )
    if given:
        raise ConfigError(
            f"--{next(iter(given)).replace('_', '-')} narrows the edge space or a TOML space; "
            f"the space {spec!r} is given in Python, narrow it there"
        )
    return space


def _space_from_toml(path: Path, given: dict[str, Any]) -> SearchSpace:
    if not path.exists():
        raise ConfigError(f"space file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"space file {path} is not valid TOML: {exc}") from None
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
    return StagedSpace(**fields)


def _space_from_python(spec: str) -> SearchSpace:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"space {spec!r}: cannot import {module_name} ({exc})") from None
    obj = getattr(module, attr, None)
    if callable(obj) and not isinstance(obj, SearchSpace):
        obj = obj()
    if not isinstance(obj, SearchSpace):
        raise ConfigError(f"space {spec!r} is not a SearchSpace (got {type(obj).__name__})")
    return obj
