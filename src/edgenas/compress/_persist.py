"""A pruned network saved as plain tensors and integers, and rebuilt from its genotype."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from edgenas._io import replacing
from edgenas.arch import Genotype, Network, build_model
from edgenas.compress._costs import network_of
from edgenas.errors import ConfigError

__all__ = ["load_pruned", "save_pruned"]

_PRUNED_FORMAT = "edgenas-pruned-model"
_PRUNED_VERSION = 1
# Shape attributes torch-pruning rewrites when it removes channels; enough to rebuild a network.
_SHAPE_ATTRS: dict[type[nn.Module], tuple[str, ...]] = {
    nn.Conv2d: ("in_channels", "out_channels", "groups"),
    nn.BatchNorm2d: ("num_features",),
    nn.Linear: ("in_features", "out_features"),
}


def save_pruned(model: Network, path: str | Path) -> None:
    """Save a (pruned) network as tensors and integers only.

    The file holds the genotype string, input channels, class count, the width attributes of
    every convolution, batch norm and linear layer, and the state dict; ``torch.load(...,
    weights_only=True)`` reads it, so loading runs no pickled code. (torch-pruning's own
    ``tp.state_dict`` copies each module's ``__dict__``, genotype objects included, which
    ``weights_only`` loading refuses.)
    """
    net = network_of(model, "save_pruned")
    shapes = {
        name: {a: int(getattr(m, a)) for a in _SHAPE_ATTRS[type(m)]}
        for name, m in net.named_modules()
        if type(m) in _SHAPE_ATTRS
    }
    payload = {
        "format": _PRUNED_FORMAT,
        "version": _PRUNED_VERSION,
        "genotype": str(net.genotype),
        "in_channels": int(net.stem.conv.in_channels),
        "num_classes": int(net.classifier.out_features),
        "modules": shapes,
        "state_dict": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
    }
    with replacing(Path(path)) as tmp:
        torch.save(payload, tmp)


def load_pruned(
    genotype: Genotype | str,
    in_channels: int,
    num_classes: int,
    path: str | Path,
) -> Network:
    """Rebuild a network saved by :func:`save_pruned`: build it from the genotype, shrink every
    layer to the saved widths, then load the weights (the input normalisation included)."""
    try:
        payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as exc:
        raise ConfigError(f"pruned model {str(path)!r} cannot be read: {exc}") from None
    if not isinstance(payload, dict) or payload.get("format") != _PRUNED_FORMAT:
        raise ConfigError(f"{str(path)!r} is not a pruned model written by save_pruned")
    if payload.get("version") != _PRUNED_VERSION:
        raise ConfigError(
            f"{str(path)!r} has pruned-model version {payload.get('version')!r}; this edgenas "
            f"reads version {_PRUNED_VERSION}"
        )
    genotype = Genotype.parse(genotype) if isinstance(genotype, str) else genotype
    saved = (payload["genotype"], payload["in_channels"], payload["num_classes"])
    if saved != (str(genotype), in_channels, num_classes):
        raise ConfigError(
            f"{str(path)!r} holds genotype {saved[0]} with {saved[1]} input channels and "
            f"{saved[2]} classes, not {genotype} with {in_channels} and {num_classes}; "
            "pass the values the model was built with"
        )
    model = build_model(genotype, in_channels, num_classes)
    modules = dict(model.named_modules())
    state: dict[str, torch.Tensor] = payload["state_dict"]
    try:
        for name, attrs in payload["modules"].items():
            for attr, value in attrs.items():
                setattr(modules[name], attr, int(value))
        for key, tensor in state.items():
            owner, _, leaf = key.rpartition(".")
            module = modules[owner]
            if isinstance(getattr(module, leaf, None), nn.Parameter):
                setattr(module, leaf, nn.Parameter(torch.empty_like(tensor)))
            else:
                setattr(module, leaf, torch.empty_like(tensor))
        model.load_state_dict(state, strict=True)
    except (KeyError, RuntimeError) as exc:
        raise ConfigError(
            f"{str(path)!r} does not fit the network its genotype builds ({exc}); "
            "save it again with save_pruned"
        ) from None
    return model.eval()
