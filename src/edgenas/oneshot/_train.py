"""Training a supernet: the sandwich rule with in-place distillation (BigNAS), checkpointed.

Every step trains, on one augmented batch:

1. the **teacher**, the largest subnet the limits allow, on the labels (label-smoothed
   cross-entropy);
2. the **smallest** subnet and ``random_subnets`` random ones, each on the teacher's predictions
   for the same images (in-place distillation: the soft targets cost one forward pass the step
   makes anyway).

Their gradients add up and one optimizer step follows. The largest and smallest bound what the
shared weights must serve, and the random ones fill in between (Yu et al., *BigNAS*, 2020;
Cai et al., *Once-for-All*, 2020). Each subnet sees the batch at its own resolution, resized from
the largest resolution in use.

Subnets are drawn from the space the limits allow: a ``feasible`` check (the analytic costs and
predicted latency of the search) narrows the draws, so a supernet for a 1 ms limit does not
spend its steps on 20 ms networks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from itertools import chain
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from edgenas._eta import TimeLeft
from edgenas.arch import Genotype
from edgenas.cost import analytic_costs
from edgenas.errors import ConfigError, DataError
from edgenas.oneshot._checkpoint import SupernetFile, read_checkpoint, write_checkpoint
from edgenas.oneshot._judge import SubnetJudge
from edgenas.oneshot._supernet import Supernet, largest_subnet, smallest_subnet
from edgenas.space import StagedSpace
from edgenas.train import (
    TrainConfig,
    TrainData,
    augment_batch,
    autocast_dtype,
    build_optimizer,
    loss_class_weights,
    resolve_device,
    split_on_device,
)

__all__ = [
    "SubnetSampler",
    "SupernetEpoch",
    "SupernetResult",
    "SupernetTraining",
    "train_supernet",
]


@dataclass(frozen=True)
class SupernetTraining:
    """How long and how the supernet trains (the optimizer settings are a `TrainConfig`)."""

    # Epochs of the sandwich over the training split.
    epochs: int = 60
    # Random subnets per step, beside the largest and the smallest.
    random_subnets: int = 2
    # Temperature of the distillation from the largest subnet.
    temperature: float = 1.0
    # Seconds the whole training may take; the epochs shrink to fit (None: no limit).
    seconds: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ConfigError(f"supernet epochs must be an integer >= 1, got {self.epochs!r}")
        if self.random_subnets < 0:
            raise ConfigError(f"random subnets per step must be >= 0, got {self.random_subnets}")
        if not math.isfinite(self.temperature) or self.temperature <= 0:
            raise ConfigError(f"distillation temperature must be > 0, got {self.temperature}")
        if self.seconds is not None and not self.seconds > 0:
            raise ConfigError(f"supernet time must be > 0 seconds, got {self.seconds}")


class SubnetSampler:
    """Draws the subnets a supernet trains: its largest and smallest allowed, and random ones.

    ``feasible`` narrows every draw to what the limits allow. The largest and smallest are the
    allowed subnets of most and fewest MACs among ``pool`` random draws (and the space's own
    largest and smallest, when allowed); with ``seconds``, the checks stop after that long
    once one subnet is allowed. Random subnets are fresh draws (up to ``tries`` each
    until one is allowed), or, with ``fresh=False`` (for a ``feasible`` that is slow, such as
    one that measures latency), the allowed subnets of the pool.

    Raises:
        ConfigError: no drawn subnet meets the limits.
    """

    def __init__(
        self,
        space: StagedSpace,
        in_channels: int,
        num_classes: int,
        *,
        feasible: Callable[[Genotype], bool] | None = None,
        seed: int = 0,
        pool: int = 2000,
        tries: int = 64,
        fresh: bool = True,
        seconds: float | None = None,
        largest: Genotype | None = None,
        smallest: Genotype | None = None,
    ) -> None:
        self.space = space
        self.feasible = feasible or (lambda g: True)
        self.tries = tries if fresh else 0
        self._rng = np.random.default_rng(seed)
        self.drawn = 0
        self.rejected = 0

        def macs(g: Genotype) -> int:
            return analytic_costs(g, in_channels, num_classes).macs

        if largest is None or smallest is None:
            began = time.perf_counter()
            found: set[Genotype] = set()
            checked = 0
            for genotype in chain(
                (largest_subnet(space), smallest_subnet(space)),
                (self._draw() for _ in range(pool)),
            ):
                checked += 1
                if self.feasible(genotype):
                    found.add(genotype)
                if found and seconds is not None and time.perf_counter() - began > seconds:
                    break  # a slow check (measured latency): make do with what was found
            allowed = sorted(found, key=macs)
            if not allowed:
                raise ConfigError(
                    f"none of {checked} subnets drawn from the space meets the limits; "
                    f"loosen them or widen the space"
                )
            largest, smallest = largest or allowed[-1], smallest or allowed[0]
            self.pool = allowed
        else:
            self.pool = [largest, smallest]
        self.largest, self.smallest = largest, smallest

    def _draw(self) -> Genotype:
        return self.space.sample(self._rng)

    def reseed(self, seed: int) -> None:
        """Restart the random draws (an epoch's draws depend on its number only)."""
        self._rng = np.random.default_rng(seed)

    def random(self) -> Genotype:
        """A random allowed subnet: fresh draws until one is allowed, else one of the pool's."""
        for _ in range(self.tries):
            genotype = self._draw()
            self.drawn += 1
            if self.feasible(genotype):
                return genotype
            self.rejected += 1
        return self.pool[int(self._rng.integers(len(self.pool)))]

    @property
    def resolution(self) -> int:
        """The largest resolution a drawn subnet can have."""
        return max(max(g.resolution for g in self.pool), self.largest.resolution)


@dataclass(frozen=True)
class SupernetEpoch:
    """Progress after one epoch of supernet training."""

    epoch: int
    epochs: int
    seconds: float  # of training so far, resumed runs included
    loss: float  # mean loss of the largest subnet over the epoch
    teacher_accuracy: float  # validation score (config.metric) of the largest subnet
    smallest_accuracy: float  # and of the smallest
    time_left: str  # "about 3m05s left", or "" when unknown


@dataclass(frozen=True)
class SupernetResult:
    """What training the supernet did."""

    epochs: int  # completed (all of them, resumed ones included)
    seconds: float
    teacher: Genotype
    smallest: Genotype
    history: tuple[dict[str, float], ...]
    resumed_from: int  # epochs found done in the checkpoint (0: trained from the start)
    status: str  # "complete", or "diverged" (a loss became NaN or infinite)


def _epoch_seed(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def train_supernet(
    supernet: Supernet,
    data: TrainData,
    sampler: SubnetSampler,
    *,
    training: SupernetTraining | None = None,
    config: TrainConfig | None = None,
    seed: int = 0,
    checkpoint: Path | None = None,
    data_fingerprint: str | None = None,
    progress: Callable[[SupernetEpoch], None] | None = None,
) -> SupernetResult:
    """Train ``supernet`` in place with the sandwich rule; checkpoint after every epoch.

    When ``checkpoint`` holds an unfinished training of the same supernet (space, classes,
    teacher), it resumes after its last epoch: weights, optimizer and schedule included. A
    finished one is loaded and returned without training.

    Raises:
        ConfigError: the checkpoint belongs to another supernet or data.
    """
    started = time.perf_counter()
    training = training or SupernetTraining()
    config = config or TrainConfig()
    device = resolve_device(config.device)
    previous_threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        return _Training(supernet, data, sampler, training, config, seed, device).run(
            checkpoint, data_fingerprint, progress, started
        )
    finally:
        if config.threads is not None:
            torch.set_num_threads(previous_threads)


class _Training:
    def __init__(
        self,
        supernet: Supernet,
        data: TrainData,
        sampler: SubnetSampler,
        training: SupernetTraining,
        config: TrainConfig,
        seed: int,
        device: torch.device,
    ) -> None:
        self.supernet = supernet.to(device)
        self.data = data
        self.sampler = sampler
        self.training = training
        self.config = config
        self.seed = seed
        self.device = device
        train = np.asarray(data.splits.train, dtype=np.int64)
        if len(train) < 2:
            raise DataError(f"the training split has {len(train)} image(s); at least 2 are needed")
        resolution = sampler.resolution
        images = data.images(resolution)
        # Read batch by batch from the (mapped) images on the CPU: never a copy of the split.
        self.x, self.y = split_on_device(
            images, np.asarray(data.labels, dtype=np.int64), train, device
        )
        self.resolution = resolution
        self.batch = min(config.batch_size, len(train))
        count = len(train)
        self.steps_per_epoch = count // self.batch + (1 if count % self.batch > 1 else 0)
        self.autocast = autocast_dtype(config.precision, device)
        # The largest subnet's loss is the one with labels; the others learn from it.
        weights = loss_class_weights(
            np.asarray(data.labels, dtype=np.int64)[train], data.num_classes, config.class_weights
        )
        weight = None if weights is None else torch.tensor(weights, dtype=torch.float32)
        self.loss_fn = nn.CrossEntropyLoss(
            weight=None if weight is None else weight.to(device),
            label_smoothing=config.label_smoothing,
        )
        # fp16 needs loss scaling to keep small gradients from underflowing; bf16 does not.
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.autocast == torch.float16)

    # -- one step -------------------------------------------------------------------------------
    def _inputs(self, index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        inputs = self.x[index].float().div_(255.0)
        if self.config.augment:
            inputs = augment_batch(
                inputs,
                generator,
                ops=self.data.augment,
                strength=self.config.augment_strength,
            )
        return inputs

    def _at(self, inputs: torch.Tensor, resolution: int) -> torch.Tensor:
        if resolution == inputs.shape[-1]:
            return inputs
        return F.interpolate(
            inputs, size=(resolution, resolution), mode="bilinear", antialias=True,
            align_corners=False,
        )  # fmt: skip

    def step(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Forward and backward of the sandwich on one batch; returns the teacher's loss."""
        sampler, t = self.sampler, self.training.temperature
        subnets = [sampler.smallest] + [
            sampler.random() for _ in range(self.training.random_subnets)
        ]
        with torch.autocast(
            self.device.type, dtype=self.autocast, enabled=self.autocast is not None
        ):
            logits = self.supernet(self._at(inputs, sampler.largest.resolution), sampler.largest)
            loss = self.loss_fn(logits, targets)
        self.scaler.scale(loss).backward()
        soft = F.softmax(logits.detach().float() / t, dim=1)
        for genotype in subnets:
            with torch.autocast(
                self.device.type, dtype=self.autocast, enabled=self.autocast is not None
            ):
                student = self.supernet(self._at(inputs, genotype.resolution), genotype)
                kd = F.kl_div(
                    F.log_softmax(student.float() / t, dim=1), soft, reduction="batchmean"
                ) * (t * t)
            self.scaler.scale(kd).backward()
        return loss.detach()

    # -- the loop -------------------------------------------------------------------------------
    def run(
        self,
        checkpoint: Path | None,
        data_fingerprint: str | None,
        progress: Callable[[SupernetEpoch], None] | None,
        started: float,
    ) -> SupernetResult:
        supernet, sampler = self.supernet, self.sampler
        optimizer = build_optimizer(supernet, self.config)
        scaler = self.scaler
        meta = self._meta(data_fingerprint)
        prior = self._resume(checkpoint, meta) if checkpoint is not None else None
        done, spent, history = 0, 0.0, []
        if prior is not None:
            supernet.load_state_dict(prior.state["supernet"])
            epochs = prior.epochs
            self.steps_per_epoch = int(prior.state.get("steps_per_epoch", self.steps_per_epoch))
            done, spent, history = prior.epoch, prior.seconds, list(prior.history)
        else:
            epochs = self._plan_epochs()
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=self.config.lr, total_steps=epochs * self.steps_per_epoch
        )
        if prior is not None and done < epochs:
            optimizer.load_state_dict(prior.state["optimizer"])
            scheduler.load_state_dict(prior.state["scheduler"])
        judge = SubnetJudge(supernet, self.data, seed=self.seed, metric=self.config.metric)
        clock = TimeLeft(epochs - done)
        status = "complete"
        for epoch in range(done + 1, epochs + 1):
            epoch_started = time.perf_counter()
            supernet.train()
            # Everything random in an epoch follows from its number, so a resumed training
            # takes the steps the uninterrupted one would have taken.
            seed = _epoch_seed(self.seed, epoch)
            torch.manual_seed(seed)
            sampler.reseed(seed)
            shuffle = torch.Generator().manual_seed(seed)
            augment = torch.Generator(device=self.device).manual_seed(seed)
            order = torch.randperm(len(self.y), generator=shuffle).to(self.device)
            losses = []
            for s in range(self.steps_per_epoch):
                index = order[s * self.batch : (s + 1) * self.batch]
                optimizer.zero_grad(set_to_none=True)
                loss = self.step(self._inputs(index, augment), self.y[index])
                if not torch.isfinite(loss):
                    status = "diverged"
                    break
                losses.append(loss)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
            if status == "diverged":
                break
            supernet.eval()
            teacher_acc = judge.accuracy(sampler.largest)
            smallest_acc = judge.accuracy(sampler.smallest)
            spent += time.perf_counter() - epoch_started
            record = {
                "epoch": float(epoch),
                "loss": float(torch.stack(losses).mean()),
                "teacher_accuracy": teacher_acc,
                "smallest_accuracy": smallest_acc,
                "seconds": spent,
            }
            history.append(record)
            if checkpoint is not None:
                state: dict[str, object] = {
                    "supernet": supernet.state_dict(),
                    "steps_per_epoch": self.steps_per_epoch,
                }
                if epoch < epochs:  # what resuming needs; a finished file keeps the weights only
                    state["optimizer"] = optimizer.state_dict()
                    state["scheduler"] = scheduler.state_dict()
                write_checkpoint(
                    checkpoint, replace(meta, epochs=epochs, epoch=epoch, seconds=spent,
                                        history=tuple(history), state=state),
                )  # fmt: skip
            if progress is not None:
                progress(
                    SupernetEpoch(
                        epoch,
                        epochs,
                        spent,
                        record["loss"],
                        teacher_acc,
                        smallest_acc,
                        clock.text(epoch - done),
                    )
                )
        supernet.eval()
        return SupernetResult(
            epochs=len(history),
            seconds=spent,
            teacher=sampler.largest,
            smallest=sampler.smallest,
            history=tuple(history),
            resumed_from=done,
            status=status,
        )

    def _meta(self, data_fingerprint: str | None) -> SupernetFile:
        s = self.supernet
        return SupernetFile(
            space=s.space,
            in_channels=s.in_channels,
            num_classes=s.num_classes,
            mean=tuple(float(v) for v in s.normalize.mean.flatten()),
            std=tuple(float(v) for v in s.normalize.std.flatten()),
            data_fingerprint=data_fingerprint,
            teacher=str(self.sampler.largest),
            smallest=str(self.sampler.smallest),
            epochs=self.training.epochs,
            epoch=0,
            seconds=0.0,
            history=(),
            state={},
        )

    def _resume(self, path: Path, meta: SupernetFile) -> SupernetFile | None:
        if not path.exists():
            return None
        prior = read_checkpoint(path)
        mismatch = [
            name
            for name in ("space", "in_channels", "num_classes", "teacher", "smallest")
            if getattr(prior, name) != getattr(meta, name)
        ]
        if (
            prior.data_fingerprint is not None
            and meta.data_fingerprint is not None
            and prior.data_fingerprint != meta.data_fingerprint
        ):
            mismatch.append("data")
        if mismatch:
            raise ConfigError(
                f"{path} holds a supernet of another {', '.join(mismatch)}; give another "
                f"output folder, or delete it to train this one"
            )
        return prior

    def _plan_epochs(self) -> int:
        """The configured epochs, or fewer when a time limit would not hold them: a few steps
        are timed (and their gradients thrown away) to know the pace. When not even one epoch
        fits, the one epoch is cut to the steps that do."""
        epochs = self.training.epochs
        if self.training.seconds is None:
            return epochs
        probe = min(3, self.steps_per_epoch)
        generator = torch.Generator(device=self.device).manual_seed(self.seed)
        self.supernet.train()
        index = torch.arange(self.batch, device=self.device)
        self.step(self._inputs(index, generator), self.y[index])  # warm-up, not timed
        began = time.perf_counter()
        for _ in range(probe):
            self.step(self._inputs(index, generator), self.y[index])
        self.supernet.zero_grad(set_to_none=True)
        per_step = (time.perf_counter() - began) / probe
        # Judging the largest and smallest after each epoch costs about a step's worth per
        # hundred images; a tenth on top covers it.
        per_epoch = per_step * self.steps_per_epoch * 1.1
        left = self.training.seconds - (time.perf_counter() - began) * (probe + 1) / probe
        if left < per_epoch:
            self.steps_per_epoch = max(1, min(self.steps_per_epoch, int(left / (per_step * 1.1))))
            return 1
        return min(epochs, int(left / per_epoch))
