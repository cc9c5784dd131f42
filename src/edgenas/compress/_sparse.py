"""Unstructured pruning: gradual magnitude and movement pruning to per-layer sparsity targets.

Unstructured pruning sets individual weights of convolutions and linear layers to zero. The
zeros make the model smaller to ship and store once the file is compressed (`compressed_size_mb`),
but ONNX Runtime and most edge runtimes execute dense kernels: a sparse model runs no faster
and uses no less memory at inference unless a sparse-aware runtime is used. For speed, prune
channels instead (structured pruning).

Both schedules here implement `edgenas.train.StepHooks`, so they prune during training:

    >>> targets = layer_targets(model, 0.8)  # doctest: +SKIP
    >>> pruner = GradualMagnitudePruning(model, targets)  # doctest: +SKIP
    >>> fit(model, data, Fidelity(epochs=10), resolution=32, seed=0, hooks=pruner)  # doctest: +SKIP
    >>> pruner.finish()  # doctest: +SKIP
    >>> sparsity(model)["overall"]  # doctest: +SKIP

Masks are plain boolean tensors held by the pruner; the model is never re-parametrised, so it
stays an ordinary `Network` with the same state-dict keys and exports to ONNX unchanged.
"""

from __future__ import annotations

import copy
import fnmatch
import itertools
import math
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from edgenas.errors import ConfigError

__all__ = [
    "GradualMagnitudePruning",
    "MovementPruning",
    "SparsitySensitivity",
    "compressed_size_mb",
    "cubic_sparsity",
    "layer_targets",
    "magnitude_sensitivity",
    "prunable_layers",
    "sparse_size_mb",
    "sparsity",
]

# The first layer sees raw pixels and the last maps features to classes: both are small and
# accuracy suffers most when they are pruned (Gale, Elsen & Hooker, 2019), so they stay dense.
DEFAULT_KEEP_DENSE: tuple[str, ...] = ("stem.conv", "classifier")
_OVERALL = "overall"


def _weighted_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every Conv2d and Linear of ``model`` by qualified name, in registration order."""
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, (nn.Conv2d, nn.Linear))
    }


def _weight(layer: nn.Module) -> torch.Tensor:
    weight = layer.weight
    assert isinstance(weight, torch.Tensor)
    return weight


def _matches(name: str, pattern: str) -> bool:
    return name == pattern or fnmatch.fnmatchcase(name, pattern)


def _name_list(names: Iterable[str]) -> str:
    return ", ".join(names) or "(none)"


def _check_sparsity(value: object, what: str) -> float:
    """A sparsity as a float in [0, 1), or ConfigError naming ``what``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not 0 <= value < 1
    ):
        raise ConfigError(
            f"{what} must be a sparsity in [0, 1) (the fraction of weights set to zero; 1 would "
            f"remove the layer), got {value!r}"
        )
    return float(value)


def prunable_layers(
    model: nn.Module, *, keep_dense: Sequence[str] = DEFAULT_KEEP_DENSE
) -> dict[str, nn.Module]:
    """The Conv2d and Linear layers whose weights may be pruned, by qualified name.

    By default the first layer (``stem.conv``) and the last (``classifier``) are left out:
    models tolerate high sparsity in the middle layers but lose accuracy quickly when the
    first and last are pruned, and both hold few weights. Depthwise convolutions are included,
    but they hold few weights (``k*k`` per channel), so pruning them saves little and costs
    more accuracy per weight than pruning pointwise convolutions; consider a lower target for
    them (``overrides={"blocks.*.dw.conv": 0.3}`` in `layer_targets`).

    Args:
        model: any module; an ``edgenas.arch.Network`` for the default ``keep_dense``.
        keep_dense: layer names or glob patterns (``fnmatch``, e.g. ``blocks.0.*``) to leave
            out; pass ``()`` to make every layer prunable.

    Raises:
        ConfigError: a ``keep_dense`` entry matches no Conv2d/Linear layer of the model.
    """
    layers = _weighted_layers(model)
    for pattern in keep_dense:
        if not any(_matches(name, pattern) for name in layers):
            raise ConfigError(
                f"keep_dense entry {pattern!r} matches no Conv2d/Linear layer of the model; "
                f"valid names: {_name_list(layers)} (pass keep_dense=() for models without "
                f"a stem.conv and classifier)"
            )
    return {
        name: module
        for name, module in layers.items()
        if not any(_matches(name, pattern) for pattern in keep_dense)
    }


