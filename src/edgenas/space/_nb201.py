"""The NAS-Bench-201 cell space: a tabular benchmark for search strategies.

A cell is a small DAG of four nodes; each of its six edges (node ``j`` ← node ``i`` for
``i < j``) carries one operation. NAS-Bench-201 (Dong & Yang, ICLR 2020) trained all 15,625
cells; with a table of their accuracies and device latencies, a strategy can be judged in
seconds instead of GPU-months (``edgenas bench nb201``). The architectures are named by the
benchmark's own strings, such as ``|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|...|``.

This space is for benchmarking strategies: edgenas does not build or train these cells.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution

from edgenas.errors import ConfigError
from edgenas.space._base import SearchSpace

__all__ = ["NB201_OPS", "NB201Cell", "NB201Space", "nb201_space"]

#: The five operations of NAS-Bench-201.
NB201_OPS: tuple[str, ...] = (
    "none",
    "skip_connect",
    "nor_conv_1x1",
    "nor_conv_3x3",
    "avg_pool_3x3",
)


@dataclass(frozen=True)
class NB201Cell:
    """One cell: the operation on each edge, in the benchmark's edge order."""

    ops: tuple[str, ...]
    nodes: int = 4

    def __str__(self) -> str:
        parts, k = [], 0
        for j in range(1, self.nodes):
            edges = []
            for i in range(j):
                edges.append(f"{self.ops[k]}~{i}")
                k += 1
            parts.append("|" + "|".join(edges) + "|")
        return "+".join(parts)

    @classmethod
    def parse(cls, text: str) -> NB201Cell:
        """``|op~0|+|op~0|op~1|+...`` → a cell; a clear error for anything else."""
        text = text.strip()
        nodes = text.split("+")
        ops: list[str] = []
        for j, node in enumerate(nodes, start=1):
            edges = [e for e in node.strip().strip("|").split("|") if e]
            if len(edges) != j:
                raise ConfigError(
                    f"{text!r} is not a NAS-Bench-201 architecture string: node {j} needs {j} "
                    f"incoming edge(s) such as |nor_conv_3x3~0|, it has {len(edges)}"
                )
            for i, edge in enumerate(edges):
                op, sep, source = edge.partition("~")
                if not sep or source != str(i) or not op:
                    raise ConfigError(
                        f"{text!r}: edge {edge!r} of node {j} should read OPERATION~{i}"
                    )
                ops.append(op)
        return cls(tuple(ops), len(nodes) + 1)


def _edge_labels(nodes: int) -> list[str]:
    return [f"e{j}{i}" for j in range(1, nodes) for i in range(j)]


@dataclass(frozen=True)
class NB201Space(SearchSpace):
    """One label per edge (``e10`` = node 1 ← node 0, ``e20``, ``e21``, ``e30``, ``e31``,
    ``e32``), each choosing one of ``ops``."""

    ops: tuple[str, ...] = NB201_OPS
    nodes: int = 4
    name: str = "nb201"
    _dists: dict[str, BaseDistribution] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "ops", tuple(self.ops))
        if len(self.ops) < 2 or len(set(self.ops)) != len(self.ops):
            raise ConfigError(f"a cell space needs two or more distinct operations, got {self.ops}")
        if self.nodes < 2:
            raise ConfigError(f"a cell needs at least 2 nodes, got {self.nodes}")
        dists = {label: CategoricalDistribution(self.ops) for label in _edge_labels(self.nodes)}
        object.__setattr__(self, "_dists", dists)

    def distributions(self) -> dict[str, BaseDistribution]:
        return dict(self._dists)

    def decode(self, params: Mapping[str, Any]) -> NB201Cell:
        try:
            return NB201Cell(tuple(str(params[label]) for label in self._dists), self.nodes)
        except KeyError as exc:
            raise ConfigError(f"parameters lack the edge {exc.args[0]}") from None

    def encode(self, genotype: NB201Cell | str) -> dict[str, Any]:  # type: ignore[override]
        cell = NB201Cell.parse(genotype) if isinstance(genotype, str) else genotype
        if cell.nodes != self.nodes:
            raise ConfigError(f"{cell} has {cell.nodes} nodes, the space's cells {self.nodes}")
        unknown = sorted(set(cell.ops) - set(self.ops))
        if unknown:
            raise ConfigError(
                f"{cell}: operation(s) {', '.join(unknown)} are not among the space's "
                f"{', '.join(self.ops)}"
            )
        return dict(zip(self._dists, cell.ops, strict=True))


def nb201_space(ops: Sequence[str] | None = None, nodes: int = 4) -> NB201Space:
    """The NAS-Bench-201 cell space, optionally with another operation set or cell size."""
    return NB201Space(tuple(ops) if ops else NB201_OPS, nodes)
