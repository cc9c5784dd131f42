"""One builder from a :class:`Genotype` to an ``nn.Module``, and its ONNX export."""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from edgenas._io import write_bytes
from edgenas.arch._blocks import BLOCKS, ConvBnAct
from edgenas.arch._genotype import Genotype

__all__ = ["Network", "build_model", "export_onnx"]


class Normalize(nn.Module):
    """Per-channel standardisation inside the model, so the exported file takes pixels in [0, 1]."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer(
            "mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1)
        )
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Network(nn.Module):
    """Stem, blocks (with their long skips), head, global pooling and classifier."""

    def __init__(
        self,
        genotype: Genotype,
        in_channels: int,
        num_classes: int,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.genotype = genotype
        mean = mean if mean is not None else [0.5] * in_channels
        std = std if std is not None else [0.25] * in_channels
        self.normalize = Normalize(mean, std)
        self.stem = ConvBnAct(in_channels, genotype.stem, (3, 3), 2, act="relu")
        self.blocks = nn.ModuleList(
            BLOCKS[s.gene.type](s.in_channels, s.gene) for s in genotype.shapes()
        )
        # Long skips: block i adds the output of block i - span (index -1 is the stem), projected
        # to its own channel count by a 1×1 convolution when they differ.
        out_channels = [genotype.stem] + [s.out_channels for s in genotype.shapes()]
        self.skips = nn.ModuleDict()
        for s in genotype.shapes():
            if s.gene.skip:
                src_channels = out_channels[s.index - s.gene.skip + 1]
                self.skips[str(s.index)] = (
                    nn.Identity()
                    if src_channels == s.out_channels
                    else ConvBnAct(src_channels, s.out_channels, (1, 1), act=None)
                )
        self.head: nn.Module = (
            ConvBnAct(out_channels[-1], genotype.head, (1, 1), act="hswish")
            if genotype.head
            else nn.Identity()
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(genotype.final_channels, num_classes)
        self._skip_spans = [g.skip for g in genotype.blocks]
        # Outputs that must be held for a later skip (index into outputs list, stem = 0).
        self._keep = {i - span + 1 for i, span in enumerate(self._skip_spans) if span}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(self.normalize(x))
        held: dict[int, torch.Tensor] = {0: x} if 0 in self._keep else {}
        for i, block in enumerate(self.blocks):
            y = block(x)
            span = self._skip_spans[i]
            if span:
                y = y + self.skips[str(i)](held[i - span + 1])
            x = y
            if i + 1 in self._keep:
                held[i + 1] = x
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.head(self.features(x))).flatten(1)
        return self.classifier(self.dropout(x))


def build_model(
    genotype: Genotype | str,
    in_channels: int = 3,
    num_classes: int = 10,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Network:
    """Build the network a genotype describes.

    The model takes float images in [0, 1] of shape (N, in_channels, R, R) where R is the
    genotype's resolution, and standardises them with ``mean``/``std`` itself.
    """
    if isinstance(genotype, str):
        genotype = Genotype.parse(genotype)
    return Network(genotype, in_channels, num_classes, mean, std)


def export_onnx(model: Network, path: Path | None = None, batch_size: int = 1) -> bytes:
    """Export a network to ONNX (opset 17, input ``image``, output ``logits``, dynamic batch).

    Returns the serialized model, and also writes it to ``path`` when given.
    """
    g = model.genotype
    in_channels = model.stem.conv.in_channels
    x = torch.zeros(batch_size, in_channels, g.resolution, g.resolution)
    return export_module(model, (x,), ["image"], ["logits"], path, dynamic_batch=True)


def export_module(
    module: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    input_names: Sequence[str],
    output_names: Sequence[str],
    path: Path | None = None,
    *,
    dynamic_batch: bool = False,
) -> bytes:
    """Export any module in eval mode to ONNX (opset 17) for the example ``inputs``."""
    was_training = module.training
    module.eval()
    buffer = io.BytesIO()
    axes = {n: {0: "batch"} for n in [*input_names, *output_names]} if dynamic_batch else None
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter is deprecated in favour of the dynamo one, which takes ~20×
        # longer per model; for these static conv nets both give the same graph.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            inputs,
            buffer,  # type: ignore[arg-type]  # file-like objects are accepted
            input_names=list(input_names),
            output_names=list(output_names),
            opset_version=17,
            dynamo=False,
            dynamic_axes=axes,
        )
    module.train(was_training)
    data = buffer.getvalue()
    if path is not None:
        write_bytes(Path(path), data)
    return data
