"""edgenas: hardware-aware neural architecture search for edge devices.

Example:
    >>> import edgenas
    >>> result = edgenas.search("synthetic", max_latency="2ms", trials=8, epochs=1)  # doctest: +SKIP
    >>> result.best.genotype, result.best_details["holdout_accuracy"]  # doctest: +SKIP
"""

from __future__ import annotations

from edgenas._api import search
from edgenas.arch import BlockGene, Genotype, baseline, build_model
from edgenas.cost import Constraints, CostModel, Costs
from edgenas.errors import ConfigError, DataError, EdgenasError, GenotypeError
from edgenas.search import SearchConfig, SearchResult, TrialRecord
from edgenas.space import SearchSpace, StagedSpace, StageSpec, edge_space

__version__ = "0.1.0"

__all__ = [
    "BlockGene",
    "ConfigError",
    "Constraints",
    "CostModel",
    "Costs",
    "DataError",
    "EdgenasError",
    "Genotype",
    "GenotypeError",
    "SearchConfig",
    "SearchResult",
    "SearchSpace",
    "StageSpec",
    "StagedSpace",
    "TrialRecord",
    "baseline",
    "build_model",
    "edge_space",
    "search",
]
