"""The host half of profiling: the ONNX models a device must time, deduplicated, in one zip.

A network's latency is predicted as the sum of its pieces — the stem, each block at its input
shape, each long-skip addition, the head — plus calibration terms fitted on whole reference
networks. The plan holds one ONNX model per distinct piece key and the reference networks.
"""

from __future__ import annotations

import datetime as dt
import json
import typing
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgenas.arch import BLOCKS, Genotype, build_model, export_module, export_onnx
from edgenas.arch._blocks import ConvBnAct
from edgenas.cost import piece_specs
from edgenas.device import PLAN_FORMAT
from edgenas.space import SearchSpace

__all__ = ["Piece", "genotype_pieces", "network_key", "write_plan"]


def network_key(genotype: Genotype, in_channels: int, num_classes: int) -> str:
    return f"{genotype}|in{in_channels}_n{num_classes}"


@dataclass(frozen=True)
class Piece:
    """One separately timed part of a network, with how to build and feed it."""

    key: str
    kind: str  # stem, block, skip, head
    build: Callable[[], nn.Module]
    inputs: Callable[[], tuple[torch.Tensor, ...]]


class _SkipAdd(nn.Module):
    """A long skip: the block's output plus the (projected) earlier output."""

    def __init__(self, src_channels: int, out_channels: int) -> None:
        super().__init__()
        self.proj: nn.Module = (
            nn.Identity()
            if src_channels == out_channels
            else ConvBnAct(src_channels, out_channels, (1, 1), act=None)
        )

    def forward(self, y: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
        return y + self.proj(src)


def _zeros(*shapes: tuple[int, int]) -> tuple[torch.Tensor, ...]:
    """Example inputs of (channels, size) at batch 1."""
    return tuple(torch.zeros(1, c, s, s) for c, s in shapes)


def genotype_pieces(g: Genotype, in_channels: int, num_classes: int) -> list[Piece]:
    """The stem, blocks, long skips and head of a genotype as separately timed pieces, keyed by
    :func:`~edgenas.cost.piece_specs` (the predictor looks them up by the same keys)."""
    net = build_model(g, in_channels, num_classes)
    keys = iter(spec.key for spec in piece_specs(g, in_channels, num_classes))
    pieces = [
        Piece(
            next(keys),
            "stem",
            partial(nn.Sequential, net.normalize, net.stem),
            partial(_zeros, (in_channels, g.resolution)),
        )
    ]
    out_channels = [g.stem] + [s.out_channels for s in g.shapes()]
    for s in g.shapes():
        gene = replace(s.gene, skip=0)
        pieces.append(
            Piece(
                next(keys),
                "block",
                partial(BLOCKS[gene.type], s.in_channels, gene),
                partial(_zeros, (s.in_channels, s.in_size)),
            )
        )
        if s.gene.skip:
            src, c, size = out_channels[s.index - s.gene.skip + 1], s.out_channels, s.out_size
            pieces.append(
                Piece(
                    next(keys),
                    "skip",
                    partial(_SkipAdd, src, c),
                    partial(_zeros, (c, size), (src, size)),
                )
            )
    pieces.append(
        Piece(
            next(keys),
            "head",
            partial(nn.Sequential, net.head, net.pool, nn.Flatten(1), net.classifier),
            partial(_zeros, (out_channels[-1], g.final_size)),
        )
    )
    return pieces


def write_plan(
    space: SearchSpace,
    out: Path,
    *,
    architectures: int = 200,
    references: int = 30,
    in_channels: int = 3,
    num_classes: int = 10,
    seed: int = 0,
    extra: Iterable[Genotype] = (),
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, int]:
    """Write a plan: the distinct pieces of ``architectures`` sampled genotypes (plus ``extra``)
    and the first ``references`` of them whole. Returns counts by kind."""
    rng = np.random.default_rng(seed)
    genotypes = list(extra) + [space.sample(rng) for _ in range(architectures)]
    pieces: dict[str, Piece] = {}
    for g in genotypes:
        for piece in genotype_pieces(g, in_channels, num_classes):
            pieces.setdefault(piece.key, piece)
    networks = genotypes[:references]
    total = len(pieces) + len(networks)
    models = []
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for i, piece in enumerate(pieces.values()):
            data = export_module(_zeroed(piece.build()), piece.inputs(), _names(piece), ["out"])
            name = f"models/{i:05d}.onnx"
            z.writestr(name, data)
            models.append({"key": piece.key, "kind": piece.kind, "file": name})
            if progress:
                progress(i + 1, total)
        for j, g in enumerate(networks):
            name = f"networks/{j:05d}.onnx"
            z.writestr(name, export_onnx(_zeroed(build_model(g, in_channels, num_classes))))
            models.append({"key": network_key(g, in_channels, num_classes), "kind": "network",
                           "file": name, "genotype": str(g)})  # fmt: skip
            if progress:
                progress(len(pieces) + j + 1, total)
        header = {
            "format": PLAN_FORMAT,
            "version": 1,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "space": space.name,
            "in_channels": in_channels,
            "num_classes": num_classes,
            "models": models,
        }
        z.writestr("plan.json", json.dumps(header, indent=1))
    tmp.replace(out)
    counts: dict[str, int] = {}
    for m in models:
        counts[m["kind"]] = counts.get(m["kind"], 0) + 1
    return counts


_M = typing.TypeVar("_M", bound=nn.Module)


def _zeroed(module: _M) -> _M:
    """Zero the weights: CPU arithmetic costs the same on any value, and zeros compress, so a
    plan of thousands of models stays small enough to copy to a device."""
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()
    return module


def _names(piece: Piece) -> list[str]:
    return ["x", "src"] if piece.kind == "skip" else ["x"]
