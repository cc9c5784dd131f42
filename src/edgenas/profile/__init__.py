"""Latency profiling, host side: plans of ONNX pieces for a device to time.

The device side (``edgenas.device``, needing only ONNX Runtime and NumPy) times a plan and writes
a profile. The predictor that reads profiles is not built yet: ``edgenas search`` still measures
latency on this machine.
"""

from __future__ import annotations

from edgenas.profile._plan import Piece, block_key, genotype_pieces, network_key, write_plan

__all__ = ["Piece", "block_key", "genotype_pieces", "network_key", "write_plan"]
