"""Structured channel pruning aimed at a cost target (latency, memory or size).

Pruning removes whole channels, so the pruned network is a smaller dense network that runs
faster on any runtime (unlike unstructured sparsity, which ONNX Runtime does not exploit). Channels
are coupled: a residual chain, a depthwise convolution and its expansion, a squeeze-excite gate
all have to lose the same channels together. torch-pruning's dependency graph finds these
*channel groups*; this module decides how much of each group to remove.

The recipe has two steps:

1. :func:`layer_sensitivity` prunes each group alone at a few ratios and records how much a
   caller-given score (validation accuracy, or a cheap proxy) drops. Groups differ a lot: a
   network may tolerate losing most channels of its middle layers but not of its first or last.
2. :func:`prune_to_target` turns those curves into per-group ratios with one global threshold τ
   on the score drop (each group gets the largest ratio whose drop stays within τ) and bisects
   on τ, measuring the caller's cost on pruned copies, for the smallest τ that meets the target.

Channels within a group are ranked by L1 magnitude (torch-pruning's ``MagnitudeImportance``),
always computed on the unpruned weights, so a given allocation prunes the same channels every
time. The costs a target is set in (:func:`latency_cost`, :func:`size_cost`,
:func:`macs_cost`) and the saving of a pruned network (:func:`save_pruned` /
:func:`load_pruned`, plain tensors and integers) live beside this module.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch_pruning as tp
from torch import nn

from edgenas.compress._costs import Cost
from edgenas.errors import ConfigError

__all__ = [
    "ChannelSensitivity",
    "GroupSensitivity",
    "PruneResult",
    "layer_sensitivity",
    "prune_to_target",
]

Score = Callable[[nn.Module], float]

_ROOT_TYPES = (nn.Conv2d, nn.Linear)
_SENSITIVITY_FORMAT = "edgenas-sensitivity"


# -- channel groups ---------------------------------------------------------------------------


@dataclass
class _Group:
    """One coupled channel group of a traced model (valid only for that model object)."""

    name: str
    channels: int
    members: tuple[str, ...]
    group: Any  # torch_pruning Group


def _classifier(model: nn.Module) -> nn.Module | None:
    """The output layer whose outputs (the class logits) must never lose a channel."""
    head = getattr(model, "classifier", None)
    if isinstance(head, nn.Module):
        return head
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


def _trace(model: nn.Module, example: torch.Tensor) -> list[_Group]:
    """Build the dependency graph of ``model`` and name its prunable channel groups.

    A group is named after its first member in module order whose output channels it prunes
    (such as ``stem.conv`` or ``blocks.3.pw_exp.conv``): torch-pruning's own root is the first
    layer it happened to visit, which for an expansion group is the depthwise convolution and reads
    less naturally. Tracing runs in eval mode so batch-norm statistics are left alone.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():  # the graph is traced through autograd
            graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    finally:
        model.train(was_training)
    named = dict(model.named_modules())
    names = {m: n for n, m in named.items()}
    order = {m: i for i, m in enumerate(named.values())}
    classifier = _classifier(model)
    ignored = [classifier] if classifier is not None else []
    groups: list[_Group] = []
    for group in graph.get_all_groups(ignored_layers=ignored, root_module_types=list(_ROOT_TYPES)):
        root = group[0].dep.target.module
        outs = {
            dep.target.module
            for dep, _ in group
            if isinstance(dep.target.module, _ROOT_TYPES)
            and graph.is_out_channel_pruning_fn(dep.handler)
        }
        members = sorted(outs, key=lambda m: order.get(m, len(order)))
        channels = graph.get_out_channels(root)
        if not members or channels is None:
            continue
        groups.append(
            _Group(names[members[0]], int(channels), tuple(names[m] for m in members), group)
        )
    groups.sort(key=lambda g: order[named[g.name]])
    return groups


def _kept(channels: int, ratio: float, round_to: int | None) -> int:
    """Channels a group keeps when pruned by ``ratio``: at least one, and never more removed
    than the ratio says (with ``round_to``, the kept count is rounded up to a multiple)."""
    keep = channels - math.floor(ratio * channels + 1e-9)
    if round_to:
        keep = math.ceil(keep / round_to) * round_to
    return max(1, min(channels, keep))


