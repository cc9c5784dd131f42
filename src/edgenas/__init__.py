"""edgenas: hardware-aware neural architecture search for edge devices.

Example:
    >>> import edgenas
    >>> result = edgenas.search("synthetic", max_latency="2ms", trials=8, epochs=1)  # doctest: +SKIP
    >>> result.best.genotype, result.best_check.holdout_accuracy  # doctest: +SKIP

The public names are imported on first use, so ``python -m edgenas.device`` runs on a device
that has only ONNX Runtime and NumPy (no PyTorch).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "search": "edgenas._api",
    "BlockGene": "edgenas.arch",
    "Genotype": "edgenas.arch",
    "baseline": "edgenas.arch",
    "build_model": "edgenas.arch",
    "Constraints": "edgenas.cost",
    "CostModel": "edgenas.cost",
    "Costs": "edgenas.cost",
    "ConfigError": "edgenas.errors",
    "DataError": "edgenas.errors",
    "EdgenasError": "edgenas.errors",
    "GenotypeError": "edgenas.errors",
    "SearchConfig": "edgenas.study",
    "SearchResult": "edgenas.study",
    "TrialRecord": "edgenas.study",
    "SearchSpace": "edgenas.space",
    "StageSpec": "edgenas.space",
    "StagedSpace": "edgenas.space",
    "edge_space": "edgenas.space",
}

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

if TYPE_CHECKING:
    from edgenas._api import search
    from edgenas.arch import BlockGene, Genotype, baseline, build_model
    from edgenas.cost import Constraints, CostModel, Costs
    from edgenas.errors import ConfigError, DataError, EdgenasError, GenotypeError
    from edgenas.space import SearchSpace, StagedSpace, StageSpec, edge_space
    from edgenas.study import SearchConfig, SearchResult, TrialRecord


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        # submodules such as edgenas.arch are reached as attributes after an import
        try:
            return importlib.import_module(f"edgenas.{name}")
        except ModuleNotFoundError:
            raise AttributeError(f"module 'edgenas' has no attribute {name!r}") from None
    return getattr(importlib.import_module(module), name)
