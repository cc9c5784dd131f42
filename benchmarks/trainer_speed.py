"""Seconds per training epoch of edgenas's trainer (`fit`) against a plain PyTorch loop, and
validation accuracy after 10 epochs, before and after the trainer's speed work.

On ELPV at 96 px, for ``mobilenetv2:0.5`` and two random ``edge``-space genotypes (the first
drawn that is mostly ``ir`` blocks, and the first that is mostly ``conv``/``res`` blocks), each
round times one epoch of every contender on a fresh copy of the same initial weights,
interleaved so that the machine's drift touches all alike; the table gives medians over the
rounds. The contenders:

- a plain loop (AdamW, label-smoothed cross-entropy, batch 64, no augmentation, no
  validation), in NCHW and in channels-last memory format;
- the same channels-last loop with the fused AdamW;
- ``fit`` as it was at ``--before`` (a git revision; its ``_trainer.py`` is loaded beside the
  current one) and ``fit`` as it is now, one epoch each, its augmentation, BatchNorm
  recalibration and validation included;
- the per-epoch BatchNorm recalibration and validation passes alone, before and after.

The accuracy part then has both trainers train each network for ``--epochs`` epochs from the
same initial weights with the same seed, for ``--seeds`` seeds, and compares their validation
accuracies. Each part writes its own section of BENCHMARKS.md.

    python benchmarks/trainer_speed.py [--part both|speed|accuracy] [--before d938996]
                                       [--rounds 3] [--epochs 10] [--seeds 3]
    python benchmarks/trainer_speed.py --device cuda   # mixed precision, sections of its own
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import importlib.util
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from _section import cpu_name, git_commit, write_section
from torch import nn

from edgenas.arch import Genotype, baseline, build_model
from edgenas.data import ImageDataset, load_dataset
from edgenas.space import edge_space
from edgenas.train import Fidelity, TrainConfig, resolve_device
from edgenas.train import _trainer as after_module

RESOLUTION = 96
BATCH = 64
ROOT = Path(__file__).resolve().parent.parent
# The last commit before the trainer was changed for speed.
DEFAULT_BEFORE = "d938996"


def load_before(revision: str) -> ModuleType:
    """The trainer module as it was at ``revision``, importable beside the current one."""
    source = subprocess.run(
        ["git", "show", f"{git_commit(revision)}:src/edgenas/train/_trainer.py"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    spec = importlib.util.spec_from_loader("edgenas.train._trainer_before", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    exec(compile(source, f"{revision}:_trainer.py", "exec"), module.__dict__)
    return module


def pick_genotypes(seed: int = 0) -> dict[str, Genotype]:
    """mobilenetv2:0.5 and the first random edge genotypes that are mostly ir / conv+res."""
    space = edge_space()
    rng = np.random.default_rng(seed)
    wanted: dict[str, Callable[[list[str]], bool]] = {
        "ir-heavy": lambda types: types.count("ir") / len(types) >= 0.6,
        "conv/res-heavy": lambda types: (
            sum(t in ("conv", "res") for t in types) / len(types) >= 0.6
        ),
    }
    found: dict[str, Genotype] = {"mobilenetv2:0.5": baseline("mobilenetv2:0.5", RESOLUTION)}
    for _ in range(100_000):
        g = space.sample(rng)
        types = [b.type for b in g.blocks]
        for name, test in wanted.items():
            if name not in found and test(types):
                found[name] = dataclasses.replace(g, resolution=RESOLUTION)
        if len(found) == 3:
            return found
    raise RuntimeError("no such genotypes drawn")


def fresh_model(g: Genotype, data: ImageDataset, device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    return build_model(g, data.channels, data.num_classes, data.mean, data.std).to(device)


def plain_epoch(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, channels_last: bool, fused: bool
) -> float:
    """One epoch of the plainest loop that trains the same network; its seconds."""
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.05, fused=fused)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    synchronize(x.device)
    started = time.perf_counter()
    order = torch.randperm(len(x), device=x.device)
    for start in range(0, len(x) - 1, BATCH):
        index = order[start : start + BATCH]
        inputs = x[index].float().div_(255.0)
        if channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        loss = loss_fn(model(inputs), y[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    synchronize(x.device)
    return time.perf_counter() - started


def eval_passes(module: ModuleType, model: nn.Module, x_train, x_val, y_val, device) -> float:
    """Seconds of one epoch's BatchNorm recalibration and validation as ``module`` does them."""
    if hasattr(module, "_MIN_EVAL_BATCH"):  # before: batch 256, the model as it is (NCHW)
        batch = max(BATCH, module._MIN_EVAL_BATCH)
        started = time.perf_counter()
        module._recalibrate_batchnorm(model, x_train, batch)
        module._accuracy(model, x_val, y_val, batch, device)
        synchronize(device)
        return time.perf_counter() - started
    batch = module._eval_batch_size(device, BATCH)
    with module._channels_last(module._memory_format(device), model):
        started = time.perf_counter()
        module._recalibrate_batchnorm(model, x_train, batch)
        module._accuracy(model, x_val, y_val, batch, device)
        synchronize(device)
        return time.perf_counter() - started


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--part", choices=("both", "speed", "accuracy"), default="both",
                   help="what to measure; each part writes its own section")  # fmt: skip
    p.add_argument("--before", default=DEFAULT_BEFORE, help="git revision of the old trainer")
    p.add_argument("--rounds", type=int, default=3, help="timed epochs per contender")
    p.add_argument("--epochs", type=int, default=10, help="epochs of the accuracy comparison")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 of the accuracy comparison")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--device", default="cpu", help="cpu, or cuda (mixed precision)")
    p.add_argument("--no-write", action="store_true", help="print, do not touch BENCHMARKS.md")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    bench = Bench(args)
    if args.part in ("both", "speed"):
        bench.speed()
    if args.part in ("both", "accuracy"):
        bench.accuracy()


