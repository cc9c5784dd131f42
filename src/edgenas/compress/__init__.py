"""Compression of trained networks: structured channel pruning aimed at a cost target,
unstructured (gradual magnitude and movement) pruning, and INT8 quantization with ONNX Runtime.

`edgenas finalize` runs these as steps and measures the model after each; they also work on
their own:

Example:
    >>> from edgenas.compress import layer_sensitivity, latency_cost, prune_to_target
    >>> sens = layer_sensitivity(model, example, score)  # doctest: +SKIP
    >>> prune_to_target(model, example, latency_cost(), 2.0, sens, round_to=8)  # doctest: +SKIP
"""

from __future__ import annotations

from edgenas.compress._costs import count_params_macs, latency_cost, macs_cost, size_cost
from edgenas.compress._persist import load_pruned, save_pruned
from edgenas.compress._quantize import (
    CALIBRATION_METHODS,
    onnx_accuracy,
    onnx_logits,
    quantization_aware_finetune,
    quantize_int8,
)
from edgenas.compress._sparse import (
    GradualMagnitudePruning,
    MovementPruning,
    SparsitySensitivity,
    compressed_size_mb,
    cubic_sparsity,
    layer_targets,
    magnitude_sensitivity,
    prunable_layers,
    sparse_size_mb,
    sparsity,
)
from edgenas.compress._structured import (
    ChannelSensitivity,
    GroupSensitivity,
    PruneResult,
    layer_sensitivity,
    prune_to_target,
)

__all__ = [
    "CALIBRATION_METHODS",
    "ChannelSensitivity",
    "GradualMagnitudePruning",
    "GroupSensitivity",
    "MovementPruning",
    "PruneResult",
    "SparsitySensitivity",
    "compressed_size_mb",
    "count_params_macs",
    "cubic_sparsity",
    "latency_cost",
    "layer_sensitivity",
    "layer_targets",
    "load_pruned",
    "macs_cost",
    "magnitude_sensitivity",
    "onnx_accuracy",
    "onnx_logits",
    "prunable_layers",
    "prune_to_target",
    "quantization_aware_finetune",
    "quantize_int8",
    "save_pruned",
    "size_cost",
    "sparse_size_mb",
    "sparsity",
]
