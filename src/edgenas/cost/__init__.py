"""Costs of candidates: analytic parameters, MACs, size, peak memory (calibrated against
measured sessions) and estimated energy; latency measured here or predicted from a device
profile."""

from __future__ import annotations

from edgenas.cost._analytic import AnalyticCosts, analytic_costs, block_ops
from edgenas.cost._energy import EnergyModel
from edgenas.cost._memory import MemoryCalibration
from edgenas.cost._model import COST_FIELDS, Constraints, CostModel, Costs
from edgenas.cost._network_ops import NetworkOps, conv_key, network_ops, parse_conv_key
from edgenas.cost._predictor import LatencyPredictor
from edgenas.cost._units import (
    parse_count,
    parse_duration,
    parse_energy,
    parse_latency,
    parse_size,
)
from edgenas.device import LatencyMeasurement, measure_onnx_latency

__all__ = [
    "COST_FIELDS",
    "AnalyticCosts",
    "Constraints",
    "CostModel",
    "Costs",
    "EnergyModel",
    "LatencyMeasurement",
    "LatencyPredictor",
    "MemoryCalibration",
    "NetworkOps",
    "analytic_costs",
    "block_ops",
    "conv_key",
    "measure_onnx_latency",
    "network_ops",
    "parse_conv_key",
    "parse_count",
    "parse_duration",
    "parse_energy",
    "parse_latency",
    "parse_size",
]