def layer_targets(
    model: nn.Module,
    sparsity: float,
    *,
    overrides: Mapping[str, float] | None = None,
    keep_dense: Sequence[str] = DEFAULT_KEEP_DENSE,
) -> dict[str, float]:
    """Per-layer sparsity targets: ``sparsity`` for every prunable layer, save ``overrides``.

    Args:
        model: the model to prune.
        sparsity: the fraction of weights to zero in each prunable layer, in [0, 1).
        overrides: layer name or glob pattern (``blocks.*.dw.conv``) to its own sparsity;
            where patterns overlap, the later entry wins.
        keep_dense: layers left dense and absent from the result (see `prunable_layers`).

    Returns:
        ``{layer name: sparsity}`` for every prunable layer, in the model's order.

    Raises:
        ConfigError: a sparsity outside [0, 1), or an override that names no prunable layer
            (the message lists the valid names, or says that the layer is kept dense).
    """
    base = _check_sparsity(sparsity, "sparsity")
    layers = prunable_layers(model, keep_dense=keep_dense)
    targets = dict.fromkeys(layers, base)
    for pattern, value in (overrides or {}).items():
        level = _check_sparsity(value, f"the override for {pattern!r}")
        hits = [name for name in layers if _matches(name, pattern)]
        if not hits:
            if any(_matches(name, pattern) for name in _weighted_layers(model)):
                raise ConfigError(
                    f"override {pattern!r} names a layer kept dense by keep_dense="
                    f"{tuple(keep_dense)!r}; drop it from keep_dense to prune it"
                )
            raise ConfigError(
                f"override {pattern!r} matches no prunable layer; valid names: {_name_list(layers)}"
            )
        for name in hits:
            targets[name] = level
    return targets


def cubic_sparsity(
    step: int,
    total: int,
    final: float,
    *,
    initial: float = 0.0,
    start: float = 0.0,
    end: float = 0.7,
) -> float:
    """The sparsity after ``step + 1`` of ``total`` steps under Zhu & Gupta's (2017) schedule.

    ``s = final + (initial - final) * (1 - progress)**3``, where progress runs linearly from 0
    to 1 between ``start * total`` and ``end * total`` completed steps: pruning is fast at first,
    while there are many redundant weights, and slows as the network has fewer left. The value
    is ``initial`` before ``start`` and ``final`` from ``end`` on; with ``end=1`` it reaches
    ``final`` at the last step (``step == total - 1``).
    """
    done = step + 1
    begin, finish = start * total, end * total
    if done < begin:
        return initial
    if done >= finish:
        return final
    progress = (done - begin) / (finish - begin)
    return final + (initial - final) * (1.0 - progress) ** 3


