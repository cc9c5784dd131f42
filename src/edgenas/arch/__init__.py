"""Architectures: genotypes (architectures as data), blocks and the operations they run, the
model builder and baselines."""

from __future__ import annotations

from edgenas.arch._baselines import BASELINES, baseline
from edgenas.arch._blocks import BLOCKS, Block, ConvBnAct, block_operations, make_divisible
from edgenas.arch._builder import Network, build_model, export_module, export_onnx
from edgenas.arch._genotype import (
    ACTIVATIONS,
    BLOCK_TYPES,
    KERNELS,
    BlockGene,
    BlockShape,
    Genotype,
    kernel_str,
    parse_kernel,
)
from edgenas.arch._onnx_check import onnx_max_abs_diff
from edgenas.arch._ops import AddOp, BlockOps, ConvOp, SqueezeExciteOp

__all__ = [
    "ACTIVATIONS",
    "BASELINES",
    "BLOCKS",
    "BLOCK_TYPES",
    "KERNELS",
    "AddOp",
    "Block",
    "BlockGene",
    "BlockOps",
    "BlockShape",
    "ConvBnAct",
    "ConvOp",
    "Genotype",
    "Network",
    "SqueezeExciteOp",
    "baseline",
    "block_operations",
    "build_model",
    "export_module",
    "export_onnx",
    "kernel_str",
    "make_divisible",
    "onnx_max_abs_diff",
    "parse_kernel",
]
