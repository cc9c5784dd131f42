"""Architecture and training searched together: a space that adds training hyperparameters.

:class:`TrainingSpace` wraps any architecture space and adds five categorical choices under
``train.*``: the learning rate, batch size, optimiser, weight decay and augmentation strength.
``decode`` still returns the inner space's genotype, so costs, constraints and de-duplication of
architectures work as before; the runner builds each candidate's
:class:`~edgenas.train.TrainConfig` with :meth:`TrainingSpace.train_config`. Every choice is
categorical so that every strategy, including ones that mutate a single choice, handles them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution

from edgenas.arch import Genotype
from edgenas.space import SearchSpace
from edgenas.train import TrainConfig

__all__ = ["TRAINING_CHOICES", "TrainingSpace"]

#: Label → the values a search may choose. ``train.lr`` and ``train.wd`` are on AdamW's scale;
#: SGD runs at ``SGD_LR_SCALE`` times the rate and the same shrink per step (see ``train_config``).
TRAINING_CHOICES: dict[str, tuple[Any, ...]] = {
    "train.lr": (1e-3, 2e-3, 3e-3, 5e-3, 1e-2),
    "train.batch": (32, 64, 128),
    "train.optimizer": ("adamw", "sgd"),
    "train.wd": (0.0, 1e-4, 1e-2, 5e-2),
    "train.augment": (0.0, 0.5, 1.0, 1.5),
}
# SGD with momentum needs a learning rate about ten times AdamW's for the same progress; one
# shared scale lets a single ``train.lr`` choice serve both optimisers. Its weight decay is L2
# (shrink per step lr·wd, like AdamW's decoupled decay), so it is divided by the same factor.
SGD_LR_SCALE = 10.0


def _closest(choices: tuple[Any, ...], value: float) -> Any:
    return min(choices, key=lambda c: abs(float(c) - float(value)))


class TrainingSpace(SearchSpace):
    """An architecture space with the training hyperparameters added as ``train.*`` choices.

    Example:
        >>> from edgenas.space import edge_space
        >>> space = TrainingSpace(edge_space(max_depth=1))
        >>> space.distributions()["train.optimizer"].choices
        ('adamw', 'sgd')
    """

    def __init__(self, inner: SearchSpace, defaults: TrainConfig | None = None) -> None:
        self.inner = inner
        self.name = f"{inner.name}+training"
        # What encode() fills in: the search's own settings, at the nearest choice.
        base = defaults or TrainConfig()
        scale = SGD_LR_SCALE if base.optimizer == "sgd" else 1.0
        self.defaults: dict[str, Any] = {
            "train.lr": _closest(TRAINING_CHOICES["train.lr"], base.lr / scale),
            "train.batch": _closest(TRAINING_CHOICES["train.batch"], base.batch_size),
            "train.optimizer": base.optimizer,
            "train.wd": _closest(TRAINING_CHOICES["train.wd"], base.weight_decay * scale),
            "train.augment": _closest(
                TRAINING_CHOICES["train.augment"], base.augment_strength if base.augment else 0
            ),
        }

    def distributions(self) -> dict[str, BaseDistribution]:
        out = dict(self.inner.distributions())
        for label, choices in TRAINING_CHOICES.items():
            out[label] = CategoricalDistribution(choices)
        return out

    def decode(self, params: Mapping[str, Any]) -> Genotype:
        return self.inner.decode({k: v for k, v in params.items() if k not in TRAINING_CHOICES})

    def encode(self, genotype: Genotype) -> dict[str, Any]:
        return {**self.inner.encode(genotype), **self.defaults}

    def inert_labels(self, params: Mapping[str, Any]) -> set[str]:
        # The inner space knows which of its labels an assignment leaves unused.
        inner = getattr(self.inner, "inert_labels", None)
        return set(inner(params)) if callable(inner) else set()

    @staticmethod
    def training(params: Mapping[str, Any]) -> dict[str, Any]:
        """The ``train.*`` choices of an assignment (empty when it has none)."""
        return {k: params[k] for k in TRAINING_CHOICES if k in params}

    @staticmethod
    def train_config(params: Mapping[str, Any], base: TrainConfig) -> TrainConfig:
        """``base`` with the assignment's training choices applied (those it has)."""
        chosen = TrainingSpace.training(params)
        if not chosen:
            return base
        optimizer = str(chosen.get("train.optimizer", base.optimizer))
        lr = float(chosen.get("train.lr", base.lr))
        wd = float(chosen.get("train.wd", base.weight_decay))
        if optimizer == "sgd":  # only the chosen values are on AdamW's scale
            lr *= SGD_LR_SCALE if "train.lr" in chosen else 1.0
            wd /= SGD_LR_SCALE if "train.wd" in chosen else 1.0
        strength = float(chosen.get("train.augment", base.augment_strength))
        return replace(
            base,
            lr=lr,
            batch_size=int(chosen.get("train.batch", base.batch_size)),
            optimizer=optimizer,
            weight_decay=wd,
            augment_strength=strength,
        )
