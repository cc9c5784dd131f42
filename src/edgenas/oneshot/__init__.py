"""One-shot search: a weight-sharing supernet over a staged space, its training with the
sandwich rule, and judging subnets by the weights they inherit."""

from __future__ import annotations

from edgenas.oneshot._checkpoint import (
    SupernetFile,
    load_supernet,
    read_checkpoint,
    write_checkpoint,
)
from edgenas.oneshot._judge import CALIBRATION_IMAGES, SubnetJudge
from edgenas.oneshot._supernet import Supernet, largest_subnet, smallest_subnet, stage_positions
from edgenas.oneshot._train import (
    SubnetSampler,
    SupernetEpoch,
    SupernetResult,
    SupernetTraining,
    train_supernet,
)

__all__ = [
    "CALIBRATION_IMAGES",
    "SubnetJudge",
    "SubnetSampler",
    "Supernet",
    "SupernetEpoch",
    "SupernetFile",
    "SupernetResult",
    "SupernetTraining",
    "largest_subnet",
    "load_supernet",
    "read_checkpoint",
    "smallest_subnet",
    "stage_positions",
    "train_supernet",
    "write_checkpoint",
]