class Bench:
    """The data, the networks and both trainers, loaded once for both parts."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.device = device = resolve_device(args.device)
        self.before = load_before(args.before)
        self.data = data = load_dataset("elpv", seed=0)
        images = data.images(RESOLUTION)
        labels = torch.from_numpy(np.asarray(data.labels, dtype=np.int64))
        train, val = torch.from_numpy(data.splits.train), torch.from_numpy(data.splits.val)
        self.x_train, self.y_train = images[train].to(device), labels[train].to(device)
        self.x_val, self.y_val = images[val].to(device), labels[val].to(device)
        self.genotypes = pick_genotypes()
        self.trainers = {
            "before": (
                self.before,
                self.before.TrainConfig(threads=args.threads, device=str(device)),
            ),
            "now": (after_module, TrainConfig(threads=args.threads, device=str(device))),
        }
        machine = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
        where = "CUDA, mixed precision" if device.type == "cuda" else f"{args.threads} threads"
        self.machine = f"{dt.date.today().isoformat()} · {machine}, {os.cpu_count()} cores, {where}"
        self.suffix = "_cuda" if device.type == "cuda" else ""
        self.data_line = (
            f"ELPV at {RESOLUTION} px ({len(train)} training, {len(val)} validation images), "
            f'batch {BATCH}. "Before" is `fit` at {args.before}.'
        )

    def model(self, g: Genotype) -> nn.Module:
        return fresh_model(g, self.data, self.device)

    def fit(self, trainer: str, g: Genotype, epochs: int, seed: int) -> Any:
        module, config = self.trainers[trainer]
        return module.fit(self.model(g), self.data, Fidelity(epochs=epochs),
                          resolution=RESOLUTION, seed=seed, config=config)  # fmt: skip

    def command(self, part: str, *options: str) -> str:
        cuda = " --device cuda" if self.device.type == "cuda" else ""
        return (f"`python benchmarks/trainer_speed.py --part {part} --before {self.args.before} "
                f"{' '.join(options)}{cuda}`")  # fmt: skip

    def speed(self) -> None:
        x, y = self.x_train, self.y_train

        def eval_pass(trainer: str) -> Callable[[Genotype], float]:
            module = self.trainers[trainer][0]
            return lambda g: eval_passes(module, self.model(g), x, self.x_val, self.y_val,
                                         self.device)  # fmt: skip

        contenders: dict[str, Callable[[Genotype], float]] = {
            "plain loop, NCHW": lambda g: plain_epoch(
                self.model(g), x, y, channels_last=False, fused=False
            ),
            "plain loop, channels-last": lambda g: plain_epoch(
                self.model(g), x, y, channels_last=True, fused=False
            ),
            "plain loop, channels-last, fused AdamW": lambda g: plain_epoch(
                self.model(g), x, y, channels_last=True, fused=True
            ),
            "fit before": lambda g: self.fit("before", g, 1, 0).seconds,
            "fit now": lambda g: self.fit("now", g, 1, 0).seconds,
            "recalibration + validation before": eval_pass("before"),
            "recalibration + validation now": eval_pass("now"),
        }
        seconds: dict[tuple[str, str], list[float]] = {}
        for name, g in self.genotypes.items():  # an untimed epoch each warms the kernel caches
            plain_epoch(self.model(g), x, y, channels_last=True, fused=True)
            print(f"{name}: {g}", flush=True)
        for r in range(self.args.rounds):
            for name, g in self.genotypes.items():
                for contender, run in contenders.items():
                    seconds.setdefault((name, contender), []).append(run(g))
                    print(f"round {r}, {name}, {contender}: "
                          f"{seconds[name, contender][-1]:.2f} s", flush=True)  # fmt: skip
        self.write_speed(seconds)

    def write_speed(self, seconds: dict[tuple[str, str], list[float]]) -> None:
        def med(name: str, contender: str) -> float:
            return statistics.median(seconds[name, contender])

        def span(values: list[float]) -> str:
            return f"{min(values):.2f}–{max(values):.2f}×"

        reference = "plain loop, channels-last"
        names = list(self.genotypes)
        head = "| seconds per epoch (median) | " + " | ".join(f"`{n}`" for n in names) + " |"
        rows = [head, "| --- |" + " ---: |" * len(names)]
        for contender in dict.fromkeys(c for _, c in seconds):
            cells = " | ".join(f"{med(n, contender):.2f}" for n in names)
            rows.append(f"| {contender} | {cells} |")
        for label in ("fit before", "fit now"):
            cells = " | ".join(f"**{med(n, label) / med(n, reference):.2f}×**" for n in names)
            rows.append(f"| {label} ÷ {reference} | {cells} |")
        ratio_now = [med(n, "fit now") / med(n, reference) for n in names]
        memory = [med(n, "plain loop, NCHW") / med(n, reference) for n in names]
        fused = [med(n, reference) / med(n, "plain loop, channels-last, fused AdamW")
                 for n in names]  # fmt: skip
        passes = [med(n, "recalibration + validation before")
                  / med(n, "recalibration + validation now") for n in names]  # fmt: skip
        title = "## Trainer speed: `fit` against a plain PyTorch loop"
        text = "\n".join([
            title + (" (CUDA)" if self.suffix else ""),
            "",
            f"{self.machine} · {self.command('speed', f'--rounds {self.args.rounds}')}",
            "",
            f"{self.data_line} One epoch of each contender per round on a fresh copy of the "
            f"same initial weights, interleaved, {self.args.rounds} rounds; medians. `fit`'s "
            "epoch includes its augmentation, BatchNorm recalibration (512 training images) and "
            "validation; the plain loops only train.",
            "",
            *(f"- `{n}`: `{g}`" for n, g in self.genotypes.items()),
            "",
            *rows,
            "",
            f"`fit` now takes **{span(ratio_now)}** the plain channels-last loop's training "
            "epoch, validation included. What each change bought, from the rows above: "
            f"channels-last memory format {span(memory)} faster (plain loop, NCHW ÷ "
            f"channels-last); the fused AdamW {span(fused)}; the recalibration and validation "
            f"passes {span(passes)} faster (batches of 64 instead of 256, which spilled the "
            "cache; channels-last too on CUDA). `fit` now trains in channels-last only on CUDA: "
            "on the CPU, PyTorch 2.13's kernels crashed on some networks in that format.",
        ])  # fmt: skip
        self.emit("trainer_speed", text)

    def accuracy(self) -> None:
        epochs, seeds = self.args.epochs, range(self.args.seeds)
        accuracy: dict[tuple[str, str, int], float] = {}
        for name, g in self.genotypes.items():
            for seed in seeds:
                for trainer in self.trainers:
                    result = self.fit(trainer, g, epochs, seed)
                    accuracy[name, trainer, seed] = result.accuracy
                    print(f"{name}, {trainer}, seed {seed}: val {result.accuracy:.4f}, "
                          f"{result.seconds:.0f} s", flush=True)  # fmt: skip
        rows = ["| network | seed | before | now | change (points) |",
                "| --- | ---: | ---: | ---: | ---: |"]  # fmt: skip
        changes = []
        for name in self.genotypes:
            for seed in seeds:
                old, new = accuracy[name, "before", seed], accuracy[name, "now", seed]
                changes.append(100 * (new - old))
                rows.append(f"| `{name}` | {seed} | {old:.2%} | {new:.2%} | {changes[-1]:+.1f} |")
        mean = statistics.mean(changes)
        spread = statistics.stdev(changes) if len(changes) > 1 else 0.0
        half = 2 * spread / len(changes) ** 0.5
        seed_spread = [
            max(accuracy[n, "before", s] for s in seeds)
            - min(accuracy[n, "before", s] for s in seeds)
            for n in self.genotypes
        ]
        text = "\n".join([
            f"### Trainer accuracy: before and after{' (CUDA)' if self.suffix else ''}",
            "",
            f"{self.machine} · "
            f"{self.command('accuracy', f'--epochs {epochs} --seeds {self.args.seeds}')}",
            "",
            f"{self.data_line} Validation accuracy after {epochs} epochs; each pair starts from "
            "the same initial weights with the same seed (the seed sets the subsample, shuffling "
            "and augmentation). Every run is listed.",
            "",
            *rows,
            "",
            f"Change over all {len(changes)} pairs: mean **{mean:+.2f} points** (± {half:.2f}, "
            f"two standard errors); |change| ≤ 1 point in "
            f"{sum(abs(c) <= 1 for c in changes)} of {len(changes)}. For scale, the old trainer's "
            f"own accuracy moves by {min(seed_spread) * 100:.1f}–{max(seed_spread) * 100:.1f} "
            "points between seeds (one validation image is 0.25 points).",
        ])  # fmt: skip
        self.emit("trainer_accuracy", text)

    def emit(self, mark: str, text: str) -> None:
        print(text)
        if not self.args.no_write:
            write_section(mark + self.suffix, text)


if __name__ == "__main__":
    main()
