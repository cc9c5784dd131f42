"""Seconds per training epoch of edgenas's trainer (`fit`) against a plain PyTorch loop, and
validation accuracy after 10 epochs, before and after the trainer's speed work, in one run.

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

Then both trainers train each network for ``--epochs`` epochs from the same initial weights with
the same seed, and their validation accuracies are compared.

    python benchmarks/trainer_speed.py [--before d938996] [--rounds 3] [--epochs 10]
    python benchmarks/trainer_speed.py --device cuda   # mixed precision, its own section
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

import numpy as np
import torch
from _section import cpu_name, write_section
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
        ["git", "show", f"{revision}:src/edgenas/train/_trainer.py"],
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
        return time.perf_counter() - started
    batch = module._eval_batch_size(device, BATCH)
    with module._channels_last(model):
        started = time.perf_counter()
        module._recalibrate_batchnorm(model, x_train, batch)
        module._accuracy(model, x_val, y_val, batch, device)
        synchronize(device)
        return time.perf_counter() - started


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--before", default=DEFAULT_BEFORE, help="git revision of the old trainer")
    p.add_argument("--rounds", type=int, default=3, help="timed epochs per contender")
    p.add_argument("--epochs", type=int, default=10, help="epochs of the accuracy comparison")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--device", default="cpu", help="cpu, or cuda (mixed precision)")
    p.add_argument("--no-write", action="store_true", help="print, do not touch BENCHMARKS.md")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    before = load_before(args.before)
    data = load_dataset("elpv", seed=0)
    images = data.images(RESOLUTION)
    labels = torch.from_numpy(np.asarray(data.labels, dtype=np.int64))
    train, val = torch.from_numpy(data.splits.train), torch.from_numpy(data.splits.val)
    x_train, y_train = images[train].to(device), labels[train].to(device)
    x_val, y_val = images[val].to(device), labels[val].to(device)
    genotypes = pick_genotypes()
    config_before = before.TrainConfig(threads=args.threads, device=str(device))
    config_after = TrainConfig(threads=args.threads, device=str(device))

    def fit_seconds(module: ModuleType, g: Genotype, config: object) -> float:
        model = fresh_model(g, data, device)
        return module.fit(model, data, Fidelity(epochs=1), resolution=RESOLUTION, seed=0,
                          config=config).seconds  # fmt: skip

    contenders: dict[str, Callable[[Genotype], float]] = {
        "plain loop, NCHW": lambda g: plain_epoch(
            fresh_model(g, data, device), x_train, y_train, channels_last=False, fused=False
        ),
        "plain loop, channels-last": lambda g: plain_epoch(
            fresh_model(g, data, device), x_train, y_train, channels_last=True, fused=False
        ),
        "plain loop, channels-last, fused AdamW": lambda g: plain_epoch(
            fresh_model(g, data, device), x_train, y_train, channels_last=True, fused=True
        ),
        "fit before": lambda g: fit_seconds(before, g, config_before),
        "fit now": lambda g: fit_seconds(after_module, g, config_after),
        "recalibration + validation before": lambda g: eval_passes(
            before, fresh_model(g, data, device), x_train, x_val, y_val, device
        ),
        "recalibration + validation now": lambda g: eval_passes(
            after_module, fresh_model(g, data, device), x_train, x_val, y_val, device
        ),
    }
    seconds: dict[tuple[str, str], list[float]] = {}
    for name, g in genotypes.items():  # one untimed epoch each to warm the kernels' caches
        plain_epoch(fresh_model(g, data, device), x_train, y_train, channels_last=True, fused=True)
        print(f"{name}: {g}", flush=True)
    for r in range(args.rounds):
        for name, g in genotypes.items():
            for contender, run in contenders.items():
                seconds.setdefault((name, contender), []).append(run(g))
                print(f"round {r}, {name}, {contender}: {seconds[name, contender][-1]:.2f} s",
                      flush=True)  # fmt: skip

    accuracy: dict[tuple[str, str], float] = {}
    fidelity = Fidelity(epochs=args.epochs)
    for name, g in genotypes.items():
        for label, module, config in (("before", before, config_before),
                                      ("now", after_module, config_after)):  # fmt: skip
            result = module.fit(fresh_model(g, data, device), data, fidelity,
                                resolution=RESOLUTION, seed=0, config=config)  # fmt: skip
            accuracy[name, label] = result.accuracy
            print(f"{name}, {label}: {args.epochs} epochs, val {result.accuracy:.4f}, "
                  f"{result.seconds:.0f} s", flush=True)  # fmt: skip

    write(args, device, genotypes, seconds, accuracy, len(train), len(val))


def write(args, device, genotypes, seconds, accuracy, n_train: int, n_val: int) -> None:
    def med(name: str, contender: str) -> float:
        return median(seconds[name, contender])

    reference = "plain loop, channels-last"
    names = list(genotypes)
    head = "| seconds per epoch (median) | " + " | ".join(f"`{n}`" for n in names) + " |"
    rows = [head, "| --- |" + " ---: |" * len(names)]
    for contender in dict.fromkeys(c for _, c in seconds):
        cells = " | ".join(f"{med(n, contender):.2f}" for n in names)
        rows.append(f"| {contender} | {cells} |")
    for label in ("fit before", "fit now"):
        cells = " | ".join(f"**{med(n, label) / med(n, reference):.2f}×**" for n in names)
        rows.append(f"| {label} ÷ {reference} | {cells} |")
    acc_rows = ["| network | val. accuracy before | val. accuracy now | change (points) |",
                "| --- | ---: | ---: | ---: |"]  # fmt: skip
    for n in names:
        old, new = accuracy[n, "before"], accuracy[n, "now"]
        acc_rows.append(f"| `{n}` | {old:.2%} | {new:.2%} | {100 * (new - old):+.1f} |")
    where = "CUDA, mixed precision" if device.type == "cuda" else f"{args.threads} threads"
    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    genotype_lines = [f"- `{n}`: `{g}`" for n, g in genotypes.items()]
    ratio_now = [med(n, "fit now") / med(n, reference) for n in names]
    memory = [med(n, "plain loop, NCHW") / med(n, reference) for n in names]
    fused = [med(n, reference) / med(n, "plain loop, channels-last, fused AdamW") for n in names]
    passes = [med(n, "recalibration + validation before") / med(n, "recalibration + validation now")
              for n in names]  # fmt: skip

    def span(values: list[float]) -> str:
        return f"{min(values):.2f}–{max(values):.2f}×"

    title = "## Trainer speed: `fit` against a plain PyTorch loop"
    mark = "trainer_speed"
    if device.type == "cuda":
        title += " (CUDA)"
        mark += "_cuda"
    text = "\n".join([
        title,
        "",
        f"{dt.date.today().isoformat()} · {machine}, {os.cpu_count()} cores, {where} · "
        f"`python benchmarks/trainer_speed.py --before {args.before} --rounds {args.rounds} "
        f"--epochs {args.epochs}{' --device cuda' if device.type == 'cuda' else ''}`",
        "",
        f"ELPV at {RESOLUTION} px ({n_train} training, {n_val} validation images), batch "
        f"{BATCH}. One epoch of each contender per round on a fresh copy of the same initial "
        f"weights, interleaved, {args.rounds} rounds; medians. `fit`'s epoch includes its "
        "augmentation, BatchNorm recalibration (512 training images) and validation; the plain "
        f"loops only train. \"Before\" is `fit` at {args.before}.",
        "",
        *genotype_lines,
        "",
        *rows,
        "",
        f"`fit` now takes **{span(ratio_now)}** the plain channels-last loop's training epoch, "
        "validation included. What each change bought, from the rows above: channels-last "
        f"memory format {span(memory)} faster (plain loop, NCHW ÷ channels-last); the fused "
        f"AdamW {span(fused)}; the recalibration and validation passes {span(passes)} faster "
        "(channels-last, and batches of 64 instead of 256, which spilled the cache).",
        "",
        f"Validation accuracy after {args.epochs} epochs, same initial weights and seed 0, "
        "one run each:",
        "",
        *acc_rows,
    ])  # fmt: skip
    print(text)
    if not args.no_write:
        write_section(mark, text)


if __name__ == "__main__":
    main()