@torch.no_grad()
def _prune_in_place(model: nn.Module, example: torch.Tensor, kept: Mapping[str, int]) -> None:
    """Prune each named group of ``model`` down to ``kept[name]`` channels (by L1 magnitude).

    Every group's importance is computed before any channel is removed, so the channels chosen
    do not depend on the order the groups are pruned in.
    """
    importance = tp.importance.MagnitudeImportance(p=1)
    plans = []
    for g in _trace(model, example):
        keep = kept.get(g.name, g.channels)
        if keep >= g.channels:
            continue
        scores = importance(g.group)
        if scores is None or len(scores) != g.channels:  # no weights to rank: drop the last ones
            order = torch.arange(g.channels - 1, -1, -1)
        else:
            order = torch.argsort(scores.detach().cpu(), stable=True)
        plans.append((g.group, sorted(order[: g.channels - keep].tolist())))
    for group, indices in plans:
        group.prune(indices)


def _checked(value: float, what: str) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ConfigError(f"{what} returned {number}; it must return a finite number")
    return number


# -- sensitivity ------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupSensitivity:
    """How one channel group's score responds to pruning it alone.

    ``kept[i]`` channels remained at ``ChannelSensitivity.ratios[i]`` (rounding may keep more), the
    pruned copy scored ``scores[i]``, and ``drops[i]`` is the unpruned score minus that.
    """

    name: str
    channels: int
    members: tuple[str, ...]
    kept: tuple[int, ...]
    scores: tuple[float, ...]
    drops: tuple[float, ...]

    def curve(self, up_to: float) -> tuple[np.ndarray, np.ndarray]:
        """Knots ``(ratios, drops)`` of the drop curve on ``[0, up_to]``, non-decreasing.

        Uses the ratios actually reached (``1 - kept / channels``). A noisy score can make a
        larger ratio look better than a smaller one; a running maximum removes that, so "the
        largest ratio whose drop is within τ" is well defined. Beyond the largest measured ratio
        the last segment's slope is extended (flat when only one point was measured).
        """
        points: dict[float, float] = {0.0: 0.0}
        for k, d in zip(self.kept, self.drops, strict=True):
            r = 1.0 - k / self.channels
            points[r] = max(points.get(r, -math.inf), d)
        rs = np.array(sorted(points))
        ds = np.maximum.accumulate(np.array([points[r] for r in rs]))
        if up_to <= rs[-1]:
            inside = rs < up_to
            end = float(np.interp(up_to, rs, ds))
            return np.append(rs[inside], up_to), np.append(ds[inside], end)
        slope = (ds[-1] - ds[-2]) / (rs[-1] - rs[-2]) if len(rs) >= 2 else 0.0
        return np.append(rs, up_to), np.append(ds, ds[-1] + slope * (up_to - rs[-1]))


