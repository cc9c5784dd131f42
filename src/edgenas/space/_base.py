"""The search-space contract: a space is data, not a module."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution

from edgenas.arch import Genotype

__all__ = ["SearchSpace"]


class SearchSpace(ABC):
    """A fixed-length set of labelled choices and the map between them and genotypes.

    Every sampler samples all of :meth:`distributions` jointly; :meth:`decode` turns one such
    assignment into a :class:`Genotype`, and :meth:`encode` goes back, so baselines and earlier
    results can be enqueued as trials. Implementations guarantee
    ``decode(encode(g)) == g`` for every genotype ``g`` the space contains.
    """

    #: Short name recorded with each run (``edge``, or the user's own).
    name: str = "custom"

    @abstractmethod
    def distributions(self) -> dict[str, BaseDistribution]:
        """Stable label (such as ``s2.b1.k``) → Optuna distribution, same keys every call."""

    @abstractmethod
    def decode(self, params: Mapping[str, Any]) -> Genotype:
        """The genotype an assignment of every label describes."""

    @abstractmethod
    def encode(self, genotype: Genotype) -> dict[str, Any]:
        """An assignment that decodes to ``genotype``; :class:`~edgenas.errors.ConfigError`
        naming the first choice that is out of the space when there is none."""

    def describe(self) -> dict[str, Any]:
        """A JSON-able description, stored with a run so a resumed run can check it is the same."""
        return {
            "name": self.name,
            "choices": {
                k: list(d.choices) if isinstance(d, CategoricalDistribution) else repr(d)
                for k, d in self.distributions().items()
            },
        }

    def sample(self, rng: np.random.Generator) -> Genotype:
        """A uniformly random genotype (each choice drawn independently)."""
        params: dict[str, Any] = {}
        for label, dist in self.distributions().items():
            if not isinstance(dist, CategoricalDistribution):
                raise NotImplementedError(f"{label}: only categorical choices can be sampled here")
            params[label] = dist.choices[int(rng.integers(len(dist.choices)))]
        return self.decode(params)

    def contains(self, genotype: Genotype) -> bool:
        try:
            return self.decode(self.encode(genotype)) == genotype
        except Exception:
            return False
