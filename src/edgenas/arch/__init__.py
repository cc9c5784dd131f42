"""Architectures: genotypes (architectures as data), blocks, the model builder and baselines."""

from __future__ import annotations

from edgenas.arch._baselines import BASELINES, baseline
from edgenas.arch._blocks import BLOCKS, make_divisible
from edgenas.arch._builder import Network, build_model, export_module, export_onnx
from edgenas.arch._genotype import (
    ACTIVATIONS,
    BLOCK_TYPES,
    KERNELS,
    BlockGene,
    BlockShape,
    Genotype,
    parse_kernel,
)
from edgenas.arch._onnx_check import onnx_max_abs_diff

__all__ = [
    "ACTIVATIONS",
    "BASELINES",
    "BLOCKS",
    "BLOCK_TYPES",
    "KERNELS",
    "BlockGene",
    "BlockShape",
    "Genotype",
    "Network",
    "baseline",
    "build_model",
    "export_module",
    "export_onnx",
    "make_divisible",
    "onnx_max_abs_diff",
    "parse_kernel",
]
