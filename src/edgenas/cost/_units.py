"""Quantities with units as users write them: ``5ms``, ``50MB``, ``100M``, ``5mJ``, ``30m``."""

from __future__ import annotations

import re

from edgenas.errors import ConfigError

__all__ = ["parse_count", "parse_duration", "parse_energy", "parse_latency", "parse_size"]

_NUMBER = r"(?P<num>\d+(?:\.\d*)?|\.\d+)"
# A sign is read so that "-5ms" is refused as not positive rather than as not understood.
_SIGN = r"(?:\+|(?P<sign>[-−]))?\s*"

_LATENCY_UNITS = {"": 1.0, "ms": 1.0, "s": 1e3, "us": 1e-3, "µs": 1e-3, "μs": 1e-3}
_SIZE_UNITS = {
    "": 1.0, "mb": 1.0, "m": 1.0, "b": 1e-6, "kb": 1e-3, "k": 1e-3, "gb": 1e3, "g": 1e3,
    "kib": 1024 / 1e6, "mib": 1024**2 / 1e6, "gib": 1024**3 / 1e6,
}  # fmt: skip
_COUNT_UNITS = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "b": 1e9}
# Units are lower-cased before the look-up, so "MJ" reads as millijoules too (no inference
# costs megajoules).
_ENERGY_UNITS = {"": 1.0, "mj": 1.0, "j": 1e3, "uj": 1e-3, "µj": 1e-3, "μj": 1e-3, "nj": 1e-6}
_DURATION_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def _parse(text: str | float, units: dict[str, float], what: str, example: str) -> float:
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        match = re.fullmatch(_SIGN + _NUMBER + r"\s*(?P<unit>[a-zA-Zµμ]*)", str(text).strip())
        unit = match["unit"].lower() if match else None
        if not match or unit not in units:
            known = ", ".join(u for u in units if u)
            raise ConfigError(
                f"{what} {text!r} is not understood; write it like {example} ({known})"
            )
        value = float(match["num"]) * units[unit] * (-1.0 if match["sign"] else 1.0)
    if not value > 0 or value != value or value == float("inf"):
        raise ConfigError(f"{what} {text!r} must be positive, such as {example}")
    return value


def parse_latency(text: str | float) -> float:
    """Milliseconds: ``"5ms"``, ``"0.5s"``, ``"800us"``; a bare number is milliseconds."""
    return _parse(text, _LATENCY_UNITS, "latency", "5ms")


def parse_size(text: str | float) -> float:
    """Megabytes (10^6 bytes): ``"50MB"``, ``"2MiB"``, ``"512KB"``; a bare number is MB."""
    return _parse(text, _SIZE_UNITS, "size", "50MB")


def parse_energy(text: str | float) -> float:
    """Millijoules: ``"5mJ"``, ``"800uJ"``, ``"0.01J"``; a bare number is millijoules."""
    return _parse(text, _ENERGY_UNITS, "energy", "5mJ")


def parse_count(text: str | float) -> float:
    """A count such as MACs or parameters: ``"100M"``, ``"1.5G"``, ``"300k"``."""
    return _parse(text, _COUNT_UNITS, "count", "100M")


def parse_duration(text: str | float) -> float:
    """Seconds from ``"30m"``, ``"2h"``, ``"90s"``, ``"1h30m"``; a bare number is minutes."""
    if isinstance(text, (int, float)):
        if not 0 < text < float("inf"):
            raise ConfigError(f"duration {text!r} must be positive, such as 30m")
        return float(text) * 60.0
    signed = re.fullmatch(_SIGN + r"(?P<body>.*)", text.strip(), re.DOTALL)
    assert signed is not None  # every text matches: the sign is optional
    body = signed["body"]
    parts = re.findall(_NUMBER + r"\s*([a-zA-Z]*)", body)
    joined = "".join(f"{n}{u}" for n, u in parts)
    if not parts or joined != re.sub(r"\s+", "", body):
        raise ConfigError(f"duration {text!r} is not understood; write it like 30m, 2h or 1h30m")
    total = 0.0
    for number, unit in parts:
        unit = unit.lower() or ("m" if len(parts) == 1 else "")
        if unit not in _DURATION_UNITS:
            raise ConfigError(f"duration {text!r}: unit {unit!r} unknown; use s, m, h or d")
        total += float(number) * _DURATION_UNITS[unit]
    if signed["sign"] or not 0 < total < float("inf"):
        raise ConfigError(f"duration {text!r} must be positive, such as 30m")
    return total