@dataclass(frozen=True)
class ChannelSensitivity:
    """Score drop of every prunable channel group pruned alone at each of ``ratios``."""

    base_score: float
    ratios: tuple[float, ...]
    groups: tuple[GroupSensitivity, ...]
    round_to: int | None = None

    def group(self, name: str) -> GroupSensitivity:
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(name)

    def drop(self, name: str, ratio: float) -> float:
        """Interpolated (and non-decreasing) score drop of group ``name`` pruned by ``ratio``."""
        if ratio <= 0:
            return 0.0
        return float(self.group(name).curve(ratio)[1][-1])

    def to_json(self) -> dict[str, Any]:
        return {
            "format": _SENSITIVITY_FORMAT,
            "base_score": self.base_score,
            "ratios": list(self.ratios),
            "round_to": self.round_to,
            "groups": [
                {
                    "name": g.name,
                    "channels": g.channels,
                    "members": list(g.members),
                    "kept": list(g.kept),
                    "scores": list(g.scores),
                    "drops": list(g.drops),
                }
                for g in self.groups
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ChannelSensitivity:
        if data.get("format") != _SENSITIVITY_FORMAT:
            raise ConfigError(
                f"sensitivity JSON has format {data.get('format')!r}, expected "
                f"{_SENSITIVITY_FORMAT!r}; pass what ChannelSensitivity.to_json() wrote"
            )
        return cls(
            base_score=float(data["base_score"]),
            ratios=tuple(float(r) for r in data["ratios"]),
            round_to=None if data.get("round_to") is None else int(data["round_to"]),
            groups=tuple(
                GroupSensitivity(
                    name=str(g["name"]),
                    channels=int(g["channels"]),
                    members=tuple(str(m) for m in g["members"]),
                    kept=tuple(int(k) for k in g["kept"]),
                    scores=tuple(float(s) for s in g["scores"]),
                    drops=tuple(float(d) for d in g["drops"]),
                )
                for g in data["groups"]
            ),
        )


def _check_round_to(round_to: int | None) -> None:
    if round_to is not None and (not isinstance(round_to, int) or round_to < 1):
        raise ConfigError(f"round_to={round_to!r} must be a positive integer or None")


def layer_sensitivity(
    model: nn.Module,
    example: torch.Tensor,
    score: Score,
    ratios: Sequence[float] = (0.25, 0.5, 0.75),
    *,
    round_to: int | None = None,
) -> ChannelSensitivity:
    """Score each prunable channel group pruned alone at each ratio (``model`` is not changed).

    Every trial prunes a deep copy of ``model`` (channels ranked by L1 magnitude) and calls
    ``score(copy)``; higher must be better (validation accuracy, or a cheap proxy such as the
    negative distance of the logits from the unpruned model's). The classifier's outputs and the
    network's input channels are never pruned. ``example`` is an input batch used only to trace
    the network. Costs ``1 + groups × ratios`` score calls (fewer when rounding makes two ratios
    keep the same channels).
    """
    rs = tuple(float(r) for r in ratios)
    if not rs or any(not 0 < r < 1 for r in rs) or list(rs) != sorted(set(rs)):
        raise ConfigError(
            f"ratios={list(rs)} must be increasing fractions strictly between 0 and 1, "
            "such as (0.25, 0.5, 0.75)"
        )
    _check_round_to(round_to)
    base = _checked(score(copy.deepcopy(model)), "score(model)")
    results = []
    for g in _trace(copy.deepcopy(model), example):
        kept: list[int] = []
        scores: list[float] = []
        for r in rs:
            keep = _kept(g.channels, r, round_to)
            if keep == g.channels:
                value = base
            elif kept and keep == kept[-1]:
                value = scores[-1]
            else:
                trial = copy.deepcopy(model)
                _prune_in_place(trial, example, {g.name: keep})
                value = _checked(score(trial), f"score(model with {g.name} pruned)")
            kept.append(keep)
            scores.append(value)
        results.append(
            GroupSensitivity(
                g.name,
                g.channels,
                g.members,
                tuple(kept),
                tuple(scores),
                tuple(base - s for s in scores),
            )
        )
    return ChannelSensitivity(base, rs, tuple(results), round_to)


# -- pruning to a target ----------------------------------------------------------------------


@dataclass(frozen=True)
class PruneResult:
    """What :func:`prune_to_target` did: per-group ratios and channels, costs and the search.

    ``ratios`` are the ratios actually applied (``1 - after / before``). ``trials`` lists
    ``(threshold, cost)`` for every cost evaluation on a pruned copy, in order, so the noise of a
    measured cost can be judged. ``cost_after`` is the cost measured, during the search, on a
    copy pruned exactly as the returned model.
    """

    target: float
    threshold: float
    ratios: Mapping[str, float]
    channels_before: Mapping[str, int]
    channels_after: Mapping[str, int]
    cost_before: float
    cost_after: float
    evaluations: int
    seconds: float
    trials: tuple[tuple[float, float], ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "threshold": self.threshold,
            "cost_before": self.cost_before,
            "cost_after": self.cost_after,
            "evaluations": self.evaluations,
            "seconds": self.seconds,
            "groups": [
                {
                    "name": name,
                    "ratio": self.ratios[name],
                    "channels_before": self.channels_before[name],
                    "channels_after": self.channels_after[name],
                }
                for name in self.channels_before
            ],
            "trials": [list(t) for t in self.trials],
        }


class _Allocator:
    """Maps a threshold τ on the score drop to the channels each group keeps.

    Each group's curve gets a tiny slope ``eps × ratio`` added, which breaks ties: groups whose
    drop is flat (or zero, as with an accuracy that does not move) then grow together as τ rises
    instead of all jumping to ``max_ratio`` at τ = 0. The knot values of all curves are the
    breakpoints where the allocation changes pace; bisection runs on a position ``u ∈ [0, 1]``
    spread evenly over those breakpoints rather than on τ itself, because drops can span orders
    of magnitude and plain bisection on τ would spend most steps where nothing changes.
    """

    def __init__(
        self,
        sensitivity: ChannelSensitivity,
        channels: Mapping[str, int],
        max_ratio: float,
        round_to: int | None,
    ) -> None:
        self.channels = dict(channels)
        self.round_to = round_to
        curves = {g.name: g.curve(max_ratio) for g in sensitivity.groups}
        scale = max(
            [abs(sensitivity.base_score)] + [float(np.abs(d).max()) for _, d in curves.values()]
        )
        eps = 1e-6 * (scale if scale > 0 else 1.0)
        self.knots = {name: (r, d + eps * r) for name, (r, d) in curves.items()}
        values = np.unique(np.concatenate([[0.0], *(h for _, h in self.knots.values())]))
        self.breakpoints = values[values >= 0]

    def threshold(self, u: float) -> float:
        grid = np.linspace(0.0, 1.0, len(self.breakpoints))
        return float(np.interp(u, grid, self.breakpoints))

    def kept(self, tau: float) -> dict[str, int]:
        out = {}
        for name, (r, h) in self.knots.items():
            ratio = float(np.interp(tau, h, r)) if tau > 0 else 0.0
            out[name] = _kept(self.channels[name], ratio, self.round_to)
        return out


def prune_to_target(
    model: nn.Module,
    example: torch.Tensor,
    cost: Cost,
    target: float,
    sensitivity: ChannelSensitivity,
    *,
    max_ratio: float = 0.9,
    round_to: int | None = None,
    tolerance: float = 0.02,
    max_evaluations: int = 12,
) -> PruneResult:
    """Prune ``model`` IN PLACE, group by group, until ``cost(model) <= target``.

    One global threshold τ on the sensitivity's (interpolated, non-decreasing) score drop gives
    every group the largest ratio, at most ``max_ratio``, whose drop is within τ; so insensitive
    groups lose many channels and sensitive ones few. The smallest τ that meets the target is
    found by bisection (regula falsi steps between the costs measured at both ends, with
    halvings as a safeguard), each step pruning a deep copy and calling ``cost`` on it;
    allocations already measured (same channels everywhere) are not measured again.

    ``cost`` may be noisy (a latency): the search needs few calls (the unpruned model, the
    model pruned at ``max_ratio`` everywhere, then bisection steps), stops as soon as a measured
    cost lies within ``tolerance`` (a share of the target) below it, and makes at most
    ``max_evaluations`` calls in all. The model gets the allocation of the lowest τ whose
    measured cost met the target; a noisy cost measured again may land slightly above it, so
    aim a little below a hard limit.

    For a latency target pass ``round_to=8``: ONNX Runtime's CPU kernels run odd channel counts
    slowly, so without rounding a pruned MobileNetV2 can be slower than the unpruned one and the
    search has to prune far more to meet the same target.

    Raises ``ConfigError`` when even every group at ``max_ratio`` misses the target, leaving the
    model unchanged. Parameters are replaced by smaller ones, so optimizers made before pruning
    must be made again.
    """
    if not math.isfinite(target) or target <= 0:
        raise ConfigError(f"target={target!r} must be a positive cost")
    if not 0 < max_ratio < 1:
        raise ConfigError(f"max_ratio={max_ratio!r} must lie strictly between 0 and 1, e.g. 0.9")
    if not 0 <= tolerance < 1:
        raise ConfigError(f"tolerance={tolerance!r} must be a share of the target in [0, 1)")
    if max_evaluations < 2:
        raise ConfigError(f"max_evaluations={max_evaluations} must be at least 2")
    _check_round_to(round_to)
    start = time.perf_counter()

    groups = _trace(copy.deepcopy(model), example)
    channels = {g.name: g.channels for g in groups}
    measured = {g.name: g.channels for g in sensitivity.groups}
    if measured != channels:
        missing = sorted(set(channels) - set(measured))
        extra = sorted(set(measured) - set(channels))
        raise ConfigError(
            "the sensitivity does not describe this model's channel groups "
            f"(missing: {missing[:5]}, unknown: {extra[:5]}, or channel counts differ); "
            "run layer_sensitivity on this model (unpruned) first"
        )
    alloc = _Allocator(sensitivity, channels, max_ratio, round_to)
    evaluations = 0
    trials: list[tuple[float, float]] = []

    def result(tau: float, kept: Mapping[str, int], after: float) -> PruneResult:
        return PruneResult(
            target=target,
            threshold=tau,
            ratios={n: 1.0 - kept[n] / c for n, c in channels.items()},
            channels_before=channels,
            channels_after=dict(kept),
            cost_before=before,
            cost_after=after,
            evaluations=evaluations,
            seconds=time.perf_counter() - start,
            trials=tuple(trials),
        )

    before = _checked(cost(model), "cost(model)")
    evaluations += 1
    if before <= target:
        return result(0.0, channels, before)

    cache: dict[tuple[int, ...], float] = {tuple(channels.values()): before}

    def measure(tau: float, kept: dict[str, int]) -> float:
        nonlocal evaluations
        trial = copy.deepcopy(model)
        _prune_in_place(trial, example, kept)
        value = _checked(cost(trial), "cost(pruned model)")
        evaluations += 1
        trials.append((tau, value))
        cache[tuple(kept.values())] = value
        return value

    tau_hi = alloc.threshold(1.0)
    kept_hi = alloc.kept(tau_hi)
    cost_hi = measure(tau_hi, kept_hi)
    if cost_hi > target:
        raise ConfigError(
            f"cost target {target:g} cannot be reached: pruning every channel group by "
            f"max_ratio={max_ratio:g} still costs {cost_hi:g} (unpruned: {before:g}); "
            "use a looser target (at least the cost reached), a larger max_ratio, "
            "or a smaller architecture"
        )
    kept_lo, cost_lo = channels, before
    lo, hi = 0.0, 1.0
    aim = target * (1 - 0.5 * tolerance)
    streak, last = 0, 0  # consecutive measured moves of the same end (+1: hi, -1: lo)
    for _ in range(64):  # each step shrinks [lo, hi]; steps without a measurement are cheap
        if evaluations >= max_evaluations or cost_hi >= target * (1 - tolerance):
            break
        # Regula falsi between the costs measured at both ends, kept off the ends; a plain
        # halving after two moves of the same end, since cost is far from linear in u.
        share = 0.5
        if streak >= 2:
            streak = 0
        elif cost_lo > cost_hi:
            share = min(0.8, max(0.2, (cost_lo - aim) / (cost_lo - cost_hi)))
        mid = lo + share * (hi - lo)
        tau = alloc.threshold(mid)
        kept = alloc.kept(tau)
        if kept == kept_hi:
            hi, tau_hi = mid, tau
            continue
        if kept == kept_lo:
            lo = mid
            continue
        key = tuple(kept.values())
        value = cache[key] if key in cache else measure(tau, kept)
        side = 1 if value <= target else -1
        streak, last = (streak + 1 if side == last else 1), side
        if side > 0:
            hi, tau_hi, kept_hi, cost_hi = mid, tau, kept, value
        else:
            lo, kept_lo, cost_lo = mid, kept, value
    _prune_in_place(model, example, kept_hi)
    return result(tau_hi, kept_hi, cost_hi)
