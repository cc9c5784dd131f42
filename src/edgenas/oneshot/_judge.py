"""Judging a subnet by the weights it inherits: BatchNorm recalibrated, validation score."""

from __future__ import annotations

import numpy as np
import torch

from edgenas.arch import Genotype, Network
from edgenas.oneshot._supernet import Supernet
from edgenas.train import Metric, TrainData, evaluate_confusion, recalibrate_batchnorm

__all__ = ["CALIBRATION_IMAGES", "SubnetJudge"]

#: Training images BatchNorm statistics are re-estimated on before a subnet is scored.
CALIBRATION_IMAGES = 512


class SubnetJudge:
    """Scores subnets of a trained supernet on the validation split.

    A subnet is extracted with its inherited weights, its BatchNorm statistics are re-estimated
    on a fixed set of ``calibration`` training images (the supernet's running statistics mix
    every subnet it trained), and its score on the validation split (``metric``: top-1
    accuracy by default) is measured. The same images are used for every subnet, so scores
    compare.

    Args:
        supernet: the trained supernet; its device is used.
        data: the dataset the supernet was trained on.
        calibration: training images for the BatchNorm statistics.
        seed: chooses the calibration images.
        metric: the score (a `Metric` or its ``--metric`` text).
    """

    def __init__(
        self, supernet: Supernet, data: TrainData, *, calibration: int = CALIBRATION_IMAGES,
        seed: int = 0, metric: Metric | str | None = None,
    ) -> None:  # fmt: skip
        self.supernet = supernet
        self.data = data
        self.metric = Metric.parse(metric)
        self.class_names = [str(n) for n in data.class_names]
        self.metric.check_classes(self.class_names)
        train = np.asarray(data.splits.train)
        rng = np.random.default_rng(seed)
        self._calibration = torch.from_numpy(np.sort(rng.permutation(train)[:calibration]))
        self._val = torch.from_numpy(np.asarray(data.splits.val, dtype=np.int64))
        self._labels = torch.from_numpy(np.asarray(data.labels, dtype=np.int64))[self._val]
        self._images: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.judged = 0

    def _split_images(self, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
        if resolution not in self._images:
            images = self.data.images(resolution)
            # The calibration images are few; the validation split is read batch by batch.
            self._images[resolution] = (images[self._calibration], images)
        return self._images[resolution]

    def network(self, genotype: Genotype) -> Network:
        """The subnet with inherited weights and recalibrated BatchNorm, in eval mode."""
        network = self.supernet.extract(genotype)
        calibration, _ = self._split_images(genotype.resolution)
        recalibrate_batchnorm(network, calibration, max_images=len(calibration))
        return network.eval()

    def accuracy(self, genotype: Genotype) -> float:
        """Validation score (0..1, of the metric) of the subnet with inherited weights."""
        return self.score(self.network(genotype))

    def score(self, network: Network) -> float:
        """Validation score (0..1, of the metric) of ``network`` (a subnet from `network`) as
        it is."""
        return self.metric.score(self.confusion(network), self.class_names)

    def confusion(self, network: Network) -> np.ndarray:
        """The validation confusion matrix of ``network`` as it is (rows: true class)."""
        _, val = self._split_images(network.genotype.resolution)
        self.judged += 1
        return evaluate_confusion(network, val, self._labels, self.data.num_classes, rows=self._val)
