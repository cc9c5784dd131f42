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
    def decode(self, params: Mapping[str, Any]) -> Genotype | Any:
        """The architecture an assignment of every label describes: a :class:`Genotype` for
        spaces a search can train; tabular benchmark spaces (``nb201``) return an object whose
        ``str()`` names the architecture. Equal architectures have equal ``str()``."""

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

    def features(self, params: Mapping[str, Any]) -> np.ndarray:
        """A numeric vector describing an assignment, for surrogate models of accuracy.

        Numeric choices (widths, resolutions, expansions) become one number each, scaled to
        0–1 over their choices, so that nearby values are near; other choices (block types,
        operations, flags) become one-hot blocks. Spaces whose labels sometimes do not apply
        (blocks beyond a stage's depth) override this to zero what does not apply, so that two
        assignments of one architecture get one vector (see :meth:`inert_labels`).
        """
        parts: list[float] = []
        inert = self.inert_labels(params)
        for label, (kind, data) in self._feature_codes().items():
            value = params[label]
            if label in inert:
                parts.extend([0.0] * (len(data) if kind == "onehot" else 1))
            elif kind == "onehot":
                block = [0.0] * len(data)
                block[data[value]] = 1.0
                parts.extend(block)
            elif kind == "ordinal":
                low, span = data
                parts.append((float(value) - low) / span)
            else:  # numeric bounds, log-scaled where the distribution is
                low, high, log = data
                x, lo, hi = (
                    (np.log(value), np.log(low), np.log(high)) if log else (value, low, high)
                )
                parts.append(float((x - lo) / (hi - lo)) if hi > lo else 0.0)
        return np.asarray(parts)

    def inert_labels(self, params: Mapping[str, Any]) -> set[str]:
        """Labels whose value does not change the architecture ``params`` decode to."""
        return set()

    def _feature_codes(self) -> dict[str, tuple[str, Any]]:
        """label → how it becomes features (computed once per space)."""
        codes = self.__dict__.get("_codes")
        if codes is None:
            codes = {}
            for label, dist in self.distributions().items():
                if not isinstance(dist, CategoricalDistribution):
                    log = bool(getattr(dist, "log", False))
                    codes[label] = ("numeric", (dist.low, dist.high, log))  # type: ignore[attr-defined]
                    continue
                choices = tuple(dist.choices)
                numbers = [float(c) for c in choices if _numeric((c,))]  # type: ignore[arg-type]
                if len(numbers) == len(choices) > 1 and max(numbers) > min(numbers):
                    codes[label] = ("ordinal", (min(numbers), max(numbers) - min(numbers)))
                else:
                    codes[label] = ("onehot", {c: i for i, c in enumerate(choices)})
            object.__setattr__(self, "_codes", codes)
        return codes

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


def _numeric(choices: tuple[Any, ...]) -> bool:
    return all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in choices)
