"""ELPV: one-shot search against per-candidate search and hand-designed baselines (issue 17).

The measurement comes in parts, each of which may take hours and runs on its own (in separate
sessions if need be). Every run of a part appends one record to
``benchmarks/results/oneshot_elpv/<part>.json`` (a list: earlier runs are never overwritten,
so every fresh run is kept, not the best), then the BENCHMARKS.md section ``oneshot_elpv`` is
written again from all the records (``--no-write``: only print it).

    python benchmarks/oneshot_elpv.py oneshot [--budget 2h] [--max-latency 1ms] [--epochs 30]
        [--seed 0] [--profile PATH] [--out runs/bench-oneshot]
    python benchmarks/oneshot_elpv.py tpe [--budget SECONDS|2h|same] [--max-latency 1ms]
        [--tpe-epochs 6] [--tpe-resolution 64] [--seed 0] [--out runs/bench-tpe]
    python benchmarks/oneshot_elpv.py baselines [--epochs 30] [--resolution R|same] [--seed 0]
    python benchmarks/oneshot_elpv.py ranking [--subnets 12] [--rank-epochs 10] [--seed S]
    python benchmarks/oneshot_elpv.py specialise [--max-latency 0.5ms] [--epochs 30]
        [--subnets 2000] [--out runs/bench-oneshot-0.5ms]
    python benchmarks/oneshot_elpv.py finetune [--epochs 30] [--recipes default,low-lr,...]
    python benchmarks/oneshot_elpv.py recipe [--model mobilenetv3-small|GENOTYPE] [--resolution 128]
        [--epochs 30] [--variants default,no-aug,...] [--seeds 0,1] [--parallel 2]
    python benchmarks/oneshot_elpv.py errors
    python benchmarks/oneshot_elpv.py section

Every part takes ``--data`` (default elpv; ``synthetic`` for a quick test), ``--results DIR``
(where the records are, default benchmarks/results/oneshot_elpv), ``--cache DIR`` (decoded
images of the trainings run here) and ``--no-write``. Settings to test the script quickly:
``oneshot --profile-quick --supernet-epochs N --subnets N --finetune N --resolution 32``,
``ranking --allow-fewer``, and ``specialise --subnets N --finetune N``, for instance::

    python benchmarks/oneshot_elpv.py oneshot --data synthetic --budget 8m --epochs 1 \
        --max-latency 5ms --profile-quick --supernet-epochs 1 --subnets 30 --finetune 1 \
        --resolution 32 --out runs/test-oneshot --results runs/test-results --no-write

- ``oneshot``: the whole one-shot search within ``--budget`` of wall-clock, everything
  included: without ``--profile`` a device profile of this machine is made first (``edgenas
  profile local``, into the run directory) and its time is taken from the budget, then
  ``edgenas search --one-shot --device PROFILE --time-budget REST`` runs.
- ``tpe``: today's per-candidate search (``--strategy tpe``, each candidate trained), for
  ``--budget`` (``same``: the wall-clock of the latest ``oneshot`` run).
- ``baselines``: mobilenetv2:0.5 and mobilenetv3-small trained with the trainer's default
  recipe (that of the one-shot search's final trainings) at ``--resolution`` (``same``: the
  resolution of the latest one-shot best).
- ``ranking``: subnets the latest ``oneshot`` run judged, spread over its latency range, each
  trained from scratch; Kendall's τ between the accuracy with inherited weights and from
  scratch (validation, both).
- ``specialise``: the latest ``oneshot`` run's supernet reused for another latency limit
  (``--supernet``): how long until the final trainings start, and what it finds.
- ``finetune``: how to train the inherited weights of the latest ``oneshot`` run's final
  candidates again. Each candidate, extracted from that run's supernet, is fine-tuned once per
  recipe (``--recipes``): ``default`` (the trainer's recipe, as the search uses it),
  ``low-lr`` (a tenth of its peak learning rate), ``low-lr-kd`` (the same, distilled from the
  supernet's largest subnet); ``inherited`` is the candidate as judged, not trained. Validation
  accuracy only: the recipe is chosen on it, so the holdout stays unseen.
- ``recipe``: what each change to the trainer's recipe buys on one fixed network (a baseline or a
  genotype, trained from scratch), ``--seeds`` training seeds per variant (``--variants``, of
  `VARIANTS`), run ``--parallel`` at a time with one thread each, side by side. Training
  accuracy (the training images without augmentation) says whether a recipe under- or
  overfits; validation accuracy says what it buys. No holdout figure is taken.
- ``errors``: where the errors are. ELPV's annotators gave each cell a defect probability (0,
  1/3, 2/3 or 1; the binary label is ``>= 0.5``) and a cell type (mono- or polycrystalline).
  The latest ``oneshot`` run's largest and smallest subnets (inherited weights, as judged)
  are scored per level and type on the training and validation images: errors on the
  uncertain levels point at the labels, errors on the certain ones at the model.
- ``section``: only write the section again from the records.

A bare number of seconds or a duration (``90s``, ``30m``, ``2h``) is accepted by ``--budget``.
A part's run directory (``--out``) must be new: the script stops if it holds an earlier run,
unless ``--resume`` is given (the record then says so; its wall-clock counts this invocation).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from _section import write_section

if TYPE_CHECKING:
    from edgenas.data import ImageDataset

MARK = "oneshot_elpv"
ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path("benchmarks/results/oneshot_elpv")
PARTS = ("oneshot", "tpe", "baselines", "ranking", "specialise", "finetune", "recipe", "errors")
BASELINE_MODELS = ("mobilenetv2:0.5", "mobilenetv3-small")
MIN_RANKED = 12  # subnets the ranking trains unless fewer are asked for explicitly
# Ways to train a one-shot candidate's inherited weights again (part ``finetune``).
RECIPES = ("inherited", "default", "low-lr", "low-lr-kd")
LOW_LR_SHARE = 0.1  # low-lr: this share of the trainer's default peak learning rate
# Changes to the trainer's default recipe (part ``recipe``): TrainConfig fields,
# "epochs_factor" (a multiple of --epochs) and "data_augment" (the data's augmentations, as
# edgenas search --augment names them).
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "no-aug": {"augment": False},
    "no-smoothing": {"label_smoothing": 0.0},
    "low-reg": {"label_smoothing": 0.0, "weight_decay": 0.005},
    "lr-x3": {"lr": 9e-3},
    "epochs-x3": {"epochs_factor": 3},
    "sgd": {"optimizer": "sgd", "lr": 0.05},
    # The data's own augmentation: ELPV allows quarter turns, but its cells are not symmetric
    # under them (the busbars run one way).
    "no-rot90": {"data_augment": "flip-h,flip-v,shift,brightness,contrast"},
    "flips-only": {"data_augment": "flip-h,flip-v"},
}

Record = dict[str, Any]


# -- paths, records and the machine ----------------------------------------------------------------
def stored(path: Path | str) -> str:
    """A path as records keep it: relative to the repository when inside it."""
    p = Path(path)
    p = p if p.is_absolute() else Path.cwd() / p
    p = Path(os.path.normpath(p))
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(p)


def located(path: str) -> Path:
    """A path from a record, as a path on this machine (relative ones are the repository's)."""
    p = Path(path)
    return p if p.is_absolute() else ROOT / p


def records(results: Path, part: str) -> list[Record]:
    """Every recorded run of ``part``, oldest first."""
    path = results / f"{part}.json"
    if not path.exists():
        return []
    runs = json.loads(path.read_text())
    if not isinstance(runs, list):
        raise SystemExit(f"{path} is not a list of runs")
    return runs


def append(results: Path, part: str, record: Record) -> Path:
    """Add ``record`` to the part's list of runs (written whole, then renamed into place)."""
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"{part}.json"
    runs = [*records(results, part), record]
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(runs, indent=2) + "\n")
    temporary.replace(path)
    return path


