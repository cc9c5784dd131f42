"""Staged spaces: a stem, stages of 1–N blocks with per-block choices, a head.

The default ``edge`` space is one of these; users build their own from the same parts::

    from edgenas.space import StageSpec, StagedSpace
    space = StagedSpace(
        stages=(StageSpec(2, (16, 24)), StageSpec(2, (32, 48)), StageSpec(2, (64, 96))),
        resolutions=(64, 96), block_types=("ir", "ds"), kernels=("3", "5x3"),
    )
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution

from edgenas.arch import (
    ACTIVATIONS,
    BLOCK_TYPES,
    KERNELS,
    BlockGene,
    Genotype,
    kernel_str,
    parse_kernel,
)
from edgenas.errors import ConfigError, GenotypeError
from edgenas.space._base import SearchSpace

__all__ = ["EDGE_STAGES", "StageSpec", "StagedSpace", "edge_space"]


@dataclass(frozen=True)
class StageSpec:
    """One stage: the stride of its first block, its width choices and depth choices."""

    stride: int
    widths: tuple[int, ...]
    depths: tuple[int, ...] = (1, 2, 3, 4)

    def __post_init__(self) -> None:
        if self.stride not in (1, 2):
            raise ConfigError(f"stage stride must be 1 or 2, got {self.stride}")
        if not self.widths or min(self.widths) < 1:
            raise ConfigError(f"stage widths must be positive channel counts, got {self.widths}")
        if not self.depths or min(self.depths) < 1:
            raise ConfigError(f"stage depths must be ≥ 1, got {self.depths}")


#: The default ``edge`` stages: MobileNet-like strides, widths from tiny to mid-size.
EDGE_STAGES: tuple[StageSpec, ...] = (
    StageSpec(1, (8, 16, 24)),
    StageSpec(2, (16, 24, 32)),
    StageSpec(2, (24, 32, 40, 48)),
    StageSpec(2, (48, 64, 80, 96)),
    StageSpec(1, (64, 96, 112, 128)),
    StageSpec(2, (96, 128, 160, 192, 256)),
)


@dataclass(frozen=True)
class StagedSpace(SearchSpace):
    """A space of stem, stages and head, each stage with a depth and width choice and each block
    with its own type, kernel, expansion, squeeze-excite, identity residual and long skip.

    Labels are ``res``, ``stem``, ``head``, ``s{i}.depth``, ``s{i}.width``, ``s{i}.act`` and
    ``s{i}.b{j}.{type,k,e,se,id,skip}`` for every block up to the stage's largest depth; choices of
    blocks beyond the sampled depth are ignored (so every sampler samples all labels jointly).
    """

    stages: tuple[StageSpec, ...] = EDGE_STAGES
    resolutions: tuple[int, ...] = (64, 96, 128, 160, 192, 224)
    stems: tuple[int, ...] = (8, 16, 24, 32)
    heads: tuple[int, ...] = (0, 256, 512, 1024, 1280)
    block_types: tuple[str, ...] = BLOCK_TYPES
    kernels: tuple[str, ...] = KERNELS
    expansions: tuple[int, ...] = (1, 2, 3, 4, 6, 8)
    se: tuple[bool, ...] = (False, True)
    activations: tuple[str, ...] = ACTIVATIONS
    residuals: tuple[bool, ...] = (False, True)
    skips: tuple[int, ...] = (0, 2, 3)
    name: str = "edge"
    _dists: dict[str, BaseDistribution] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.init and isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))
        if not self.stages:
            raise ConfigError("a space needs at least one stage")
        for label, values in (
            ("resolutions", self.resolutions),
            ("stems", self.stems),
            ("heads", self.heads),
            ("block types", self.block_types),
            ("kernels", self.kernels),
            ("expansions", self.expansions),
        ):
            if not values:
                raise ConfigError(f"the space's {label} list is empty")
        bad = [t for t in self.block_types if t not in BLOCK_TYPES]
        if bad:
            raise ConfigError(
                f"block type(s) {', '.join(bad)} unknown; choose from {', '.join(BLOCK_TYPES)}"
            )
        try:
            kernels = tuple(kernel_str(parse_kernel(k)) for k in self.kernels)
        except GenotypeError as exc:
            raise ConfigError(f"kernels: {exc}") from None
        object.__setattr__(self, "kernels", kernels)
        bad_e = [e for e in self.expansions if not 1 <= e <= 8]
        if bad_e:
            raise ConfigError(f"expansions must be within 1–8, got {bad_e}")
        bad_s = [s for s in self.skips if s not in (0, 2, 3)]
        if bad_s:
            raise ConfigError(f"skip spans must be 0, 2 or 3, got {bad_s}")
        object.__setattr__(self, "_dists", self._build_distributions())

    # -- the contract -------------------------------------------------------------------------
    def _build_distributions(self) -> dict[str, BaseDistribution]:
        def cat(values: Sequence[Any]) -> CategoricalDistribution:
            return CategoricalDistribution(tuple(values))

        d: dict[str, BaseDistribution] = {
            "res": cat(self.resolutions),
            "stem": cat(self.stems),
            "head": cat(self.heads),
        }
        for i, stage in enumerate(self.stages):
            d[f"s{i}.depth"] = cat(stage.depths)
            d[f"s{i}.width"] = cat(stage.widths)
            d[f"s{i}.act"] = cat(self.activations)
            for j in range(max(stage.depths)):
                p = f"s{i}.b{j}"
                d[f"{p}.type"] = cat(self.block_types)
                d[f"{p}.k"] = cat(self.kernels)
                d[f"{p}.e"] = cat(self.expansions)
                d[f"{p}.se"] = cat(self.se)
                d[f"{p}.id"] = cat(self.residuals)
                d[f"{p}.skip"] = cat(self.skips)
        return d

    def distributions(self) -> dict[str, BaseDistribution]:
        return dict(self._dists)

    def decode(self, params: Mapping[str, Any]) -> Genotype:
        missing = [k for k in self._dists if k not in params]
        if missing:
            raise ConfigError(f"parameters lack {', '.join(missing[:5])}")
        resolution = int(params["res"])
        channels = int(params["stem"])
        sizes = [(resolution + 1) // 2]  # output size of the stem, then of each block
        blocks: list[BlockGene] = []
        for i, stage in enumerate(self.stages):
            width = int(params[f"s{i}.width"])
            act = str(params[f"s{i}.act"])
            for j in range(int(params[f"s{i}.depth"])):
                p = f"s{i}.b{j}"
                stride = stage.stride if j == 0 else 1
                block_type = str(params[f"{p}.type"])
                out_size = (sizes[-1] + stride - 1) // stride
                # Choices that do not apply to this block are dropped, so that every genotype
                # has one canonical form (and decode(encode(g)) == g).
                residual = bool(params[f"{p}.id"]) and stride == 1 and channels == width
                span = int(params[f"{p}.skip"])
                index = len(blocks)
                if span and (index - span < -1 or sizes[index - span + 1] != out_size):
                    span = 0
                blocks.append(
                    BlockGene(
                        type=block_type,
                        out_channels=width,
                        kernel=parse_kernel(params[f"{p}.k"]),
                        stride=stride,
                        expansion=int(params[f"{p}.e"]) if block_type == "ir" else 1,
                        se=bool(params[f"{p}.se"]),
                        act=act,
                        residual=residual,
                        skip=span,
                    )
                )
                channels = width
                sizes.append(out_size)
        return Genotype(resolution, int(params["stem"]), tuple(blocks), int(params["head"]))

    def inert_labels(self, params: Mapping[str, Any]) -> set[str]:
        inert: set[str] = set()
        for i, stage in enumerate(self.stages):
            depth = int(params[f"s{i}.depth"])
            for j in range(max(stage.depths)):
                p = f"s{i}.b{j}"
                if j >= depth:
                    inert.update(f"{p}.{key}" for key in ("type", "k", "e", "se", "id", "skip"))
                elif params[f"{p}.type"] != "ir":
                    inert.add(f"{p}.e")
        return inert

    def encode(self, genotype: Genotype) -> dict[str, Any]:
        g = genotype
        params: dict[str, Any] = {}
        for label, value, allowed in (
            ("res", g.resolution, self.resolutions),
            ("stem", g.stem, self.stems),
            ("head", g.head, self.heads),
        ):
            if value not in allowed:
                raise ConfigError(f"{g}: {label} {value} is not among the space's {list(allowed)}")
            params[label] = value
        reasons: list[tuple[int, str]] = []
        split = self._split_stages(g.blocks, 0, 0, reasons)
        if split is None:
            raise ConfigError(f"{g} does not fit the space {self.name!r}: {_deepest(reasons)}")
        dists = self._dists
        for i, stage in enumerate(self.stages):
            start, depth = split[i]
            stage_blocks = g.blocks[start : start + depth]
            params[f"s{i}.depth"] = depth
            params[f"s{i}.width"] = stage_blocks[0].out_channels
            params[f"s{i}.act"] = stage_blocks[0].act
            for j in range(max(stage.depths)):
                p = f"s{i}.b{j}"
                values: dict[str, Any]
                if j < depth:
                    b = stage_blocks[j]
                    values = {
                        "type": b.type,
                        "k": kernel_str(b.kernel),
                        "e": b.expansion if b.type == "ir" else None,
                        "se": b.se,
                        "id": b.residual if not b.always_residual else None,
                        "skip": b.skip,
                    }
                else:
                    values = dict.fromkeys(("type", "k", "e", "se", "id", "skip"))
                for key, value in values.items():
                    choices = dists[f"{p}.{key}"].choices  # type: ignore[attr-defined]
                    if value is None:  # does not apply: any choice decodes the same
                        value = False if key == "id" and False in choices else choices[0]
                    elif value not in choices:
                        raise ConfigError(
                            f"{g}: block {start + j} {key}={value} is not among the space's "
                            f"{list(choices)} (label {p}.{key})"
                        )
                    params[f"{p}.{key}"] = value
        return params

    def _split_stages(
        self, blocks: tuple[BlockGene, ...], stage: int, start: int, reasons: list[tuple[int, str]]
    ) -> list[tuple[int, int]] | None:
        """Assign consecutive blocks to stages: (start, depth) per stage, or None."""
        if stage == len(self.stages):
            if start == len(blocks):
                return []
            reasons.append(
                (stage, f"{len(blocks) - start} block(s) left over after the last stage")
            )
            return None
        spec = self.stages[stage]
        for depth in spec.depths:
            part = blocks[start : start + depth]
            if len(part) < depth:
                reasons.append((stage, f"stage {stage} needs {depth} block(s), {len(part)} left"))
                continue
            why = self._stage_mismatch(spec, part)
            if why:
                reasons.append((stage, f"stage {stage}: {why}"))
                continue
            rest = self._split_stages(blocks, stage + 1, start + depth, reasons)
            if rest is not None:
                return [(start, depth), *rest]
        return None

    def _stage_mismatch(self, spec: StageSpec, part: tuple[BlockGene, ...]) -> str | None:
        if part[0].stride != spec.stride:
            return f"first block has stride {part[0].stride}, the stage has {spec.stride}"
        if any(b.stride != 1 for b in part[1:]):
            return "only the first block of a stage may have stride 2"
        widths = {b.out_channels for b in part}
        if len(widths) != 1 or part[0].out_channels not in spec.widths:
            return f"widths {sorted(widths)} are not one of the stage's {list(spec.widths)}"
        acts = {b.act for b in part}
        if len(acts) != 1 or part[0].act not in self.activations:
            return f"activations {sorted(acts)} differ within the stage"
        return None


def _deepest(reasons: list[tuple[int, str]]) -> str:
    """The first reason met at the furthest stage the assignment reached."""
    if not reasons:
        return "no assignment of blocks to stages fits"
    furthest = max(stage for stage, _ in reasons)
    return next(text for stage, text in reasons if stage == furthest)


def _parse_list(value: str | Sequence[Any] | None, cast: type) -> tuple[Any, ...] | None:
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    out = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        try:
            out.append(cast(text))
        except ValueError:
            raise ConfigError(f"{text!r} is not a valid {cast.__name__}") from None
    return tuple(out)


def edge_space(
    *,
    blocks: str | Sequence[str] | None = None,
    kernels: str | Sequence[str] | None = None,
    expansions: str | Sequence[int] | None = None,
    max_depth: int | None = None,
    resolutions: str | Sequence[int] | None = None,
    se: bool | None = None,
    skips: bool | None = None,
) -> StagedSpace:
    """The default ``edge`` space, optionally narrowed.

    Example: ``edge_space(blocks="ir,ds", kernels="3,5,5x3", max_depth=3)``.
    """
    changes: dict[str, Any] = {}
    if blocks is not None:
        changes["block_types"] = _parse_list(blocks, str)
    if kernels is not None:
        changes["kernels"] = _parse_list(kernels, str)
    if expansions is not None:
        changes["expansions"] = _parse_list(expansions, int)
    if resolutions is not None:
        changes["resolutions"] = _parse_list(resolutions, int)
    if se is not None:
        changes["se"] = (se,)
    if skips is not None and not skips:
        changes["skips"] = (0,)
    if max_depth is not None:
        if max_depth < 1:
            raise ConfigError(f"--max-depth must be ≥ 1, got {max_depth}")
        changes["stages"] = tuple(
            StageSpec(s.stride, s.widths, tuple(d for d in s.depths if d <= max_depth) or (1,))
            for s in EDGE_STAGES
        )
    return StagedSpace(**changes)
