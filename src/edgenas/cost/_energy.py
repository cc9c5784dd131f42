"""Energy per inference, estimated from arithmetic and memory traffic.

    energy = pJ per MAC · MACs + pJ per byte · bytes moved

where bytes moved are the fp32 weights read once plus the activations read and written
(:attr:`~edgenas.cost.AnalyticCosts.bytes_moved`). It is an estimate, not a measurement: it knows
nothing of caches, clocks, idle power or the rest of the board. It ranks architectures by what
they make a processor do; set the coefficients of your own device to make its scale meaningful.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from edgenas.errors import ConfigError

__all__ = ["EnergyModel"]

_KEYS = ("pj_per_mac", "pj_per_byte")


@dataclass(frozen=True)
class EnergyModel:
    """Coefficients of the energy estimate, in picojoules.

    The defaults are rough figures for one core of a Cortex-A72-class CPU (such as a Raspberry
    Pi 4's, 1.5 GHz) running fp32 convolutions with ONNX Runtime; expect them to be off by a
    factor of two either way:

    * ``pj_per_mac``: the active power of one such core, about 0.9 W (a Raspberry Pi 4 draws
      about 2.7 W idle and 6.4 W with its four cores loaded), divided by about 6 GMAC/s, half of
      the core's NEON peak of 8 fp32 multiply-accumulates per cycle: about 150 pJ.
    * ``pj_per_byte``: DRAM traffic costs some 20 pJ per bit at the memory alone (Horowitz,
      "Computing's energy problem", ISSCC 2014), but much of an inference's traffic stays in
      the caches: about 50 pJ per byte, averaged.

    For your own device, measure the energy of a few models of known MACs (a USB power meter,
    idle power subtracted) and fit the two numbers, then give them in the device profile
    (``"energy": {"pj_per_mac": 120, "pj_per_byte": 40}``), with ``--energy-coefficients`` or
    ``edgenas.search(energy=...)``.
    """

    pj_per_mac: float = 150.0
    pj_per_byte: float = 50.0

    def __post_init__(self) -> None:
        for key in _KEYS:
            value = getattr(self, key)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value < 0
            ):
                raise ConfigError(
                    f"energy coefficient {key} must be a number of picojoules ≥ 0, got {value!r}"
                )
            object.__setattr__(self, key, float(value))

    def energy_mj(self, macs: float, bytes_moved: float) -> float:
        """Estimated energy of one inference in millijoules (1 pJ = 10⁻⁹ mJ)."""
        return (self.pj_per_mac * macs + self.pj_per_byte * bytes_moved) * 1e-9

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, source: str = "energy") -> EnergyModel:
        """Coefficients from a mapping such as a profile's ``"energy"`` object; both keys are
        required, so a device's figure is never mixed with a default silently."""
        example = '{"pj_per_mac": 150, "pj_per_byte": 50}'
        if not isinstance(data, dict):
            raise ConfigError(f"{source} must be an object such as {example}, got {data!r}")
        unknown = sorted(set(data) - set(_KEYS))
        missing = [k for k in _KEYS if k not in data]
        if unknown or missing:
            problem = (
                f"has unknown keys {', '.join(unknown)}"
                if unknown
                else f"lacks {', '.join(missing)}"
            )
            raise ConfigError(f"{source} {problem}; write it like {example} (picojoules)")
        try:
            return cls(**data)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    @classmethod
    def parse(cls, text: str | dict[str, Any] | EnergyModel | None) -> EnergyModel:
        """From the CLI's ``pj_per_mac=150,pj_per_byte=50``, a dict, a model, or None (the
        defaults)."""
        if text is None:
            return cls()
        if isinstance(text, EnergyModel):
            return text
        if isinstance(text, dict):
            return cls.from_dict(text, "energy coefficients")
        values: dict[str, Any] = {}
        for part in str(text).split(","):
            name, sep, number = part.partition("=")
            try:
                values[name.strip()] = float(number) if sep else None
            except ValueError:
                values[name.strip()] = number.strip()
        return cls.from_dict(values, f"--energy-coefficients {text!r}")

    @classmethod
    def from_profile(cls, profile: dict[str, Any], source: str = "the profile") -> EnergyModel:
        """The profile's ``"energy"`` coefficients, or the defaults when it has none."""
        if profile.get("energy") is None:
            return cls()
        return cls.from_dict(profile["energy"], f"{source}: energy")
