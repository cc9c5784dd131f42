"""Costs that structured pruning aims at, measured on the network itself: ONNX Runtime latency,
parameter size and multiply-accumulates."""

from __future__ import annotations

from collections.abc import Callable
from itertools import chain

import torch
from torch import nn

from edgenas.arch import Network, export_onnx
from edgenas.device import measure_onnx_latency
from edgenas.errors import ConfigError

__all__ = ["Cost", "count_params_macs", "latency_cost", "macs_cost", "size_cost"]

#: A cost of a network, lower is better (what :func:`prune_to_target` brings under a target).
Cost = Callable[[nn.Module], float]


def network_of(model: nn.Module, what: str) -> Network:
    """``model`` as an edgenas network; ``what`` names the caller in the error."""
    if not isinstance(model, Network):
        raise ConfigError(f"{what} needs an edgenas Network, got {type(model).__name__}")
    return model


def latency_cost(threads: int = 1, *, min_seconds: float = 0.3) -> Cost:
    """Cost = median latency in ms of the model's ONNX export under ONNX Runtime (CPU).

    Each call exports the model and, after 10 warm-up runs, times single-image runs for at least
    30 runs and ``min_seconds``, then until the median moves by less than 2% (at most 3 s):
    about 0.3–1 s per call for small networks, with a median steady enough to bisect on.
    """

    def cost(model: nn.Module) -> float:
        data = export_onnx(network_of(model, "latency_cost"))
        return measure_onnx_latency(
            data,
            threads=threads,
            warmup=10,
            min_runs=30,
            max_runs=5000,
            min_seconds=min_seconds,
            max_seconds=3.0,
            stable_within=0.02,
        ).median_ms

    return cost


def size_cost() -> Cost:
    """Cost = fp32 size in MB (1e6 bytes) of the floating-point parameters and buffers.

    Integer buffers (batch norm's step counter) are left out: inference never stores them.
    """

    def cost(model: nn.Module) -> float:
        tensors = chain(model.parameters(), model.buffers())
        return sum(t.numel() for t in tensors if t.is_floating_point()) * 4 / 1e6

    return cost


def count_params_macs(model: nn.Module, resolution: int, in_channels: int) -> tuple[int, int]:
    """Parameters, and multiply-accumulates of one batch-1 inference in the convolutions and
    linear layers (exact zeros included), as the cost model counts them."""
    macs = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal macs
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            macs += int(output.numel()) * (module.in_channels // module.groups) * kh * kw
        elif isinstance(module, nn.Linear):
            macs += int(output.numel()) * module.in_features

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            model(torch.zeros(1, in_channels, resolution, resolution))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return int(sum(p.numel() for p in model.parameters())), int(macs)


def macs_cost() -> Cost:
    """Cost = millions of multiply-accumulates of one image (see `count_params_macs`)."""

    def cost(model: nn.Module) -> float:
        net = network_of(model, "macs_cost")
        r = net.genotype.resolution
        return count_params_macs(net, r, net.stem.conv.in_channels)[1] / 1e6

    return cost
