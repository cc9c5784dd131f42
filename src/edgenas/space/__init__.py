"""Search spaces: labelled choices that decode to architectures, and `load_space` to name
one (``edge``, a TOML file, or ``module:attribute``)."""

from __future__ import annotations

from edgenas.space._base import SearchSpace
from edgenas.space._load import SPACE_KEYS, load_space
from edgenas.space._nb201 import NB201_OPS, NB201Cell, NB201Space, nb201_space
from edgenas.space._staged import EDGE_STAGES, StagedSpace, StageSpec, edge_space

__all__ = [
    "EDGE_STAGES",
    "NB201_OPS",
    "SPACE_KEYS",
    "NB201Cell",
    "NB201Space",
    "SearchSpace",
    "StageSpec",
    "StagedSpace",
    "edge_space",
    "load_space",
    "nb201_space",
]
