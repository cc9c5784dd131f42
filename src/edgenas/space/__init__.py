"""Search spaces: labelled choices that decode to genotypes."""

from __future__ import annotations

from edgenas.space._base import SearchSpace
from edgenas.space._staged import EDGE_STAGES, StagedSpace, StageSpec, edge_space

__all__ = ["EDGE_STAGES", "SearchSpace", "StageSpec", "StagedSpace", "edge_space"]