class _ScheduledPruning:
    """Shared machinery: targets, the cubic schedule, masks, and the StepHooks methods.

    Masks only ever lose entries: a weight once pruned stays zero. Its gradient is zeroed after
    every backward pass and the weight is zeroed again after every optimizer step (the
    optimizer's momentum from before it was pruned could otherwise move it).
    """

    def __init__(
        self,
        model: nn.Module,
        targets: Mapping[str, float],
        *,
        start: float = 0.0,
        end: float = 0.7,
        every: int = 1,
    ) -> None:
        layers = _weighted_layers(model)
        self._targets: dict[str, float] = {}
        for name, value in targets.items():
            if name not in layers:
                raise ConfigError(
                    f"pruning target {name!r} is not a Conv2d/Linear layer of the model; valid "
                    f"names: {_name_list(layers)} (layer_targets builds targets from a model)"
                )
            self._targets[name] = _check_sparsity(value, f"the target for {name!r}")
        for label, value in (("start", start), ("end", end)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(
                    f"{label} must be a fraction of the training steps, got {value!r}"
                )
        if not 0 <= start <= end <= 1:
            raise ConfigError(
                f"start and end are fractions of the training steps with 0 <= start <= end <= 1, "
                f"got start={start!r}, end={end!r}"
            )
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ConfigError(
                f"every must be an integer >= 1 (steps between mask updates), got {every!r}"
            )
        self._model = model
        self._weights = {name: _weight(layers[name]) for name in self._targets}
        self.start, self.end, self.every = float(start), float(end), every
        self._masks: dict[str, torch.Tensor] = {}
        self._last_update: int | None = None  # completed steps at the last mask update
        self._reached_final = False
        self._done = False

    @property
    def targets(self) -> dict[str, float]:
        """The final sparsity of each pruned layer."""
        return dict(self._targets)

    @property
    def masks(self) -> dict[str, torch.Tensor]:
        """Boolean masks (True = kept) of the layers pruned so far; empty before ``start``."""
        return dict(self._masks)

    def sparsity_at(self, step: int, total: int) -> dict[str, float]:
        """The scheduled sparsity of each layer after ``step + 1`` of ``total`` steps."""
        return {
            name: cubic_sparsity(step, total, target, start=self.start, end=self.end)
            for name, target in self._targets.items()
        }

    # -- StepHooks -------------------------------------------------------------------------

    def after_backward(self, step: int, total: int) -> None:
        """Zero the gradients of pruned weights, so the optimizer's state ignores them."""
        self._check_open()
        self._observe()
        with torch.no_grad():
            for name, mask in self._masks.items():
                grad = self._weights[name].grad
                if grad is not None:
                    grad.mul_(mask.to(grad.device))

    def after_step(self, step: int, total: int) -> None:
        """Update the masks when the schedule says so, then zero the pruned weights."""
        self._check_open()
        done = step + 1
        if done >= self.start * total:
            reached_end = done >= self.end * total
            final_pending = reached_end and not self._reached_final
            due = self._last_update is None or done - self._last_update >= self.every
            if (not reached_end and due) or final_pending:
                self._update(self.sparsity_at(step, total))
                self._last_update = done
                self._reached_final = reached_end
        self._apply()

    # -- finishing -------------------------------------------------------------------------

    def finish(self) -> dict[str, float]:
        """Prune every layer to its final target and make the zeros permanent.

        If training ended before the schedule did (or never ran: this is then one-shot
        pruning), the remaining weights are pruned at once by the same criterion, which costs
        more accuracy than pruning gradually; fine-tune afterwards. The pruner holds no hooks on
        the model, so after this the model is an ordinary module whose pruned weights are
        exact zeros; the pruner cannot be used again.

        Returns:
            The measured sparsity of each pruned layer.
        """
        self._check_open()
        if not self._reached_final:
            self._update(dict(self._targets))
        self._apply()
        self._done = True
        measured = sparsity(self._model)
        self._masks.clear()
        self._release()
        return {name: measured[name] for name in self._targets}

    # -- internals -------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._done:
            raise RuntimeError("this pruner has finished; make a new one to prune again")

    def _observe(self) -> None:
        """Read the gradients before they are masked (movement pruning's scores)."""

    def _release(self) -> None:
        """Drop any per-weight state once pruning is over."""

    def _scores(self, name: str, weight: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _update(self, levels: Mapping[str, float]) -> None:
        """Keep the top ``1 - level`` weights of each layer by score among those still kept."""
        with torch.no_grad():
            for name, level in levels.items():
                weight = self._weights[name]
                count = weight.numel()
                old = self._masks.get(name)
                already = 0 if old is None else count - int(old.sum())
                pruned = max(round(level * count), already)
                if old is not None and pruned == already:
                    continue
                scores = self._scores(name, weight).detach().flatten().float().clone()
                if old is not None:
                    scores[~old.to(scores.device).flatten()] = -math.inf
                # A stable sort makes ties (e.g. equal scores of zero) fall the same way each time.
                order = torch.sort(scores, descending=True, stable=True).indices
                mask = torch.zeros(count, dtype=torch.bool, device=weight.device)
                mask[order[: count - pruned]] = True
                self._masks[name] = mask.view_as(weight)

    def _apply(self) -> None:
        with torch.no_grad():
            for name, mask in self._masks.items():
                weight = self._weights[name]
                if mask.device != weight.device:  # fit moves the model after the pruner is made
                    mask = mask.to(weight.device)
                    self._masks[name] = mask
                weight.mul_(mask)


class GradualMagnitudePruning(_ScheduledPruning):
    """Gradual magnitude pruning (Zhu & Gupta, 2017) as `edgenas.train.StepHooks`.

    Every ``every`` steps between ``start`` and ``end`` (fractions of the fit's steps), each
    layer's sparsity is raised along the cubic schedule (`cubic_sparsity`) by zeroing the
    smallest-magnitude weights still kept. Pruned weights never come back (the common
    implementation, and the one of the paper's TensorFlow code): their gradients are zeroed
    after each backward pass and the weights re-zeroed after each optimizer step, so neither
    the gradient nor AdamW's momentum can revive them. Leaving the last ~30% of training
    without pruning (``end=0.7``) lets the remaining weights recover. Call `finish` after
    training.

    Args:
        model: the model to prune, in place.
        targets: final sparsity per layer name (`layer_targets` builds them).
        start: fraction of training steps done before pruning begins.
        end: fraction of training steps by which the targets are reached.
        every: steps between mask updates (Zhu & Gupta's Δt); the targets are always reached
            at ``end``.
    """

    def _scores(self, name: str, weight: torch.Tensor) -> torch.Tensor:
        return weight.abs()


class MovementPruning(_ScheduledPruning):
    """Hard movement pruning (Sanh, Wolf & Rush, 2020) as `edgenas.train.StepHooks`.

    Each weight's importance is ``S = -Σ_t w_t · ∂L/∂w_t`` summed over every training step
    from the first: it grows for weights moving away from zero and shrinks for weights moving
    towards it, so it keeps weights that training is making larger rather than those that
    happened to start large (magnitude pruning's criterion). Masks keep the top ``1 - s_t``
    weights of each layer by score, with ``s_t`` on the same cubic schedule as
    `GradualMagnitudePruning`. Unlike the paper's straight-through masks, where a pruned weight
    keeps a score and may return, here pruned weights are exact zeros (their score stops
    changing) and stay pruned, as in magnitude pruning. Suited to fine-tuning a trained model,
    where the movement carries information; from scratch it ranks weights by early noise.

    Args: as for `GradualMagnitudePruning`.
    """

    def __init__(
        self,
        model: nn.Module,
        targets: Mapping[str, float],
        *,
        start: float = 0.0,
        end: float = 0.7,
        every: int = 1,
    ) -> None:
        super().__init__(model, targets, start=start, end=end, every=every)
        self._importance: dict[str, torch.Tensor] = {}

    @property
    def scores(self) -> dict[str, torch.Tensor]:
        """The accumulated movement scores of each layer (absent before the first step)."""
        return dict(self._importance)

    def _observe(self) -> None:
        with torch.no_grad():
            for name, weight in self._weights.items():
                grad = weight.grad
                if grad is None:
                    continue
                score = self._importance.get(name)
                if score is None or score.device != weight.device:
                    score = (
                        torch.zeros_like(weight, dtype=torch.float32)
                        if score is None
                        else score.to(weight.device)
                    )
                    self._importance[name] = score
                score.sub_(weight.float() * grad.float())

    def _scores(self, name: str, weight: torch.Tensor) -> torch.Tensor:
        score = self._importance.get(name)
        # Never trained (one-shot use): no movement yet, so fall back to magnitude.
        return weight.abs() if score is None else score

    def _release(self) -> None:
        self._importance.clear()


def sparsity(model: nn.Module) -> dict[str, float]:
    """The fraction of exact zeros in each Conv2d/Linear weight, and ``"overall"`` across them.

    Biases and normalisation parameters are not counted. Every Conv2d/Linear layer is listed,
    including those kept dense, so one can check they are.
    """
    result: dict[str, float] = {}
    zeros = total = 0
    for name, layer in _weighted_layers(model).items():
        weight = _weight(layer).detach()
        layer_zeros = int((weight == 0).sum())
        result[name] = layer_zeros / weight.numel()
        zeros += layer_zeros
        total += weight.numel()
    result[_OVERALL] = zeros / total if total else 0.0
    return result


def sparse_size_mb(model: nn.Module) -> float:
    """Megabytes (1e6 bytes) of float32 parameters stored with a bitmap for the pruned weights.

    Each Conv2d/Linear weight costs 4 bytes per nonzero plus one bit per weight (the bitmap);
    every other parameter and buffer is counted dense. It is an estimate of a simple sparse
    format's size, computed without exporting; `compressed_size_mb` measures the real file.
    Neither size says anything about speed: dense runtimes such as ONNX Runtime compute the
    zeros like any other weight.
    """
    weights = {id(_weight(layer)) for layer in _weighted_layers(model).values()}
    size = 0.0
    for parameter in model.parameters():
        if id(parameter) in weights:
            size += 4 * int((parameter.detach() != 0).sum()) + parameter.numel() / 8
        else:
            size += parameter.element_size() * parameter.numel()
    size += sum(b.element_size() * b.numel() for b in model.buffers())
    return size / 1e6


def compressed_size_mb(onnx_bytes: bytes) -> float:
    """Megabytes (1e6 bytes) of a serialized model after zlib (deflate) level 9.

    This is what a pruned model costs to ship and store: deflate encodes runs of zero bytes
    cheaply, so an 80%-sparse model compresses to a fraction of its dense size. It does not
    run faster: ONNX Runtime's kernels are dense and multiply the zeros like any other weight,
    and the model uses the same memory once loaded.
    """
    return len(zlib.compress(onnx_bytes, 9)) / 1e6


@dataclass(frozen=True)
class SparsitySensitivity:
    """How a score (e.g. validation accuracy) falls as each layer alone is pruned by magnitude.

    Made by `magnitude_sensitivity`; `targets` turns it into per-layer sparsities.
    """

    # The score of the unpruned model.
    dense: float
    # Layer name -> {sparsity: score with only that layer pruned to that sparsity}.
    scores: dict[str, dict[float, float]]
    # Layer name -> number of weights.
    sizes: dict[str, int]

    def targets(self, sparsity: float) -> dict[str, float]:
        """Per-layer sparsities whose weighted mean over these layers is ``sparsity``.

        Each layer is pruned as far as it can go while its own score drop stays within a
        common tolerance, so insensitive layers end up sparser than sensitive ones; the
        tolerance is searched so the overall sparsity (weighted by layer size) is met exactly.
        Between measured sparsities the score drop is interpolated linearly (and treated as
        never shrinking with sparsity); no layer goes beyond the largest measured sparsity.

        Raises:
            ConfigError: ``sparsity`` outside [0, 1), or above what the measured sparsities
                allow (prune more finely by measuring higher sparsities).
        """
        goal = _check_sparsity(sparsity, "sparsity")
        curves = {name: self._drop_curve(name) for name in self.scores}
        total = sum(self.sizes[name] for name in curves)
        if not curves or total == 0:
            return {}

        def allocate(tolerance: float) -> dict[str, float]:
            return {name: _invert(curve, tolerance) for name, curve in curves.items()}

        def overall(levels: Mapping[str, float]) -> float:
            return sum(self.sizes[n] * s for n, s in levels.items()) / total

        most = max(curve[-1][1] for curve in curves.values())
        top = allocate(most)
        if overall(top) < goal - 1e-12:
            raise ConfigError(
                f"sparsity {goal} is above the {overall(top):.3f} reachable with the measured "
                f"sparsities (at most {max(c[-1][0] for c in curves.values())} per layer); "
                f"measure higher sparsities in magnitude_sensitivity"
            )
        low, high = 0.0, most
        for _ in range(60):
            middle = (low + high) / 2
            if overall(allocate(middle)) >= goal:
                high = middle
            else:
                low = middle
        below, above = allocate(low), allocate(high)
        reach_low, reach_high = overall(below), overall(above)
        mix = 1.0 if reach_high <= reach_low else (goal - reach_low) / (reach_high - reach_low)
        mix = min(max(mix, 0.0), 1.0)
        return {name: below[name] + mix * (above[name] - below[name]) for name in curves}

    def _drop_curve(self, name: str) -> list[tuple[float, float]]:
        """(sparsity, score drop) points from (0, 0), the drop made non-decreasing."""
        measured = sorted(
            (level, self.dense - score) for level, score in self.scores[name].items() if level > 0
        )
        points = [(0.0, 0.0), *measured]
        curve: list[tuple[float, float]] = []
        worst = 0.0
        for level, drop in points:
            worst = max(worst, drop)
            curve.append((level, worst))
        return curve


def _invert(curve: Sequence[tuple[float, float]], tolerance: float) -> float:
    """The largest sparsity on a non-decreasing piecewise-linear drop curve within tolerance."""
    best = curve[0][0]
    for (s0, d0), (s1, d1) in itertools.pairwise(curve):
        if d1 <= tolerance:
            best = s1
            continue
        if d0 <= tolerance:
            best = s0 + (s1 - s0) * (tolerance - d0) / (d1 - d0)
        break
    return best


def magnitude_sensitivity(
    model: nn.Module,
    score: Callable[[nn.Module], float],
    sparsities: Sequence[float] = (0.5, 0.8, 0.9),
    *,
    keep_dense: Sequence[str] = DEFAULT_KEEP_DENSE,
) -> SparsitySensitivity:
    """Score a copy of ``model`` with one layer at a time pruned by magnitude (one-shot).

    The sensitivity analysis of Han et al. (2015): layers whose score barely moves when pruned
    can take more sparsity. The model itself is not changed. Cost: one call of ``score`` for
    the dense model plus one per prunable layer and sparsity, so use a small validation set.

    Args:
        model: a trained model.
        score: higher is better, e.g. ``lambda m: evaluate(m, val_images, val_labels)``.
        sparsities: the levels to try, each in [0, 1).
        keep_dense: layers not analysed (see `prunable_layers`).

    Returns:
        A `SparsitySensitivity`; ``.targets(0.8)`` gives per-layer targets for 80% overall.
    """
    levels = sorted({_check_sparsity(s, "each of sparsities") for s in sparsities})
    trial = copy.deepcopy(model)
    dense = float(score(trial))
    layers = prunable_layers(trial, keep_dense=keep_dense)
    scores: dict[str, dict[float, float]] = {}
    with torch.no_grad():
        for name, layer in layers.items():
            weight = _weight(layer)
            original = weight.detach().clone()
            magnitude = original.abs().flatten()
            order = torch.sort(magnitude, stable=True).indices
            scores[name] = {}
            for level in levels:
                pruned = original.flatten().clone()
                pruned[order[: round(level * magnitude.numel())]] = 0
                weight.copy_(pruned.view_as(original))
                scores[name][level] = float(score(trial))
            weight.copy_(original)
    sizes = {name: _weight(layer).numel() for name, layer in layers.items()}
    return SparsitySensitivity(dense=dense, scores=scores, sizes=sizes)
