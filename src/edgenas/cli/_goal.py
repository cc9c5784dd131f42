"""Goals in plain words: ``"maximize accuracy with at most 30 ms latency and 200 MB memory"``
→ an objective and limits, echoed back as understood; every word not understood is named.

A goal is a list of clauses joined by ``and``, commas or ``with``. A clause is an objective
(``maximize accuracy``, ``best accuracy``, ``trade off accuracy against latency``) or a limit,
written quantity first (``latency under 30 ms``, ``memory <= 200MB``) or amount first
(``at most 30 ms latency``, ``2 MB model size``, ``under 5ms``: a bare duration is a latency).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from edgenas.cost import parse_count, parse_energy, parse_latency, parse_size
from edgenas.errors import ConfigError

__all__ = ["Goal", "parse_goal"]

# Quantity words → the limit they set.
_QUANTITIES = {
    "latency": "max_latency", "inference time": "max_latency", "time": "max_latency",
    "peak memory": "max_memory", "memory": "max_memory", "ram": "max_memory",
    "model size": "max_size", "size": "max_size", "file size": "max_size",
    "macs": "max_macs", "mac": "max_macs", "flops": "max_macs", "multiply-accumulates": "max_macs",
    "energy": "max_energy",
}  # fmt: skip
_PARSE = {
    "max_latency": parse_latency,
    "max_memory": parse_size,
    "max_size": parse_size,
    "max_macs": parse_count,
    "max_energy": parse_energy,
}
_UNITS = {
    "max_latency": "ms", "max_memory": "MB", "max_size": "MB", "max_macs": "MACs",
    "max_energy": "mJ",
}  # fmt: skip
_WORDS = {"max_latency": "latency", "max_memory": "peak memory", "max_size": "model size",
          "max_macs": "MACs", "max_energy": "energy"}  # fmt: skip
# What a unit alone says about the quantity, when no quantity word is given.
_UNIT_QUANTITY = [
    (re.compile(r"^(ms|s|us|µs|μs|sec|seconds?|milliseconds?)$"), "max_latency"),
    (re.compile(r"^(mj|j|uj|µj|μj|nj)$"), "max_energy"),
]
_BOUND = (
    r"(?:at\s+most|no\s+more\s+than|not\s+more\s+than|up\s+to|under|below|within|less\s+than"
    r"|max(?:imum)?|<=|≤|<|of)"
)
_NUMBER = r"(?P<num>\d+(?:\.\d+)?|\.\d+)\s*(?P<unit>[a-zA-Zµμ]+)?"
_QUANTITY = "|".join(sorted((re.escape(q) for q in _QUANTITIES), key=len, reverse=True))
_WHERE = r"(?:\s+(?:on\s+the\s+(?:device|target|board)|per\s+image|per\s+inference))?"
_QUANTITY_FIRST = re.compile(
    rf"^(?:(?:a|the)\s+)?(?P<q>{_QUANTITY})\s*(?:(?:{_BOUND})\s*)+{_NUMBER}{_WHERE}$"
)
_AMOUNT_FIRST = re.compile(
    rf"^(?:(?:{_BOUND})\s*)*(?:a\s+)?{_NUMBER}(?:\s+(?:of\s+)?(?P<q>{_QUANTITY}))?{_WHERE}$"
)
# An objective opens its clause; a limit may follow it ("best accuracy under 5 ms").
_REST = r"(?:\s+(?P<rest>.+))?$"
_PARETO = (
    r"^(?:trade\s+off\s+|balance\s+|the\s+front\s+of\s+|pareto\s+(?:front\s+)?(?:of\s+)?)?"
    r"accuracy\s+(?:against|vs\.?|versus|and)\s+latency"
)
_MAX_ACCURACY = (
    r"^(?:maximi[sz]e|max|highest|best|most|top|high|the\s+best|the\s+highest)\s+accuracy"
)
_OBJECTIVES = [
    (re.compile(_PARETO + _REST), "pareto"),
    (re.compile(_MAX_ACCURACY + _REST), "accuracy"),
    (re.compile(r"^pareto(?:\s+front)?" + _REST), "pareto"),
]
_SPLIT = re.compile(r"\s*(?:,|;|\band\b|\bwith\b|\bsubject\s+to\b|\bwhile\b|\bbut\b)\s*")


@dataclass(frozen=True)
class Goal:
    """What a goal says: the objective (None when it names none) and limits as text."""

    objective: str | None
    limits: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        parts = [f"{_WORDS[k]} ≤ {_PARSE[k](v):g} {_UNITS[k]}" for k, v in self.limits.items()]
        objective = {
            None: "maximize accuracy",
            "accuracy": "maximize accuracy",
            "pareto": "trade accuracy against latency (Pareto front)",
        }[self.objective]
        return objective + (" subject to " + ", ".join(parts) if parts else "")


def _limit(clause: str) -> tuple[str, str] | None:
    for pattern in (_QUANTITY_FIRST, _AMOUNT_FIRST):
        m = pattern.match(clause)
        if not m:
            continue
        unit = (m["unit"] or "").lower()
        quantity = _QUANTITIES.get(m["q"]) if m["q"] else None
        if quantity is None:
            quantity = next((q for p, q in _UNIT_QUANTITY if p.match(unit)), None)
        if quantity is None:
            return None
        unit = {"sec": "s", "second": "s", "seconds": "s", "millisecond": "ms",
                "milliseconds": "ms"}.get(unit, unit)  # fmt: skip
        text = f"{m['num']}{unit}"
        _PARSE[quantity](text)  # a wrong unit raises, naming it
        return quantity, text
    return None


def parse_goal(text: str) -> Goal:
    """Read a goal written in words.

    Raises:
        ConfigError: a part of the goal is not understood (it is quoted), a limit is given
            twice, or the goal says nothing.
    """
    cleaned = re.sub(r"\s+", " ", str(text).strip().lower()).rstrip(".!")
    cleaned = re.sub(r"^(?:i\s+(?:want|need)\s+(?:to\s+)?|please\s+)", "", cleaned)
    objective: str | None = None
    limits: dict[str, str] = {}
    unknown: list[str] = []
    for clause in (c.strip() for c in _SPLIT.split(cleaned)):
        if not clause:
            continue
        for pattern, kind in _OBJECTIVES:
            m = pattern.match(clause)
            if m:
                objective = kind
                clause = (m["rest"] or "").strip()
                break
        if not clause:
            continue
        try:
            limit = _limit(clause)
        except ConfigError as exc:
            unknown.append(f"{clause!r} ({exc})")
            continue
        if limit is None:
            unknown.append(repr(clause))
            continue
        quantity, amount = limit
        if quantity in limits:
            raise ConfigError(
                f"the goal {text!r} gives {_WORDS[quantity]} twice ({limits[quantity]} and "
                f"{amount}); give it once"
            )
        limits[quantity] = amount
    if unknown:
        raise ConfigError(
            f"the goal {text!r}: not understood: {', '.join(unknown)}. Write it like "
            '"maximize accuracy with at most 30 ms latency and 200 MB memory" (quantities: '
            "latency, memory, model size, MACs, energy)"
        )
    if objective is None and not limits:
        raise ConfigError(f"the goal {text!r} says nothing edgenas understands")
    return Goal(objective, limits)
