"""How hard a candidate is trained: epochs, input resolution, share of the training data."""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgenas.errors import ConfigError

__all__ = ["Fidelity"]


@dataclass(frozen=True)
class Fidelity:
    """The training budget of one candidate.

    Low fidelities (few epochs, a lower resolution, part of the data) rank candidates cheaply
    during search; the finalist is trained at full fidelity.

    Example:
        >>> Fidelity(epochs=3, resolution=64, data_fraction=0.5).resolve(96)
        64
    """

    # Training epochs; each ends with a validation pass and a report.
    epochs: int = 5
    # Input side length in pixels; None trains at the genotype's own input resolution.
    resolution: int | None = None
    # Share of the training split used, drawn per class so class balance is kept.
    data_fraction: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ConfigError(f"Fidelity.epochs must be an integer >= 1, got {self.epochs!r}")
        if self.resolution is not None and (
            isinstance(self.resolution, bool)
            or not isinstance(self.resolution, int)
            or self.resolution < 1
        ):
            raise ConfigError(
                f"Fidelity.resolution must be None (the genotype's own resolution) or an "
                f"integer >= 1, got {self.resolution!r}"
            )
        fraction = self.data_fraction
        if (
            isinstance(fraction, bool)
            or not isinstance(fraction, (int, float))
            or not math.isfinite(fraction)
            or not 0.0 < fraction <= 1.0
        ):
            raise ConfigError(
                f"Fidelity.data_fraction must be a number in (0, 1] (the share of the training "
                f"split to train on), got {fraction!r}"
            )

    def resolve(self, native_resolution: int) -> int:
        """Return the resolution to train at: this fidelity's own, else ``native_resolution``."""
        return native_resolution if self.resolution is None else self.resolution
