"""``edgenas search``: search for the most accurate architecture that meets the limits."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from edgenas.cli._console import console, err, fail, setup_logging
from edgenas.cli._options import ConfigOption
from edgenas.errors import EdgenasError

__all__ = ["search_command"]


def search_command(
    data: Annotated[
        str | None,
        typer.Argument(
            help="A folder of class subfolders, a CSV manifest (path,label[,group]), or a built-in: elpv, elpv4, synthetic. Optional with --config when the file gives data."
        ),
    ] = None,
    config_file: ConfigOption = None,
    max_latency: Annotated[
        str | None,
        typer.Option(
            help="Latency limit, such as 5ms (measured with ONNX Runtime on this machine, batch 1)."
        ),
    ] = None,
    goal: Annotated[
        str | None,
        typer.Option(
            help='What you need in words, such as "maximize accuracy with at most 30 ms latency '
            'and 200 MB memory" or "accuracy vs latency under 20 ms"; echoed back as '
            "understood, and anything not understood is named. --max-* and --objective given "
            "as options win over it.",
        ),
    ] = None,
    max_memory: Annotated[
        str | None,
        typer.Option(
            help="Peak memory limit, such as 50MB (an estimate of what ONNX Runtime holds: weights and activations, calibrated against measured sessions)."
        ),
    ] = None,
    max_size: Annotated[
        str | None, typer.Option(help="Model size limit (fp32 weights), such as 2MB.")
    ] = None,
    max_macs: Annotated[
        str | None, typer.Option(help="Multiply-accumulate limit, such as 100M.")
    ] = None,
    max_energy: Annotated[
        str | None,
        typer.Option(
            help="Limit on the estimated energy per inference, such as 5mJ or 800uJ (from MACs and bytes moved; see --energy-coefficients)."
        ),
    ] = None,
    energy_coefficients: Annotated[
        str | None,
        typer.Option(
            help="Coefficients of the energy estimate in picojoules, such as pj_per_mac=150,pj_per_byte=50 (the default: a rough Cortex-A72-class CPU such as a Raspberry Pi 4's)."
        ),
    ] = None,
    objective: Annotated[
        str,
        typer.Option(
            help="accuracy (max accuracy within the limits), pareto (accuracy vs latency), or weighted (see --weights)."
        ),
    ] = "accuracy",
    weights: Annotated[
        str | None,
        typer.Option(
            help="Weights of the weighted objective, such as accuracy=0.6,latency=0.3,size=0.1 or accuracy=0.7,energy=0.3 (latency, size and estimated energy are normalised by their limits)."
        ),
    ] = None,
    metric: Annotated[
        str,
        typer.Option(
            help="The validation score the search ranks, stops and chooses by: accuracy "
            "(top-1), balanced-accuracy (the mean of the per-class recalls), macro-f1 (the "
            "mean of the per-class F1 scores) or recall:CLASS (the share of CLASS's images "
            "found, such as recall:defective). The trials' accuracy, the objective's and "
            "the best's holdout accuracy are this score; results.json also records top-1 "
            "accuracy, the confusion matrices and the majority-class baseline.",
        ),
    ] = "accuracy",
    class_weights: Annotated[
        str,
        typer.Option(
            help="Weights of the classes in the training loss: none, or balanced (each class "
            "weighs images / (classes × its images), so that a rare class counts as much as "
            "a common one)."
        ),
    ] = "none",
    strategy: Annotated[
        str,
        typer.Option(
            help="Search strategy: guided (a surrogate of accuracy ranks many candidates; fewest trainings), tpe, random, grid (small spaces), nsga2, gp, evolution or reinforce. Every one skips candidates the cost model rejects."
        ),
    ] = "tpe",
    trials: Annotated[
        int,
        typer.Option(
            help="Candidates to train. Candidates rejected by the constraints are never trained and do not count."
        ),
    ] = 20,
    time_budget: Annotated[
        str | None,
        typer.Option(help="Stop starting new candidates after this long, such as 30m or 2h."),
    ] = None,
    epochs: Annotated[int, typer.Option(help="Training epochs per candidate.")] = 3,
    data_fraction: Annotated[
        float, typer.Option(help="Share of the training split each candidate trains on.")
    ] = 1.0,
    resolution: Annotated[
        str | None,
        typer.Option(
            help="Input resolutions the search may choose, such as 64 or 64,96 (default: the space's, 64–224)."
        ),
    ] = None,
    augment: Annotated[
        str | None,
        typer.Option(
            help="Augmentations that keep an image's class, comma-separated: flip-h (mirror "
            "left-right), flip-v (upside down), rot90 (quarter turns), shift, brightness, "
            "contrast; or none. Default: all six for elpv, elpv4 and synthetic; "
            "shift,brightness,contrast for a folder or CSV manifest."
        ),
    ] = None,
    resize: Annotated[
        str,
        typer.Option(
            help="How an image of another aspect ratio becomes the square input: pad (the "
            "long side to the resolution, centred on black borders; nothing cut or "
            "stretched), crop (the short side to the resolution, centre-cropped) or squash "
            "(stretched). Square images come out the same under all three."
        ),
    ] = "pad",
    space: Annotated[
        str,
        typer.Option(
            help="Search space: edge, a TOML file, or module:attribute naming a SearchSpace."
        ),
    ] = "edge",
    blocks: Annotated[
        str | None,
        typer.Option(
            help="Narrow the space to these block types, such as ir,ds (of conv, res, bneck, ds, ir)."
        ),
    ] = None,
    kernels: Annotated[
        str | None, typer.Option(help="Narrow the kernels, such as 3,5,5x3.")
    ] = None,
    max_depth: Annotated[
        int | None, typer.Option(help="At most this many blocks per stage.")
    ] = None,
    baseline: Annotated[
        list[str] | None,
        typer.Option(
            help="Evaluate a baseline first (repeatable): mobilenetv2, mobilenetv3-small, resnet, vgg, with an optional width such as mobilenetv2:0.5."
        ),
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="CPU threads for training (default: all cores).")
    ] = None,
    latency_threads: Annotated[
        int, typer.Option(help="ONNX Runtime threads when measuring latency (match the device's).")
    ] = 1,
    batch_size: Annotated[int, typer.Option(help="Training batch size.")] = 64,
    device: Annotated[
        Path | None,
        typer.Option(
            help="Device profile (from edgenas-device or edgenas profile local): predict latency "
            "from it instead of measuring each candidate here; the final Pareto front and the best "
            "are measured at the end."
        ),
    ] = None,
    train_device: Annotated[
        str,
        typer.Option(
            help="Training device: auto (CUDA when present), cpu or cuda. CUDA trains in mixed precision."
        ),
    ] = "auto",
    no_early_stop: Annotated[
        bool, typer.Option("--no-early-stop", help="Train every candidate for all epochs.")
    ] = False,
    fidelity_schedule: Annotated[
        str,
        typer.Option(
            help="none (default: stop a candidate clearly behind finished ones), sh "
            "(asynchronous successive halving: at rungs of 1, 3, 9… epochs below --epochs a "
            "candidate goes on only while in the top third of those that reached the rung; "
            "Pareto searches rank by non-dominated sorting on accuracy and latency, then "
            "crowding), or hyperband (successive-halving brackets whose first rungs are 1, 3, "
            "9… epochs, given to candidates in turn). Options as in sh:eta=2,min_epochs=1. "
            "Stopped candidates are recorded as pruned with the rung."
        ),
    ] = "none",
    workers: Annotated[
        int,
        typer.Option(
            help="Trainings at once, each in its own process; the cores are shared out among "
            "them (--threads sets each one's threads). The search process stays the only "
            "writer of the study; a worker that dies is replaced and its candidate runs again.",
        ),
    ] = 1,
    executor: Annotated[
        str,
        typer.Option(
            help="Where trainings run: local (this machine) or ray (a Ray cluster; extra "
            "edgenas\\[ray]; --workers sets how many at once, --threads the CPUs each reserves).",
        ),
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(
            help="With --executor ray: 'auto' (the cluster `ray start --head` made on this "
            "machine) or HOST:PORT; left out, a Ray instance is started for this search.",
        ),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            help="Keep the study in this database (any SQLAlchemy URL, such as "
            "postgresql+psycopg://user@host:5432/edgenas; extra edgenas\\[postgres]) instead of "
            "RUN/study.db, so several searches or a dashboard can share it. The study is named "
            "after the run directory; show and finalize find it through RUN/spec.json. Put a "
            "password in PGPASSWORD or ~/.pgpass, not in the URL.",
        ),
    ] = None,
    warm_start: Annotated[
        str | None,
        typer.Option(
            help="Enqueue first: 'baselines' (the registered baselines the space holds) or an "
            "earlier run directory (its Pareto front, such as one searched on other data or for "
            "another device). Candidates the space cannot hold are named and left out; a "
            "resumed run does not enqueue them again."
        ),
    ] = None,
    stop_when_stable: Annotated[
        int | None,
        typer.Option(
            help="End the search once the front has not improved for N trainings: its "
            "hypervolume (accuracy × latency below --max-latency, else 1.1 × the slowest "
            "candidate when the first front appears) for --objective pareto, the best score "
            "otherwise."
        ),
    ] = None,
    search_training: Annotated[
        bool,
        typer.Option(
            "--search-training",
            help="Search the training too: learning rate, batch size (instead of "
            "--batch-size), optimiser (AdamW or SGD), weight decay and augmentation strength "
            "are chosen per candidate with the architecture (labels train.*).",
        ),
    ] = False,
    one_shot: Annotated[
        bool,
        typer.Option(
            "--one-shot",
            help="Train one weight-sharing supernet over the space (RUN/supernet.pt, "
            "checkpointed every epoch), judge --subnets subnets by the weights they inherit "
            "instead of training each, then make three models of each of the best --finetune: "
            "as judged (no training), fine-tuned from its inherited weights (a tenth of the "
            "learning rate, distilled from the supernet's largest subnet) and trained from "
            "scratch (--epochs each), and keep the best on validation. "
            "Needs a staged space (edge). A --time-budget is shared out: the supernet up to "
            "50%, the search 15% more, the final trainings the rest.",
        ),
    ] = False,
    supernet: Annotated[
        Path | None,
        typer.Option(
            help="With --one-shot: the supernet.pt of an earlier one-shot search to reuse "
            "instead of training one (for another device profile or limit, say); the search "
            "space must lie within the supernet's.",
        ),
    ] = None,
    supernet_epochs: Annotated[
        int,
        typer.Option(
            help="With --one-shot: epochs of the supernet's training (fewer if the "
            "time budget cannot hold them)."
        ),
    ] = 60,
    subnets: Annotated[
        int, typer.Option(help="With --one-shot: subnets judged by inherited weights.")
    ] = 2000,
    finetune: Annotated[
        int,
        typer.Option(
            help="With --one-shot: the best subnets made into models at the end, each as "
            "judged, fine-tuned from its inherited weights and trained from scratch."
        ),
    ] = 3,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Run directory (default runs/<data name>). Running the same command again resumes it."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the split, the strategy and training.")] = 0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print results.json to standard output at the end.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more.")] = False,
) -> None:
    """Search for the most accurate architecture that meets the limits, and train it.

    Writes RUN/study.db (the record of every trial), RUN/results.json and RUN/best.onnx.
    Interrupt it at any time: running the same command again resumes.
    """
    if data is None:
        fail('give the data: edgenas search DATA, or data = "..." in a --config file')
    setup_logging(verbose)
    from edgenas.cli._live import LiveView
    from edgenas.study import config_from_options, run_search

    view = LiveView(err)
    try:
        if goal is not None:
            from edgenas.cli._goal import parse_goal

            understood = parse_goal(goal)
            err.print(f"goal understood: {understood.describe()}", highlight=False)
            limits = understood.limits
            # Options given explicitly win over the goal.
            max_latency = max_latency or limits.get("max_latency")
            max_memory = max_memory or limits.get("max_memory")
            max_size = max_size or limits.get("max_size")
            max_macs = max_macs or limits.get("max_macs")
            max_energy = max_energy or limits.get("max_energy")
            if objective == "accuracy" and understood.objective is not None:
                objective = understood.objective
        config = config_from_options(
            data, out=out, space=space, blocks=blocks, kernels=kernels, max_depth=max_depth,
            resolutions=resolution, max_latency=max_latency, max_memory=max_memory,
            max_size=max_size, max_macs=max_macs, max_energy=max_energy,
            energy=energy_coefficients, weights=weights, time_budget=time_budget,
            objective=objective, metric=metric, class_weights=class_weights,
            strategy=strategy, trials=trials, epochs=epochs,
            data_fraction=data_fraction, seed=seed, threads=threads,
            latency_threads=latency_threads, batch_size=batch_size, device=device,
            train_device=train_device, baselines=tuple(baseline or ()),
            early_stopping=not no_early_stop, fidelity_schedule=fidelity_schedule,
            warm_start=warm_start, stop_when_stable=stop_when_stable,
            search_training=search_training, storage=storage, workers=workers,
            augment=augment, resize=resize,
            executor=executor, address=address, one_shot=one_shot, supernet=supernet,
            supernet_epochs=supernet_epochs, subnets=subnets, finetune=finetune,
        )  # fmt: skip
        # SIGTERM (a scheduler stopping the job) ends the search like Ctrl-C: nothing recorded
        # is lost and the interrupted candidate is queued for the next run.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        result = run_search(config, view)
    except EdgenasError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        err.print(
            "[yellow]interrupted:[/] every finished trial is saved; run the same command again "
            "to resume."
        )
        raise typer.Exit(130) from None
    finally:
        view.close()  # leave the terminal clean, whatever happened
    from edgenas.cli._live import front_table, print_best, summary_table
    from edgenas.train import Metric

    err.print(summary_table(result.trials))
    redrawn = result.results.get("summary", {}).get("redrawn", 0)
    if redrawn:
        err.print(
            f"the strategy also redrew {redrawn} candidate(s) the cost model predicted "
            "infeasible, before proposing them (never trained)"
        )
    err.print(f"stopped because {result.stopped_because}")
    out_console = err if as_json else console
    score = Metric.parse(result.results.get("metric")).short
    out_console.print(front_table(result.trials, predicted=device is not None, score=score))
    print_best(out_console, result.best_check, result.run_dir)
    out_console.print(f"results: {result.run_dir / 'results.json'}", soft_wrap=True)
    if as_json:
        sys.stdout.write(json.dumps(result.results, indent=2) + "\n")