def latest(results: Path, part: str, data: str) -> Record:
    """The latest recorded run of ``part`` on ``data``; exits if there is none."""
    runs = [r for r in records(results, part) if r["data"]["name"] == data]
    if not runs:
        raise SystemExit(
            f"no {part} run on {data} is recorded in {results}; run "
            f"`python benchmarks/oneshot_elpv.py {part} --data {data}` first"
        )
    return runs[-1]


def machine() -> dict[str, Any]:
    """What the figures were measured on, and how busy it was when the part started."""
    import torch

    from edgenas.device import device_info

    info = device_info()
    device = info["device"]
    return {
        "cpu": device["cpu"],
        "cores": device["cores"],
        "os": device["os"],
        "python": device["python"],
        "torch": torch.__version__,
        "onnxruntime": info["runtime"]["version"],
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def git_state() -> dict[str, Any]:
    """The commit the code was at, and whether the work tree had changes."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    return {"commit": git("rev-parse", "HEAD") or None, "dirty": bool(git("status", "--porcelain"))}


def command_line() -> str:
    """This invocation as a command to type in the repository."""
    return shlex.join(["python", stored(sys.argv[0]), *sys.argv[1:]])


def new_record(part: str, args: argparse.Namespace, settings: dict[str, Any]) -> Record:
    return {
        "part": part,
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine(),
        "git": git_state(),
        "command": command_line(),
        "settings": {"data": args.data, **settings},
    }


def wilson(accuracy: float, images: int) -> list[float]:
    """The 95% Wilson interval of an accuracy measured on ``images`` images."""
    from edgenas.finalize import wilson_interval

    low, high = wilson_interval(round(accuracy * images), images)
    return [round(low, 6), round(high, 6)]


def describe_data(
    name: str, seed: int, cache: str | None = None
) -> tuple[ImageDataset, dict[str, Any]]:
    """The data with the split of ``seed`` (no image decoded yet), and what the section says of
    it: split sizes, holdout classes, and always answering the holdout's majority class."""
    import numpy as np

    from edgenas.data import load_dataset

    cache_dir = located(stored(cache)) if cache else None
    data = load_dataset(name, cache_dir=cache_dir, seed=seed)
    counts = np.bincount(data.labels[data.splits.holdout], minlength=data.num_classes)
    holdout = int(counts.sum())
    majority = int(counts.argmax())
    accuracy = float(counts[majority]) / holdout
    return data, {
        "name": name,
        "seed": seed,
        "images": len(data),
        "channels": data.channels,
        "classes": data.num_classes,
        "train_images": len(data.splits.train),
        "validation_images": len(data.splits.val),
        "holdout_images": holdout,
        "holdout_classes": {c: int(n) for c, n in zip(data.class_names, counts, strict=True)},
        "majority_class": data.class_names[majority],
        "majority_accuracy": accuracy,
        "majority_interval": wilson(accuracy, holdout),
    }


def seconds(text: str) -> float:
    """Seconds from a bare number of seconds or a duration such as 90s, 30m, 2h or 1h30m."""
    from edgenas.cost import parse_duration

    try:
        return float(text)
    except ValueError:
        return parse_duration(text)


def fresh_out(out: str, resume: bool) -> Path:
    """The run directory of a part, which must not hold an earlier run unless resuming."""
    path = located(stored(out))
    earlier = [n for n in ("spec.json", "study.db", "results.json") if (path / n).exists()]
    if earlier and not resume:
        raise SystemExit(
            f"{out} holds an earlier run ({', '.join(earlier)}); give a new --out for a fresh "
            f"run, or --resume to finish that one"
        )
    return path


def run_json(command: list[str], log: Path) -> tuple[dict[str, Any], float]:
    """Run an edgenas command that prints JSON (``--json``), its log shown and kept in ``log``;
    returns the JSON and the wall seconds."""
    shown = shlex.join(["edgenas", *command])
    print(f"running {shown}\n  (log: {stored(log)})", flush=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with log.open("a") as kept:
        kept.write(f"$ {shown}\n")
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgenas", *command], cwd=ROOT, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        # stdout (the JSON) is read by a thread so that neither pipe can fill up and block.
        out: list[str] = []
        assert proc.stdout is not None and proc.stderr is not None
        stdout = proc.stdout
        reader = threading.Thread(target=lambda: out.append(stdout.read()))
        reader.start()
        for line in proc.stderr:
            sys.stderr.write(line)
            kept.write(line)
            kept.flush()
        code = proc.wait()
        reader.join()
    wall = time.perf_counter() - started
    if code:
        raise SystemExit(f"`{shown}` failed ({code}); see {stored(log)}")
    return json.loads("".join(out)), wall


def run_search(command: list[str], out: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run an ``edgenas search ... --json`` whose run directory is ``out`` (its log beside it);
    returns its results.json and what a record says of the search."""
    log = out.parent / f"{out.name}.log"
    results, wall = run_json(command, log)
    return results, {
        "command": shlex.join(["edgenas", *command]),
        "wall_seconds": wall,
        "results": stored(out / "results.json"),
        "log": stored(log),
        "summary": summary_of(results),
    }


def run_plain(command: list[str], log: Path) -> float:
    """Run an edgenas command, its output kept in ``log``; returns the wall seconds."""
    shown = shlex.join(["edgenas", *command])
    print(f"running {shown}\n  (log: {stored(log)})", flush=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with log.open("a") as kept:
        kept.write(f"$ {shown}\n")
        kept.flush()
        code = subprocess.run(
            [sys.executable, "-m", "edgenas", *command], cwd=ROOT, stdout=kept,
            stderr=subprocess.STDOUT,
        ).returncode  # fmt: skip
    if code:
        raise SystemExit(f"`{shown}` failed ({code}); see {stored(log)}")
    return time.perf_counter() - started


# -- what a search found ------------------------------------------------------------------------
def best_of(results: dict[str, Any], limit_ms: float) -> dict[str, Any] | None:
    """The best of a search as the records keep it, with its holdout interval."""
    best = results.get("best_details")
    if not best or best.get("holdout_accuracy") is None:
        return None
    trial: dict[str, Any] = next((t for t in results["trials"] if t["number"] == best["trial"]), {})
    images = int(best["holdout_images"])
    latency = best.get("latency_ms_measured")
    return {
        "trial": best["trial"],
        "start": trial.get("start"),
        "finetune_of": trial.get("finetune_of"),
        "genotype": best["genotype"],
        "validation_accuracy": best["accuracy"],
        "validation_images": best.get("validation_images"),
        "holdout_accuracy": best["holdout_accuracy"],
        "holdout_images": images,
        "holdout_interval": wilson(best["holdout_accuracy"], images),
        "latency_ms_measured": latency,
        "latency_ms_predicted": best.get("latency_ms_predicted"),
        "meets_limit": latency is not None and latency <= limit_ms,
        "epochs": trial.get("epochs"),
        "train_seconds": trial.get("train_seconds"),
    }


def one_shot_of(results: dict[str, Any]) -> dict[str, Any]:
    """The supernet, the judging and the final trainings of a one-shot search."""
    info = results.get("one_shot") or {}
    history = info.get("history") or []
    last = history[-1] if history else {}
    finals = [
        {
            "trial": t["number"],
            "finetune_of": t.get("finetune_of"),
            "start": t["start"],
            "state": t["state"],
            "validation_accuracy": t.get("accuracy"),
            "epochs": t.get("epochs"),
            "train_seconds": t.get("train_seconds"),
            "latency_ms": (t.get("costs") or {}).get("latency_ms"),
            "genotype": t.get("genotype"),
        }
        for t in results["trials"]
        if t.get("start")
    ]
    return {
        "supernet": {
            "path": info.get("supernet"),
            "reused": info.get("reused"),
            "epochs": info.get("epochs"),
            "seconds": info.get("seconds"),
            "teacher": info.get("teacher"),
            "teacher_accuracy": last.get("teacher_accuracy"),
            "smallest_accuracy": last.get("smallest_accuracy"),
            "history": history,
        },
        "ready_seconds": info.get("ready_seconds"),
        "subnets_judged": info.get("subnets_judged"),
        "search_seconds": info.get("search_seconds"),
        "subnets_per_hour": info.get("subnets_per_hour"),
        "trained_again": info.get("trained_again"),
        "finetune_recipe": info.get("finetune_recipe"),
        "final_trainings": finals,
    }


def summary_of(results: dict[str, Any]) -> dict[str, Any]:
    s = results.get("summary") or {}
    keys = ("trials", "trained", "one_shot", "rejected", "pruned", "failed", "complete")
    return {k: s[k] for k in keys if k in s}


# -- the parts ----------------------------------------------------------------------------------
def part_oneshot(args: argparse.Namespace) -> Record:
    from edgenas.cost import parse_latency

    started = time.perf_counter()
    budget = seconds(args.budget)
    limit = parse_latency(args.max_latency)
    out = fresh_out(args.out, args.resume)
    _, data_info = describe_data(args.data, args.seed)
    log = out.parent / f"{out.name}.log"
    settings = {
        "budget": args.budget, "budget_seconds": budget, "max_latency": args.max_latency,
        "max_latency_ms": limit, "epochs": args.epochs, "seed": args.seed, "out": stored(out),
        "profile": args.profile, "profile_quick": args.profile_quick,
        "supernet_epochs": args.supernet_epochs, "subnets": args.subnets,
        "finetune": args.finetune, "resolution": args.resolution, "resumed": args.resume,
    }  # fmt: skip
    record = new_record("oneshot", args, settings)

    profile_seconds = 0.0
    if args.profile:
        profile = located(stored(args.profile))
        profile_info: dict[str, Any] = {"path": stored(profile), "made": False, "seconds": 0.0}
    else:
        profile = out / "profile.json"
        command = ["profile", "local", "--threads", "1",
                   "--channels", str(data_info["channels"]),
                   "--classes", str(data_info["classes"]),
                   "--no-memory", "--out", stored(profile)]  # fmt: skip
        if args.profile_quick:
            command += ["--architectures", "100", "--references", "20"]
        if profile.exists() and args.resume:
            profile_info = {"path": stored(profile), "made": False, "seconds": 0.0,
                            "note": "made by the run resumed"}  # fmt: skip
        else:
            out.mkdir(parents=True, exist_ok=True)
            profile_seconds = run_plain(command, log)
            profile_info = {"path": stored(profile), "made": True, "seconds": profile_seconds,
                            "command": shlex.join(["edgenas", *command])}  # fmt: skip
    rest = budget - (time.perf_counter() - started)
    if rest < 60:
        raise SystemExit(f"the budget {args.budget} leaves {rest:.0f} s for the search")
    command = ["search", args.data, "--one-shot", "--device", stored(profile),
               "--max-latency", args.max_latency, "--time-budget", f"{int(rest)}s",
               "--epochs", str(args.epochs), "--seed", str(args.seed), "--out", stored(out),
               "--json"]  # fmt: skip
    for option, value in (("--supernet-epochs", args.supernet_epochs),
                          ("--subnets", args.subnets), ("--finetune", args.finetune),
                          ("--resolution", args.resolution)):  # fmt: skip
        if value is not None:
            command += [option, str(value)]
    results, search = run_search(command, out)
    wall = time.perf_counter() - started
    return {
        **record,
        "data": data_info,
        "profile": profile_info,
        "search": {**search, "time_budget_seconds": int(rest)},
        "wall_seconds": wall,
        "within_budget": wall <= budget,
        **one_shot_of(results),
        "best": best_of(results, limit),
    }


def part_tpe(args: argparse.Namespace) -> Record:
    from edgenas.cost import parse_latency

    started = time.perf_counter()
    limit = parse_latency(args.max_latency)
    if args.budget == "same":
        source = latest(located(args.results), "oneshot", args.data)
        budget = float(source["wall_seconds"])
        budget_from = {"part": "oneshot", "date": source["date"]}
    else:
        budget, budget_from = seconds(args.budget), None
    out = fresh_out(args.out, args.resume)
    _, data_info = describe_data(args.data, args.seed)
    settings = {
        "budget": args.budget, "budget_seconds": budget, "budget_from": budget_from,
        "max_latency": args.max_latency, "max_latency_ms": limit, "epochs": args.tpe_epochs,
        "resolution": args.tpe_resolution, "seed": args.seed, "out": stored(out),
        "resumed": args.resume,
    }  # fmt: skip
    record = new_record("tpe", args, settings)
    command = ["search", args.data, "--strategy", "tpe", "--max-latency", args.max_latency,
               "--time-budget", f"{int(budget)}s", "--epochs", str(args.tpe_epochs),
               "--resolution", str(args.tpe_resolution), "--trials", "100000",
               "--seed", str(args.seed), "--out", stored(out), "--json"]  # fmt: skip
    results, search = run_search(command, out)
    return {
        **record,
        "data": data_info,
        "search": search,
        "wall_seconds": time.perf_counter() - started,
        "best": best_of(results, limit),
    }


def train_from_scratch(
    genotype: str, data: ImageDataset, epochs: int, seed: int
) -> tuple[Any, Any, float]:
    """A model of ``genotype`` trained with the default recipe: (model, TrainResult, seconds)."""
    import torch

    from edgenas.arch import Genotype, build_model
    from edgenas.train import Fidelity, TrainConfig, fit

    g = Genotype.parse(genotype)
    torch.manual_seed(seed)
    model = build_model(g, data.channels, data.num_classes, data.mean, data.std)
    started = time.perf_counter()
    result = fit(model, data, Fidelity(epochs=epochs), resolution=g.resolution, seed=seed,
                 config=TrainConfig())  # fmt: skip
    return model, result, time.perf_counter() - started


def part_baselines(args: argparse.Namespace) -> Record:
    import torch

    from edgenas.arch import Genotype, baseline
    from edgenas.cost import CostModel, analytic_costs, parse_latency
    from edgenas.train import evaluate

    source: Record = {}
    if args.resolution == "same" or args.max_latency is None:
        source = latest(located(args.results), "oneshot", args.data)
    if args.resolution == "same":
        if not source.get("best"):
            raise SystemExit("the latest oneshot run found no best; give --resolution")
        resolution = Genotype.parse(source["best"]["genotype"]).resolution
    else:
        resolution = int(args.resolution)
    max_latency = args.max_latency or source["settings"]["max_latency"]
    limit = parse_latency(max_latency)
    started = time.perf_counter()
    data, data_info = describe_data(args.data, args.seed, args.cache)
    settings = {
        "models": list(args.models), "epochs": args.epochs, "resolution": resolution,
        "resolution_from": args.resolution, "max_latency": max_latency,
        "max_latency_ms": limit, "seed": args.seed,
    }  # fmt: skip
    record = new_record("baselines", args, settings)
    cost = CostModel(data.channels, data.num_classes, threads=1)
    holdout = torch.as_tensor(data.splits.holdout)
    models = []
    for name in args.models:
        genotype = str(baseline(name, resolution))
        print(f"training {name} ({epochs(args.epochs)} at {resolution})", flush=True)
        model, result, train_seconds = train_from_scratch(genotype, data, args.epochs, args.seed)
        accuracy = evaluate(model, data.images(resolution)[holdout],
                            torch.as_tensor(data.labels)[holdout])  # fmt: skip
        images = len(holdout)
        g = Genotype.parse(genotype)
        latency = cost.latency_ms(g, fresh=True)
        models.append(
            {
                "name": name,
                "genotype": genotype,
                "params": analytic_costs(g, data.channels, data.num_classes).params,
                "validation_accuracy": result.accuracy,
                "holdout_accuracy": accuracy,
                "holdout_images": images,
                "holdout_interval": wilson(accuracy, images),
                "latency_ms_measured": latency,
                "meets_limit": latency <= limit,
                "epochs": result.epochs,
                "status": result.status,
                "train_seconds": train_seconds,
            }
        )
    return {
        **record,
        "data": data_info,
        "models": models,
        "wall_seconds": time.perf_counter() - started,
    }


def spread(pool: Sequence[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """``n`` of ``pool`` (sorted) at evenly spaced ranks: its quantiles, first and last included."""
    if n == 1:
        return [pool[0]]
    return [pool[round(i * (len(pool) - 1) / (n - 1))] for i in range(n)]


def part_ranking(args: argparse.Namespace) -> Record:
    from scipy.stats import kendalltau

    if args.subnets < MIN_RANKED and not args.allow_fewer:
        raise SystemExit(
            f"--subnets {args.subnets}: the ranking needs {MIN_RANKED} or more "
            f"(--allow-fewer to test with fewer)"
        )
    if args.subnets < 3:
        raise SystemExit("--subnets: Kendall's τ needs 3 or more")
    started = time.perf_counter()
    source = latest(located(args.results), "oneshot", args.data)
    results_path = located(source["search"]["results"])
    results = json.loads(results_path.read_text())
    split_seed = int(source["settings"]["seed"])
    seed = split_seed if args.seed is None else args.seed
    judged: dict[str, dict[str, Any]] = {}
    for t in results["trials"]:
        if (t.get("one_shot") and t["state"] == "complete" and t.get("accuracy") is not None
                and t.get("costs") and t.get("genotype")):  # fmt: skip
            judged.setdefault(t["genotype"], t)  # one per architecture, the first judged
    pool = sorted(judged.values(), key=lambda t: (t["costs"]["latency_ms"], t["number"]))
    if len(pool) < args.subnets:
        raise SystemExit(f"{results_path} holds {len(pool)} judged subnets, fewer than asked")
    picks = spread(pool, args.subnets)
    data, data_info = describe_data(args.data, split_seed, args.cache)
    settings = {
        "subnets": args.subnets, "rank_epochs": args.rank_epochs, "seed": seed,
        "split_seed": split_seed, "oneshot_run": {"date": source["date"],
                                                  "results": source["search"]["results"]},
        "judged_subnets": len(pool),
    }  # fmt: skip
    record = new_record("ranking", args, settings)
    # Pairs already trained by an interrupted run with the same settings are kept.
    progress = results_path.parent / (
        f"bench-ranking-n{args.subnets}-e{args.rank_epochs}-s{seed}.partial.json"
    )
    done: dict[int, dict[str, Any]] = {}
    if progress.exists():
        done = {p["trial"]: p for p in json.loads(progress.read_text())}
    pairs = []
    for i, t in enumerate(picks, 1):
        if t["number"] in done:
            pairs.append(done[t["number"]])
            continue
        print(f"[{i}/{len(picks)}] trial {t['number']} ({t['costs']['latency_ms']:.3f} ms) "
              f"from scratch, {args.rank_epochs} epoch(s)", flush=True)  # fmt: skip
        _, result, train_seconds = train_from_scratch(t["genotype"], data, args.rank_epochs, seed)
        pairs.append(
            {
                "trial": t["number"],
                "genotype": t["genotype"],
                "latency_ms": t["costs"]["latency_ms"],
                "inherited_accuracy": t["accuracy"],
                "scratch_accuracy": result.accuracy,
                "epochs": result.epochs,
                "status": result.status,
                "train_seconds": train_seconds,
            }
        )
        progress.write_text(json.dumps(pairs, indent=2) + "\n")
    inherited = [p["inherited_accuracy"] for p in pairs]
    scratch = [p["scratch_accuracy"] for p in pairs]
    tau, p_value = kendalltau(inherited, scratch)
    record = {
        **record,
        "data": data_info,
        "pairs": pairs,
        "resumed_pairs": len([p for p in picks if p["number"] in done]),
        "n": len(pairs),
        "kendall": "tau-b (scipy.stats.kendalltau)",
        "kendall_tau": None if tau != tau else float(tau),  # NaN when one side is constant
        "p_value": None if p_value != p_value else float(p_value),
        "wall_seconds": time.perf_counter() - started,
    }
    progress.unlink(missing_ok=True)
    return record


def part_specialise(args: argparse.Namespace) -> Record:
    from edgenas.cost import parse_latency

    started = time.perf_counter()
    limit = parse_latency(args.max_latency)
    source = latest(located(args.results), "oneshot", args.data)
    supernet = located(source["settings"]["out"]) / "supernet.pt"
    profile = source["profile"]["path"]
    seed = int(source["settings"]["seed"]) if args.seed is None else args.seed
    out = fresh_out(args.out or f"runs/bench-oneshot-{args.max_latency}", args.resume)
    _, data_info = describe_data(args.data, seed)
    settings = {
        "max_latency": args.max_latency, "max_latency_ms": limit, "epochs": args.epochs,
        "subnets": args.subnets, "finetune": args.finetune, "seed": seed, "out": stored(out),
        "supernet": stored(supernet), "profile": profile,
        "oneshot_run": {"date": source["date"], "out": source["settings"]["out"],
                        "max_latency": source["settings"]["max_latency"]},
        "resumed": args.resume,
    }  # fmt: skip
    record = new_record("specialise", args, settings)
    command = ["search", args.data, "--one-shot", "--supernet", stored(supernet),
               "--device", profile, "--max-latency", args.max_latency,
               "--epochs", str(args.epochs), "--subnets", str(args.subnets),
               "--seed", str(seed), "--out", stored(out), "--json"]  # fmt: skip
    if args.finetune is not None:
        command += ["--finetune", str(args.finetune)]
    if source["settings"].get("resolution"):  # the space must lie within the supernet's
        command += ["--resolution", str(source["settings"]["resolution"])]
    results, search = run_search(command, out)
    one_shot = one_shot_of(results)
    ready, judging = one_shot["ready_seconds"], one_shot["search_seconds"]
    return {
        **record,
        "data": data_info,
        "search": search,
        "wall_seconds": time.perf_counter() - started,
        "seconds_to_finetuning": None if ready is None or judging is None else ready + judging,
        **one_shot,
        "best": best_of(results, limit),
    }


def names_of(text: str, known: Sequence[str] | dict[str, Any], option: str) -> list[str]:
    """The comma-separated names of ``text``; stops with a message naming ``option`` if one is
    not ``known`` or none is given."""
    names = [x.strip() for x in text.split(",") if x.strip()]
    unknown = sorted(set(names) - set(known))
    if unknown or not names:
        raise SystemExit(f"{option}: {', '.join(unknown) or 'none given'}; choose from "
                         f"{', '.join(known)}")  # fmt: skip
    return names


def part_finetune(args: argparse.Namespace) -> Record:
    import dataclasses

    import torch

    from edgenas.arch import Genotype
    from edgenas.oneshot import SubnetJudge, load_supernet
    from edgenas.train import Distillation, Fidelity, TrainConfig, fit

    recipes = names_of(args.recipes, RECIPES, "--recipes")
    started = time.perf_counter()
    source = latest(located(args.results), "oneshot", args.data)
    results_path = located(source["search"]["results"])
    results = json.loads(results_path.read_text())
    by_number = {t["number"]: t for t in results["trials"]}
    candidates = [by_number[n] for n in source["trained_again"]]
    path = located(source["settings"]["out"]) / "supernet.pt"
    supernet, saved = load_supernet(path)
    seed = int(source["settings"]["seed"])
    data, data_info = describe_data(args.data, seed, args.cache)
    judge = SubnetJudge(supernet, data, seed=seed)  # as the search judged its subnets
    teacher = Genotype.parse(saved.teacher)

    default = TrainConfig()
    low = dataclasses.replace(default, lr=default.lr * LOW_LR_SHARE)
    configs = {"default": default, "low-lr": low, "low-lr-kd": low}
    settings = {
        "epochs": args.epochs, "recipes": recipes, "seed": seed, "default_lr": default.lr,
        "low_lr": default.lr * LOW_LR_SHARE, "supernet": stored(path), "teacher": saved.teacher,
        "oneshot_run": {"date": source["date"], "results": source["search"]["results"]},
    }  # fmt: skip
    record = new_record("finetune", args, settings)
    runs = []
    for i, candidate in enumerate(candidates, 1):
        genotype = Genotype.parse(candidate["genotype"])
        for recipe in recipes:
            print(f"[{i}/{len(candidates)}] trial {candidate['number']}: {recipe}", flush=True)
            if recipe == "inherited":
                accuracy = judge.accuracy(genotype)
                runs.append({"trial": candidate["number"], "recipe": recipe,
                             "validation_accuracy": accuracy, "train_seconds": 0.0})  # fmt: skip
                continue
            distill = None
            if recipe.endswith("-kd"):
                distill = Distillation(judge.network(teacher).cpu(), resolution=teacher.resolution)
            model = judge.network(genotype).cpu()
            torch.manual_seed(seed)
            result = fit(model, data, Fidelity(epochs=args.epochs), resolution=genotype.resolution,
                         seed=seed, config=configs[recipe], distill=distill)  # fmt: skip
            runs.append({"trial": candidate["number"], "recipe": recipe,
                         "validation_accuracy": result.accuracy, "history": list(result.history),
                         "status": result.status, "train_seconds": result.seconds})  # fmt: skip
    return {
        **record,
        "data": data_info,
        "candidates": [
            {"trial": c["number"], "genotype": c["genotype"], "judged_accuracy": c.get("accuracy")}
            for c in candidates
        ],
        "runs": runs,
        "wall_seconds": time.perf_counter() - started,
    }


def network_of(model: str, resolution: int) -> Any:
    """``--model``: a baseline's name (at ``resolution``) or a genotype (at its own)."""
    from edgenas.arch import BASELINES, Genotype, baseline
    from edgenas.errors import EdgenasError

    try:
        if model.partition(":")[0].strip().lower() in BASELINES:
            return baseline(model, resolution)
        return Genotype.parse(model)
    except EdgenasError as exc:
        raise SystemExit(
            f"--model {model!r}: {exc} (give a baseline, {', '.join(BASELINES)}, or a genotype)"
        ) from None


def probabilities(model: Any, images: Any) -> Any:
    """Class probabilities of ``model`` (in eval mode) on uint8 images, batch by batch."""
    import torch

    model.eval()
    with torch.inference_mode():
        return torch.cat([model(images[i : i + 256].float() / 255).softmax(1)
                          for i in range(0, len(images), 256)])  # fmt: skip


def recipe_run(job: dict[str, Any]) -> dict[str, Any]:
    """One training of part ``recipe``, in a worker process with one thread."""
    import dataclasses

    import torch

    from edgenas.arch import build_model
    from edgenas.data import load_dataset
    from edgenas.train import Fidelity, TrainConfig, evaluate, fit

    torch.set_num_threads(1)
    change = dict(VARIANTS[job["variant"]])
    data = load_dataset(job["data"], cache_dir=job["cache"], seed=job["split_seed"],
                        augment=change.pop("data_augment", None))  # fmt: skip
    epochs_ = job["epochs"] * int(change.pop("epochs_factor", 1))
    config = dataclasses.replace(TrainConfig(threads=1), **change)
    g = network_of(job["model"], job["resolution"])
    torch.manual_seed(job["seed"])
    model = build_model(g, data.channels, data.num_classes, data.mean, data.std)
    result = fit(model, data, Fidelity(epochs=epochs_), resolution=g.resolution,
                 seed=job["seed"], config=config)  # fmt: skip
    train = torch.as_tensor(data.splits.train)
    train_accuracy = evaluate(model, data.images(g.resolution)[train],
                              torch.as_tensor(data.labels)[train])  # fmt: skip
    # Class probabilities on the validation images, for the ensemble of a variant's seeds.
    val_images = data.images(g.resolution)[torch.as_tensor(data.splits.val)]
    rounded = [[round(float(p), 4) for p in row] for row in probabilities(model, val_images)]
    return {"variant": job["variant"], "seed": job["seed"], "epochs": result.epochs,
            "validation_accuracy": result.accuracy, "train_accuracy": train_accuracy,
            "validation_probabilities": rounded, "history": list(result.history),
            "status": result.status, "train_seconds": result.seconds}  # fmt: skip


def elpv_annotations(count: int) -> tuple[list[float], list[str]]:
    """Each ELPV cell's defect probability and type, in the built-in dataset's order."""
    import elpv_dataset

    labels = Path(elpv_dataset.__file__).parent / "data" / "labels.csv"
    rows = [line.split() for line in labels.read_text().splitlines() if line.strip()]
    if len(rows) != count:
        raise SystemExit(f"{labels} has {len(rows)} rows, the dataset {count} images")
    return [float(r[1]) for r in rows], [r[2] for r in rows]


def part_errors(args: argparse.Namespace) -> Record:
    import numpy as np

    from edgenas.arch import Genotype
    from edgenas.oneshot import SubnetJudge, load_supernet

    if args.data != "elpv":
        raise SystemExit("part errors needs ELPV's annotations: --data elpv")
    started = time.perf_counter()
    source = latest(located(args.results), "oneshot", args.data)
    path = located(source["settings"]["out"]) / "supernet.pt"
    supernet, saved = load_supernet(path)
    seed = int(source["settings"]["seed"])
    data, data_info = describe_data(args.data, seed, args.cache)
    probability, kind = (np.asarray(x) for x in elpv_annotations(len(data)))
    defective = data.class_names.index("defective")
    if not np.array_equal(data.labels == defective, probability >= 0.5):
        raise SystemExit("the dataset's labels do not follow labels.csv; its order changed")
    judge = SubnetJudge(supernet, data, seed=seed)
    settings = {"supernet": stored(path), "oneshot_run": {"date": source["date"]}, "seed": seed}
    record = new_record("errors", args, settings)
    models = []
    for role, name in (("largest", saved.teacher), ("smallest", saved.smallest)):
        genotype = Genotype.parse(name)
        network = judge.network(genotype)
        images = data.images(genotype.resolution)
        splits = {}
        for split in ("train", "val"):
            index = np.asarray(getattr(data.splits, split))
            predicted = probabilities(network, images[index]).argmax(1).numpy()
            right = predicted == data.labels[index]
            groups = {
                f"p{level:.2f}": probability[index] == level for level in (0, 1 / 3, 2 / 3, 1)
            }
            groups.update({k: kind[index] == k for k in ("mono", "poly")})
            groups["all"] = np.ones(len(index), dtype=bool)
            splits[split] = {g: {"images": int(m.sum()), "accuracy": float(right[m].mean())}
                             for g, m in groups.items() if m.any()}  # fmt: skip
        models.append({"role": role, "genotype": name, "splits": splits})
    return {**record, "data": data_info, "models": models,
            "wall_seconds": time.perf_counter() - started}  # fmt: skip


def part_recipe(args: argparse.Namespace) -> Record:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    variants = names_of(args.variants, VARIANTS, "--variants")
    try:
        seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"--seeds {args.seeds!r}: give whole numbers, such as 0,1") from None
    if not seeds or args.parallel < 1:
        raise SystemExit("--seeds needs one seed at least, and --parallel 1 or more")
    resolution = network_of(args.model, args.resolution).resolution
    started = time.perf_counter()
    data, data_info = describe_data(args.data, args.split_seed, args.cache)
    val_labels = [int(y) for y in data.labels[data.splits.val]]
    del data
    settings = {"model": args.model, "resolution": resolution, "epochs": args.epochs,
                "variants": {v: VARIANTS[v] for v in variants}, "seeds": seeds,
                "split_seed": args.split_seed, "parallel": args.parallel,
                "threads_per_training": 1}  # fmt: skip
    record = new_record("recipe", args, settings)
    jobs = [{"data": args.data, "cache": args.cache, "split_seed": args.split_seed,
             "model": args.model, "resolution": resolution, "epochs": args.epochs,
             "variant": v, "seed": seed} for seed in seeds for v in variants]  # fmt: skip
    # Each finished training is kept in --partial, so a killed run loses none: run the same
    # command again to go on.
    partial = Path(args.partial)
    key = {**settings, "data": args.data}
    runs = []
    if partial.is_file():
        kept = json.loads(partial.read_text())
        if kept.get("settings") == key:
            runs = kept["runs"]
            print(f"{len(runs)} training(s) kept from {partial}", flush=True)
    done = {(r["variant"], r["seed"]) for r in runs}
    record["settings"]["trainings_resumed"] = len(runs)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(args.parallel, mp_context=context) as pool:
        futures = [pool.submit(recipe_run, job) for job in jobs
                   if (job["variant"], job["seed"]) not in done]  # fmt: skip
        for future in as_completed(futures):
            run = future.result()
            runs.append(run)
            partial.parent.mkdir(parents=True, exist_ok=True)
            partial.write_text(json.dumps({"settings": key, "runs": runs}))
            print(f"{run['variant']} seed {run['seed']}: validation "
                  f"{pct(run['validation_accuracy'])}, training {pct(run['train_accuracy'])} "
                  f"({took(run['train_seconds'])})", flush=True)  # fmt: skip
    order = {(job["variant"], job["seed"]): i for i, job in enumerate(jobs)}
    runs.sort(key=lambda r: order[r["variant"], r["seed"]])
    partial.unlink(missing_ok=True)
    return {**record, "data": data_info, "runs": _without_probabilities(runs),
            "ensembles": ensemble_accuracies(runs, val_labels),
            "wall_seconds": time.perf_counter() - started}  # fmt: skip


def ensemble_accuracies(runs: list[dict[str, Any]], labels: list[int]) -> dict[str, float]:
    """Validation accuracy of each variant's seeds together (their class probabilities
    averaged), for variants with two seeds or more that finished. An ensemble no better than
    its members says their errors are the same ones: a teacher made of them adds nothing."""
    import numpy as np

    out = {}
    for variant in dict.fromkeys(r["variant"] for r in runs):
        members = [np.asarray(r["validation_probabilities"]) for r in runs
                   if r["variant"] == variant and r.get("validation_probabilities")
                   and r["validation_accuracy"] is not None]  # fmt: skip
        if len(members) >= 2:
            mean = np.mean(members, axis=0)
            out[variant] = float(np.mean(mean.argmax(axis=1) == np.asarray(labels)))
    return out


def _without_probabilities(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "validation_probabilities"} for r in runs]


# -- the section --------------------------------------------------------------------------------
def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def with_interval(accuracy: float | None, interval: Sequence[float] | None) -> str:
    if accuracy is None or not interval:
        return pct(accuracy)
    return f"{pct(accuracy)} [{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]"


def took(s: float | None) -> str:
    if s is None:
        return "–"
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


def ms(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def meets(ok: bool | None, limit: str) -> str:
    return "–" if ok is None else f"{'yes' if ok else 'no'} ({limit})"


def epochs(n: int | None) -> str:
    return f"{n} epoch" if n == 1 else f"{n} epochs"


def day(record: Record) -> str:
    return str(record["date"])[:10]


def start_words(start: str | None) -> str:
    words = {"judged": "as judged, no training", "inherited": "fine-tuned from inherited weights",
             "scratch": "from scratch"}  # fmt: skip
    return words.get(start or "", str(start))


def section(results: Path, data: str) -> str:
    runs = {p: [r for r in records(results, p) if r["data"]["name"] == data] for p in PARTS}
    every = [r for p in PARTS for r in runs[p]]
    title = "ELPV" if data == "elpv" else f"{data} (a test of the script, not ELPV)"
    lines = [
        f"## {title}: one-shot search against per-candidate search and baselines",
        "",
        "Written by `benchmarks/oneshot_elpv.py` from every run recorded in "
        f"`{stored(results)}/` (every run is kept, not the best).",
        "",
    ]
    machines = sorted({_machine_words(r["machine"]) for r in every})
    lines.append(f"Machine: {'; '.join(machines) if machines else '(not run yet)'}.")
    dates = [
        f"{p} {', '.join(day(r) for r in runs[p]) if runs[p] else '(not run yet)'}" for p in PARTS
    ]
    lines.append(f"Runs: {'; '.join(dates)}.")
    splits = {}
    for r in every:
        d = r["data"]
        splits[d["seed"]] = d
    for seed, d in sorted(splits.items()):
        classes = ", ".join(f"{n} {c}" for c, n in d["holdout_classes"].items())
        lines.append(
            f"\nSplit seed {seed}: {d['holdout_images']} holdout images ({classes}) that no search "
            f"saw, {d['validation_images']} validation images. Intervals are 95% Wilson."
        )
    if not splits:
        lines.append("Holdout images: (not run yet).")
    lines += [
        "",
        "| method | date | wall-clock | holdout acc [95%] | val acc | latency ms (measured) "
        "| ≤ limit |",
        "| --- | --- | ---: | ---: | ---: | ---: | :---: |",
    ]
    for r in runs["oneshot"]:
        s, b = r["settings"], r["best"]
        name = (
            f"one-shot (budget {s['budget']}, supernet {r['supernet']['epochs']} ep, "
            f"final {s['epochs']} ep)"
        )
        wall = took(r["wall_seconds"]) + (" (resumed)" if s.get("resumed") else "")
        if not r["within_budget"]:
            wall += " (over the budget)"
        lines.append(_row(name, day(r), wall, b, s["max_latency"]))
    if not runs["oneshot"]:
        lines.append("| one-shot | (not run yet) | | | | | |")
    for r in runs["tpe"]:
        s, b = r["settings"], r["best"]
        trained = r["search"]["summary"].get("trained")
        name = f"per-candidate TPE ({s['epochs']} ep at {s['resolution']}, {trained} trained)"
        wall = took(r["wall_seconds"]) + (" (resumed)" if s.get("resumed") else "")
        lines.append(_row(name, day(r), wall, b, s["max_latency"]))
    if not runs["tpe"]:
        lines.append("| per-candidate TPE | (not run yet) | | | | | |")
    for r in runs["baselines"]:
        s = r["settings"]
        for m in r["models"]:
            name = f"{m['name']} ({s['epochs']} ep at {s['resolution']}, seed {s['seed']})"
            lines.append(
                f"| {name} | {day(r)} | {took(m['train_seconds'])} "
                f"| {with_interval(m['holdout_accuracy'], m['holdout_interval'])} "
                f"| {pct(m['validation_accuracy'])} | {ms(m['latency_ms_measured'])} "
                f"| {meets(m['meets_limit'], s['max_latency'])} |"
            )
    if not runs["baselines"]:
        lines.append("| baselines | (not run yet) | | | | | |")
    for seed, d in sorted(splits.items()):
        lines.append(
            f"| always the majority class ({d['majority_class']}, split seed {seed}) | | "
            f"| {with_interval(d['majority_accuracy'], d['majority_interval'])} | | | |"
        )
    lines += ["", "Wall-clock of a baseline is its training time; latency is ONNX Runtime, "
              "1 thread, batch 1, measured on the machine above after training.", ""]  # fmt: skip

    lines += ["### Commands", ""]
    for p in PARTS:
        for r in runs[p]:
            extra = f" (runs `{r['search']['command']}`)" if "search" in r else ""
            lines.append(f"- {p}, {r['date']}: `{r['command']}`{extra}")
    if not every:
        lines.append("- (not run yet)")

    lines += ["", "### One-shot search: supernet, judging, final trainings", ""]
    for r in runs["oneshot"]:
        lines.append(_oneshot_details(r))
    if not runs["oneshot"]:
        lines.append("(not run yet)")

    lines += [
        "",
        "### Ranking: inherited weights against training from scratch",
        "",
        "Subnets the one-shot search judged, taken at evenly spaced quantiles of their latency, "
        "each trained from scratch; Kendall's τ between their validation accuracy with "
        "inherited weights and from scratch.",
        "",
    ]
    if runs["ranking"]:
        lines += [
            "| date | one-shot run | subnets | epochs from scratch | Kendall τ | p | time |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in runs["ranking"]:
            s = r["settings"]
            tau = "–" if r["kendall_tau"] is None else f"{r['kendall_tau']:.2f}"
            p = "–" if r["p_value"] is None else f"{r['p_value']:.3f}"
            lines.append(
                f"| {day(r)} | {s['oneshot_run']['date'][:10]} | {r['n']} of "
                f"{s['judged_subnets']} | {s['rank_epochs']} | {tau} | {p} "
                f"| {took(r['wall_seconds'])} |"
            )
    else:
        lines.append("(not run yet)")

    lines += [
        "",
        "### Specialising: the supernet reused for another latency limit",
        "",
    ]
    if runs["specialise"]:
        lines += [
            "| date | limit | supernet of | until final trainings | wall-clock | subnets judged "
            "| holdout acc [95%] | val acc | latency ms (measured) | ≤ limit |",
            "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | :---: |",
        ]
        for r in runs["specialise"]:
            s, b = r["settings"], r["best"] or {}
            lines.append(
                f"| {day(r)} | {s['max_latency']} | one-shot run {s['oneshot_run']['date'][:10]} "
                f"({s['oneshot_run']['max_latency']}) | {took(r['seconds_to_finetuning'])} "
                f"| {took(r['wall_seconds'])} | {r['subnets_judged']} "
                f"| {with_interval(b.get('holdout_accuracy'), b.get('holdout_interval'))} "
                f"| {pct(b.get('validation_accuracy'))} | {ms(b.get('latency_ms_measured'))} "
                f"| {meets(b.get('meets_limit'), s['max_latency']) if b else 'no best'} |"
            )
    else:
        lines.append("(not run yet)")

    lines += _subsection(
        "### Fine-tuning the inherited weights: which recipe",
        "The final candidates of a one-shot run, each extracted from its supernet and trained "
        "again once per recipe: `inherited` is the candidate as judged (BatchNorm recalibrated, "
        "no training); `default` is the trainer's recipe, which the search uses; `low-lr` the "
        f"same at {LOW_LR_SHARE:g}× its peak learning rate; `low-lr-kd` that, distilled from the "
        "supernet's largest subnet. Validation accuracy: the recipe is chosen on it, so no "
        "holdout figure is taken. The candidates are those whose inherited weights scored best "
        "of every subnet judged on these same validation images, so the `judged` and "
        "`inherited` columns are biased upward (the winner of many draws); the trained columns "
        "are fresh measurements and compare with each other fairly. One training seed and a "
        "few candidates: differences of a point or two are within chance.",
        runs["finetune"],
        _finetune_table,
    )

    lines += _subsection(
        "### The training recipe: what each change buys",
        "One fixed network trained from scratch, once per variant of the trainer's default "
        "recipe and training seed, side by side on one machine (one thread per training). "
        "Training accuracy is measured on the training images without augmentation: below "
        "validation accuracy, the recipe underfits. Validation accuracy only; no holdout "
        "figure is taken. Mean over seeds, with each seed's figure. The ensemble of the seeds "
        "averages their class probabilities (recorded since 2026-12-04): if it is no better "
        "than its members, they make the same errors, and a teacher built from them would "
        "add nothing.",
        runs["recipe"],
        _recipe_table,
    )

    lines += _subsection(
        "### Where the errors are: annotation level and cell type",
        "ELPV's annotators gave each cell a defect probability; a cell is `defective` when it is "
        "at least 0.5, so the 0.33 cells count as functional and the 0.67 ones as defective. "
        "Accuracy of the one-shot run's largest and smallest subnets (inherited weights, "
        "BatchNorm recalibrated) per level and cell type. Errors on the certain levels (0 and "
        "1) are the model's; on the uncertain ones they may be the label's.",
        runs["errors"],
        _errors_table,
    )
    return "\n".join(lines)


def _errors_table(r: Record) -> list[str]:
    groups = ["p0.00", "p0.33", "p0.67", "p1.00", "mono", "poly", "all"]
    lines = [
        f"{day(r)}, one-shot run of {r['settings']['oneshot_run']['date'][:10]}:",
        "",
        f"| subnet | split | {' | '.join(groups)} |",
        f"| --- | --- | {' | '.join('---:' for _ in groups)} |",
    ]
    for m in r["models"]:
        resolution = m["genotype"].split("-")[0]
        for split, words in (("train", "training"), ("val", "validation")):
            cells = m["splits"][split]
            row = [f"{pct(cells[g]['accuracy'])} ({cells[g]['images']})" if g in cells else "–"
                   for g in groups]  # fmt: skip
            lines.append(f"| {m['role']} ({resolution}) | {words} | {' | '.join(row)} |")
    return [*lines, ""]


def _recipe_table(r: Record) -> list[str]:
    s = r["settings"]
    lines = [
        f"{day(r)}: {s['model']} at {s['resolution']} px, {epochs(s['epochs'])} unless the "
        f"variant says otherwise, seeds {', '.join(str(x) for x in s['seeds'])}, split seed "
        f"{s['split_seed']} ({r['data']['train_images']} training, "
        f"{r['data']['validation_images']} validation images), {s['parallel']} at a time; in "
        f"all {took(r['wall_seconds'])}"
        + (
            f" (and {s['trainings_resumed']} trainings kept from an interrupted invocation)"
            if s.get("trainings_resumed")
            else ""
        )
        + ":",
        "",
        "| variant | change | validation (mean) | per seed | ensemble of the seeds "
        "| training acc (mean) | time each |",
        "| --- | --- | ---: | --- | ---: | ---: | ---: |",
    ]
    ensembles = r.get("ensembles", {})  # recorded since 2026-12-04
    for variant, change in s["variants"].items():
        done = [x for x in r["runs"] if x["variant"] == variant]
        if not done:
            continue
        # A training that diverged has no accuracy: it is named, not counted as 0%.
        val = [x["validation_accuracy"] for x in done if x["validation_accuracy"] is not None]
        train = [x["train_accuracy"] for x in done if x["validation_accuracy"] is not None]
        words = ", ".join(f"{k} {v}" for k, v in change.items()) or "none"
        seeds = ", ".join(pct(x["validation_accuracy"]) if x["validation_accuracy"] is not None
                          else f"diverged (seed {x['seed']})" for x in done)  # fmt: skip
        lines.append(
            f"| {variant} | {words} | {pct(sum(val) / len(val)) if val else '–'} "
            f"| {seeds} | {pct(ensembles[variant]) if variant in ensembles else '–'} "
            f"| {pct(sum(train) / len(train)) if train else '–'} "
            f"| {took(sum(x['train_seconds'] for x in done) / len(done))} |"
        )
    return [*lines, ""]


def _subsection(title: str, prose: str, done: list[Record], table: Any) -> list[str]:
    """A subsection: its title, what it measures, and a table per record (``table(record)``)."""
    lines = ["", title, "", prose, ""]
    for r in done:
        lines += table(r)
    return lines if done else [*lines, "(not run yet)"]


def _finetune_table(r: Record) -> list[str]:
    s = r["settings"]
    recipes = list(s["recipes"])
    names = {"default": f"default (lr {s['default_lr']:g})", "low-lr": f"low-lr ({s['low_lr']:g})"}
    head = " | ".join(names.get(x, x) for x in recipes)
    lines = [
        f"{day(r)}, one-shot run of {s['oneshot_run']['date'][:10]}, {epochs(s['epochs'])} per "
        f"training, seed {s['seed']}, {r['data']['validation_images']} validation images, "
        f"{len(r['candidates'])} candidates; in all {took(r['wall_seconds'])}:",
        "",
        f"| candidate | judged in the search | {head} |",
        f"| --- | ---: | {' | '.join('---:' for _ in recipes)} |",
    ]
    cell = {(x["trial"], x["recipe"]): x for x in r["runs"]}
    for c in r["candidates"]:
        row = [pct(cell[c["trial"], x]["validation_accuracy"]) if (c["trial"], x) in cell else "–"
               for x in recipes]  # fmt: skip
        lines.append(f"| trial {c['trial']} | {pct(c['judged_accuracy'])} | {' | '.join(row)} |")
    means = []
    for x in recipes:
        values = [cell[c["trial"], x]["validation_accuracy"] for c in r["candidates"]
                  if (c["trial"], x) in cell]  # fmt: skip
        means.append(pct(sum(values) / len(values)) if values else "–")
    judged = [c["judged_accuracy"] for c in r["candidates"] if c["judged_accuracy"] is not None]
    mean_judged = pct(sum(judged) / len(judged)) if judged else "–"
    lines += [f"| mean of {len(r['candidates'])} | {mean_judged} | {' | '.join(means)} |", ""]
    return lines


def _machine_words(m: dict[str, Any]) -> str:
    return f"{m['cpu']}, {m['cores']} cores, torch {m['torch']}"


def _row(name: str, date: str, wall: str, best: dict[str, Any] | None, limit: str) -> str:
    if not best:
        return f"| {name} | {date} | {wall} | no candidate met the limit | | | |"
    return (
        f"| {name}, best trial {best['trial']} | {date} | {wall} "
        f"| {with_interval(best['holdout_accuracy'], best['holdout_interval'])} "
        f"| {pct(best['validation_accuracy'])} | {ms(best['latency_ms_measured'])} "
        f"| {meets(best['meets_limit'], limit)} |"
    )


def _oneshot_details(r: Record) -> str:
    s, sn, b = r["settings"], r["supernet"], r["best"]
    p = r["profile"]
    profile = (
        f"device profile made in {took(p['seconds'])}"
        if p["made"]
        else f"device profile {p['path']} given"
    )
    finals = "; ".join(
        f"trial {f['trial']} (of trial {f['finetune_of']}, {start_words(f['start'])}) "
        f"{pct(f['validation_accuracy'])}" + ("" if f["state"] == "complete" else f" {f['state']}")
        for f in r["final_trainings"]
    )
    rate = r["subnets_per_hour"]
    text = (
        f"- {r['date']}, limit {s['max_latency']}, budget {s['budget']}: {profile}; supernet "
        f"{epochs(sn['epochs'])} in {took(sn['seconds'])}, its largest subnet (the teacher) "
        f"{pct(sn['teacher_accuracy'])} and its smallest {pct(sn['smallest_accuracy'])} on "
        f"validation after the last epoch; {r['subnets_judged']} subnets judged by inherited "
        f"weights in {took(r['search_seconds'])} ({'–' if rate is None else f'{rate:,}'} per "
        f"hour); final trainings of {epochs(s['epochs'])} (validation): {finals or 'none'}."
    )
    recipe = r.get("finetune_recipe")
    text += (
        f" Fine-tuning: lr {recipe['lr']:g}, distilled from `{recipe['distilled_from']}`."
        if recipe
        else " Fine-tuning used the trainer's default recipe (this run predates the distilled "
        "fine-tuning at a tenth of the learning rate)."
    )
    if b:
        text += (
            f" Best: trial {b['trial']} ({start_words(b['start'])}), "
            f"`{b['genotype']}`; in all {took(r['wall_seconds'])} of the "
            f"{took(s['budget_seconds'])} budget."
        )
    return text


# -- the command line ---------------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data", default="elpv", help="elpv, or synthetic to test the script")
    common.add_argument("--results", default=str(RESULTS), help="where the run records are")
    common.add_argument("--no-write", action="store_true", help="print, leave BENCHMARKS.md")
    common.add_argument("--cache", default="runs/bench-cache", help="decoded images (trainings)")

    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parts = p.add_subparsers(dest="part", required=True)

    o = parts.add_parser("oneshot", parents=[common], help="the one-shot search in a budget")
    o.add_argument("--budget", default="2h", help="wall-clock of everything, profile included")
    o.add_argument("--max-latency", default="1ms")
    o.add_argument("--epochs", type=int, default=30, help="epochs of each final training")
    o.add_argument("--seed", type=int, default=0)
    o.add_argument("--profile", help="a device profile of this machine (default: make one)")
    o.add_argument("--profile-quick", action="store_true", help="a small profile (tests)")
    o.add_argument("--out", default="runs/bench-oneshot")
    o.add_argument("--supernet-epochs", type=int, help="search --supernet-epochs")
    o.add_argument("--subnets", type=int, help="search --subnets")
    o.add_argument("--finetune", type=int, help="search --finetune")
    o.add_argument("--resolution", help="search --resolution, such as 64,96 (default: the space's)")
    o.add_argument("--resume", action="store_true", help="finish the run in --out")

    t = parts.add_parser("tpe", parents=[common], help="per-candidate TPE search")
    t.add_argument("--budget", default="same", help="seconds, a duration, or same (as oneshot)")
    t.add_argument("--max-latency", default="1ms")
    t.add_argument("--tpe-epochs", type=int, default=6)
    t.add_argument("--tpe-resolution", type=int, default=64)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", default="runs/bench-tpe")
    t.add_argument("--resume", action="store_true", help="finish the run in --out")

    b = parts.add_parser("baselines", parents=[common], help="hand-designed baselines")
    b.add_argument("--epochs", type=int, default=30)
    b.add_argument("--resolution", default="same", help="pixels, or same (one-shot best's)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--models", nargs="+", default=list(BASELINE_MODELS))
    b.add_argument("--max-latency", help="the limit they are held to (default: oneshot's)")

    r = parts.add_parser("ranking", parents=[common], help="inherited vs scratch ranking")
    r.add_argument("--subnets", type=int, default=MIN_RANKED)
    r.add_argument("--rank-epochs", type=int, default=10)
    r.add_argument("--seed", type=int, help="training seed (default: the one-shot run's)")
    r.add_argument("--allow-fewer", action="store_true", help=f"fewer than {MIN_RANKED} subnets")

    s = parts.add_parser("specialise", parents=[common], help="reuse the supernet, new limit")
    s.add_argument("--max-latency", default="0.5ms")
    s.add_argument("--epochs", type=int, default=30)
    s.add_argument("--subnets", type=int, default=2000)
    s.add_argument("--finetune", type=int, help="search --finetune")
    s.add_argument("--seed", type=int, help="default: the one-shot run's")
    s.add_argument("--out", help="default: runs/bench-oneshot-<max latency>")
    s.add_argument("--resume", action="store_true", help="finish the run in --out")

    f = parts.add_parser("finetune", parents=[common], help="recipes for inherited weights")
    f.add_argument("--epochs", type=int, default=30, help="epochs of each training")
    f.add_argument("--recipes", default=",".join(RECIPES), help=f"of {', '.join(RECIPES)}")

    c = parts.add_parser("recipe", parents=[common], help="what recipe changes buy")
    c.add_argument("--model", default="mobilenetv3-small",
                   help="a baseline network (such as mobilenetv2:0.5) or a genotype")  # fmt: skip
    c.add_argument(
        "--resolution", type=int, default=128, help="a baseline's (a genotype has its own)"
    )
    c.add_argument("--epochs", type=int, default=30)
    c.add_argument("--variants", default=",".join(VARIANTS), help=f"of {', '.join(VARIANTS)}")
    c.add_argument("--seeds", default="0,1", help="training seeds, such as 0,1")
    c.add_argument("--split-seed", type=int, default=0)
    c.add_argument("--parallel", type=int, default=2, help="trainings at a time")
    c.add_argument(
        "--partial",
        default="runs/bench-recipe.partial.json",
        help="finished trainings of an unfinished run (to go on after a kill)",
    )

    parts.add_parser("errors", parents=[common], help="accuracy per annotation level")
    parts.add_parser("section", parents=[common], help="only write the section again")
    return p


def main() -> None:
    args = parser().parse_args()
    results = located(stored(args.results))
    run = {
        "oneshot": part_oneshot,
        "tpe": part_tpe,
        "baselines": part_baselines,
        "ranking": part_ranking,
        "specialise": part_specialise,
        "finetune": part_finetune,
        "recipe": part_recipe,
        "errors": part_errors,
    }.get(args.part)
    if run is not None:
        path = append(results, args.part, run(args))
        print(f"recorded in {stored(path)}", flush=True)
    text = section(results, args.data)
    print(text)
    if not args.no_write:
        write_section(MARK, text)


if __name__ == "__main__":
    main()
