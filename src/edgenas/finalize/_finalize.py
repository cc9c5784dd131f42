"""``edgenas finalize``: retrain chosen candidates of a run from scratch, for longer, on the
training split; report validation and holdout accuracy with Wilson intervals; export the best.

Everything is written under ``RUN_DIR/final/``; the study, spec and trials of the run are only
read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgenas._io import json_default, write_bytes, write_json, write_text
from edgenas.arch import Genotype, Network, build_model, export_onnx, onnx_max_abs_diff
from edgenas.errors import ConfigError, EdgenasError
from edgenas.finalize._card import write_model_card
from edgenas.finalize._clock import EpochClock
from edgenas.finalize._data import load_run_data
from edgenas.finalize._intervals import wilson_interval
from edgenas.finalize._pipeline import STEPS_DIR, Pipeline, planned_epochs
from edgenas.finalize._result import FinalCandidate, FinalResult
from edgenas.finalize._scores import majority_baselines, run_metric
from edgenas.finalize._steps import CompressOptions, Measurer, Step
from edgenas.study import (
    STUDY_BEST,
    BestCheck,
    Objective,
    RunDir,
    TrainingSpace,
    TrialRecord,
    load_result,
    rank_candidates,
    trial_seed,
)
from edgenas.train import Fidelity, Metric, TrainConfig, class_report, evaluate_confusion, fit

__all__ = ["finalize"]

log = logging.getLogger("edgenas.finalize")

ONNX_TOLERANCE = 1e-3
_ONNX_CHECK_IMAGES = 32


def _choose(
    records: list[TrialRecord],
    best: BestCheck | None,
    objective: Objective,
    pick: str | int,
    top: int,
) -> list[TrialRecord]:
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ConfigError(f"--top must be a whole number >= 1, got {top!r}")
    if isinstance(pick, str) and pick != "best":
        try:
            pick = int(pick)
        except ValueError:
            raise ConfigError(f"--pick takes 'best' or a trial number, got {pick!r}") from None
    if isinstance(pick, int):
        if top != 1:
            raise ConfigError(
                "--pick TRIAL retrains one trial: leave out --top, or use --pick best"
            )
        found = {r.number: r for r in records}
        record = found.get(pick)
        if record is None:
            numbers = sorted(found)
            span = f"trials {numbers[0]} to {numbers[-1]}" if numbers else "no trials"
            raise ConfigError(f"trial {pick} does not exist in this run (it has {span})")
        if record.state != "complete" or not record.trained or not record.genotype:
            raise ConfigError(
                f"trial {pick} is {record.state}{'' if record.trained else ', never trained'}: "
                "pick a completed trial (edgenas show lists them)"
            )
        if not record.feasible:
            log.warning("trial %d does not meet the run's constraints", pick)
        return [record]
    ranked = rank_candidates(records, objective)
    if not ranked:
        raise ConfigError(
            "this run has no completed trial that meets its constraints: nothing to finalize "
            "(run or resume the search first)"
        )
    if best and top == 1:
        chosen = next((r for r in ranked if r.number == best.trial), None)
        if chosen is not None:
            return [chosen]
    if top > len(ranked):
        log.warning("--top %d: the run has only %d completed feasible trial(s)", top, len(ranked))
    return ranked[:top]


def finalize(
    run_dir: Path | str,
    pick: str | int = "best",
    top: int = 1,
    epochs: int | None = None,
    progress: Callable[[str], None] | None = None,
    options: CompressOptions | None = None,
) -> FinalResult:
    """Retrain chosen candidates of a run at full fidelity, compress the best, export it.

    Args:
        run_dir: a directory ``edgenas search`` wrote.
        pick: ``"best"`` (the run's chosen best, else the best completed feasible trial by the
            run's objective) or a trial number.
        top: with ``pick="best"``, retrain the ``top`` best completed feasible trials.
        epochs: training epochs; default three times the search's. All of the training split
            is used (no data fraction), with the trial's own training settings when they were
            searched, else the defaults with the search's ``--batch-size`` (64 for runs whose
            spec.json predates recording it); always with the search's ``--class-weights``.
        progress: called with a line of text at each step.
        options: the compression steps after full training (`CompressOptions`); the default
            runs INT8 post-training quantization only. ``CompressOptions(quantize="none")``
            retrains and exports without compressing.

    Each candidate is rebuilt from its genotype and trained from scratch, seeded as in the
    search. Validation and holdout accuracy get Wilson 95% intervals; a candidate whose two
    accuracies differ by more than chance explains (`holdout_gap`) carries a gap warning. The
    best on validation by the run's metric (spec.json's ``metric``, accuracy for older runs;
    every later choice between models uses it too) goes on: it is measured (accuracy of its ONNX file with ONNX
    Runtime, latency, peak memory, size), then distilled, pruned and quantized as ``options`` say, each step measured the same way
    and the run's constraints checked again on it. ``final/`` receives ``model.onnx`` (the
    last fp32 model), ``model.int8.onnx``, ``model.pt`` (its weights), ``genotype.txt``,
    every step's ONNX file under ``steps/``, ``final.json`` (written after every step, so a
    failing step keeps the ones before it) and ``MODEL_CARD.md``.

    Raises:
        ConfigError: no study, no completed trial, an unknown trial, a bad ``top`` or
            ``epochs``, data that cannot be split as the run did, a pruning target that no
            pruning reaches.
        EdgenasError: the ONNX model's outputs differ from PyTorch's by more than 1e-3.
    """
    say = progress or (lambda text: None)
    options = options if options is not None else CompressOptions()
    run_dir = Path(run_dir)
    study, records, spec = load_result(run_dir)
    if epochs is not None and (
        isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1
    ):
        raise ConfigError(f"--epochs must be a whole number >= 1, got {epochs!r}")
    search_epochs = int(spec.get("epochs") or 1)
    epochs = epochs if epochs is not None else 3 * search_epochs
    best_check = BestCheck.from_json(study.user_attrs.get(STUDY_BEST))
    objective_spec = spec.get("objective") or {}
    from edgenas.cost import Constraints, CostModel

    constraints = Constraints.from_dict(spec.get("constraints") or {})
    objective = Objective(
        objective_spec.get("kind", "accuracy"), objective_spec.get("weights") or {}, constraints
    )
    chosen = _choose(records, best_check, objective, pick, top)
    _check_teacher(options, records)  # before any training, not after it
    profile = _device_profile(options)
    say(f"loading data {spec.get('data')}")
    data = load_run_data(run_dir, spec, best_check)
    metric = run_metric(spec)
    classes = list(data.class_names)
    try:
        metric.check_classes(classes)
    except ConfigError as exc:
        raise ConfigError(f"the run's metric cannot be scored on its data: {exc}") from None
    threads = int((spec.get("latency") or {}).get("threads") or 1)
    cost = CostModel(data.channels, data.num_classes, threads=threads)
    labels = torch.as_tensor(data.labels)
    val = torch.as_tensor(data.splits.val)
    holdout = torch.as_tensor(data.splits.holdout)
    seed = int(spec.get("seed", 0))
    # The search's training settings: its batch size and its class weights.
    base = TrainConfig(
        batch_size=int(spec.get("batch_size", TrainConfig.batch_size)),
        class_weights=str(spec.get("class_weights") or "none"),
    )

    def retrain(record: TrialRecord) -> tuple[FinalCandidate, Network]:
        assert record.genotype is not None
        genotype = Genotype.parse(record.genotype)
        config = TrainingSpace.train_config(record.params, base)
        say(f"trial {record.number}: training {epochs} epoch(s)")
        record_seed = trial_seed(seed, record.number)
        torch.manual_seed(record_seed)
        model = build_model(genotype, data.channels, data.num_classes, data.mean, data.std)
        started = time.perf_counter()
        result = fit(
            model, data, Fidelity(epochs=epochs), resolution=genotype.resolution,
            seed=record_seed, config=config,
            report=clock.reporter(f"trial {record.number}", epochs),
        )  # fmt: skip
        if result.status == "diverged":
            log.warning("trial %d: training diverged (%s)", record.number, result.reason)
        model = model.cpu().eval()
        images = data.images(genotype.resolution)
        say(f"trial {record.number}: validation and holdout {metric.label}, latency")
        val_report = class_report(
            evaluate_confusion(model, images, labels[val], len(classes), rows=val), classes
        )
        hold_report = class_report(
            evaluate_confusion(model, images, labels[holdout], len(classes), rows=holdout),
            classes,
        )
        val_acc, hold_acc = float(val_report["accuracy"]), float(hold_report["accuracy"])
        candidate = FinalCandidate(
            trial=record.number,
            genotype=record.genotype,
            epochs=result.epochs,
            search_accuracy=record.accuracy,
            val_accuracy=val_acc,
            val_interval=wilson_interval(val_acc * len(val), len(val)),
            val_images=len(val),
            holdout_accuracy=hold_acc,
            holdout_interval=wilson_interval(hold_acc * len(holdout), len(holdout)),
            holdout_images=len(holdout),
            train_seconds=time.perf_counter() - started,
            latency_ms=cost.latency_ms(genotype, fresh=True),
            metric=metric.name,
            val_score=_score(metric, val_report),
            holdout_score=_score(metric, hold_report),
            val_report=val_report,
            holdout_report=hold_report,
        )
        return candidate, model

    clock = EpochClock(say, planned=len(chosen) * epochs + planned_epochs(options, epochs))
    results = [retrain(record) for record in chosen]
    # The exported one is chosen on the run's metric on validation: the holdout only reports.
    results.sort(key=lambda item: -item[0].score)
    best, model = results[0]
    final = RunDir(run_dir).final
    final.mkdir(exist_ok=True)
    _clear(final)
    say(f"trial {best.trial}: ONNX export and check")
    onnx_bytes = export_onnx(model)
    images = data.images(Genotype.parse(best.genotype).resolution)
    diff = onnx_max_abs_diff(model, onnx_bytes, images[holdout[:_ONNX_CHECK_IMAGES]])
    best = FinalCandidate(**{**best.__dict__, "onnx_max_abs_diff": diff})
    write_text(final / "genotype.txt", best.genotype + "\n")
    out = FinalResult(
        run_dir, [best, *(c for c, _ in results[1:])], options=options,
        constraints=constraints.to_dict(), metric=metric,
        baselines=majority_baselines(run_dir, spec, reports={
            "validation": best.val_report, "holdout": best.holdout_report,
        }),
    )  # fmt: skip
    write_json(final / "final.json", out.to_json(), indent=2, default=json_default)
    if not diff <= ONNX_TOLERANCE:
        (final / "model.onnx").unlink(missing_ok=True)
        raise EdgenasError(
            f"the exported model differs from PyTorch by {diff:.3g} (more than "
            f"{ONNX_TOLERANCE:g}) on holdout images: it was not written"
        )
    for c in out.candidates:
        if c.gap_warning:
            log.warning("%s", c.gap_warning)

    def teacher() -> tuple[Network, dict[str, Any]]:
        def retrain_teacher(record: TrialRecord) -> tuple[FinalCandidate, Network]:
            clock.add(epochs)
            return retrain(record)

        return _teacher(options.teacher, records, results, retrain_teacher, best.trial, data)

    def save(steps: list[Step]) -> None:
        out.steps[:] = steps
        write_json(final / "final.json", out.to_json(), indent=2, default=json_default)

    genotype = Genotype.parse(best.genotype)
    predicted_latency, predicted_memory = _predictions(profile, genotype, data)
    record = next(r for r in chosen if r.number == best.trial)
    pipeline = Pipeline(
        final=final,
        data=data,
        genotype=genotype,
        config=TrainingSpace.train_config(record.params, base),
        epochs=epochs,
        seed=trial_seed(seed, best.trial),
        options=options,
        measurer=Measurer(
            images=data.images,
            labels=labels,
            val=val,
            holdout=holdout,
            threads=threads,
            constraints=constraints,
            predict_latency=predicted_latency,
            predict_memory=predicted_memory,
            wilson=wilson_interval,
            metric=metric,
            class_names=classes,
        ),
        teacher_source=teacher,
        onnx_diff=onnx_max_abs_diff,
        save=save,
        say=say,
        clock=clock,
    )
    try:
        final_model, int8 = pipeline.run(model, best.train_seconds)
    except ConfigError as exc:
        raise ConfigError(f"{exc}. The steps before it are kept in {final / 'final.json'}") from exc
    from edgenas.compress import save_pruned

    export_onnx(final_model, final / "model.onnx")
    save_pruned(final_model, final / "model.pt")
    if int8 is not None:
        write_bytes(final / "model.int8.onnx", int8)
    save(pipeline.steps)
    write_model_card(final / "MODEL_CARD.md", out, spec, data)
    return out


def _score(metric: Metric, report: dict[str, Any]) -> float:
    """The metric's value from a class report (its confusion matrix)."""
    return metric.score(np.asarray(report["confusion_matrix"]), report["classes"])


def _clear(final: Path) -> None:
    """Remove what an earlier finalize of this run wrote, so no stale file outlives it."""
    import shutil

    for name in ("model.onnx", "model.int8.onnx", "model.pt", "MODEL_CARD.md", "final.json"):
        (final / name).unlink(missing_ok=True)
    shutil.rmtree(final / STEPS_DIR, ignore_errors=True)


def _device_profile(options: CompressOptions) -> dict[str, Any] | None:
    """The device profile ``--device PROFILE`` names, checked on load, or None."""
    if options.device_profile is None:
        return None
    from edgenas.profile import load_profile

    return load_profile(Path(options.device_profile), threads=None)


def _predictions(
    profile: dict[str, Any] | None, genotype: Genotype, data: Any
) -> tuple[float | None, float | None]:
    """The profile's latency and peak-memory predictions for the architecture."""
    if profile is None:
        return None, None
    from edgenas.cost import CostModel, LatencyPredictor

    predictor = LatencyPredictor(profile, data.channels, data.num_classes)
    memory = CostModel(data.channels, data.num_classes, profile=profile).analytic(genotype)
    return predictor.predict(genotype)[0], memory.peak_memory_mb


def _teacher(
    given: str | None,
    records: list[TrialRecord],
    retrained: list[tuple[FinalCandidate, Network]],
    retrain: Callable[[TrialRecord], tuple[FinalCandidate, Network]],
    student: int,
    data: Any,
) -> tuple[Network, dict[str, Any]]:
    """The teacher ``--teacher`` names: a trial number, a ``final/`` folder of a run, or by
    default the run's most accurate trained trial, constraints or not."""
    if given is not None and not str(given).strip().isdigit():
        return _teacher_from_folder(Path(given), data)
    if given is None:
        trained = [
            r for r in records
            if r.state == "complete" and r.trained and r.accuracy is not None and r.genotype
        ]  # fmt: skip
        record = max(trained, key=lambda r: (r.accuracy, -r.number))
    else:
        number = int(given)
        record = next(r for r in records if r.number == number)  # checked by _check_teacher
    if record.number == student:
        log.warning(
            "the teacher is trial %d, the model being finalized: it teaches a fresh copy of "
            "itself (self-distillation)", student,
        )  # fmt: skip
    found = next((pair for pair in retrained if pair[0].trial == record.number), None)
    candidate, done = found if found is not None else retrain(record)
    return done, {
        "source": f"trial {record.number}",
        "genotype": record.genotype,
        "search_accuracy": record.accuracy,
        "val_accuracy": candidate.val_accuracy,
        "holdout_accuracy": candidate.holdout_accuracy,
    }


def _check_teacher(options: CompressOptions, records: list[TrialRecord]) -> None:
    """A --teacher that cannot teach is named before anything is trained."""
    given = options.teacher
    if not options.distill or given is None:
        return
    if str(given).strip().isdigit():
        number = int(given)
        if not any(r.number == number and r.state == "complete" and r.trained for r in records):
            raise ConfigError(
                f"--teacher {given}: the run has no completed, trained trial {number}"
            )
        return
    folder = Path(given)
    if not (folder / "genotype.txt").is_file() or not (folder / "model.pt").is_file():
        raise ConfigError(
            f"--teacher {folder}: a teacher folder holds genotype.txt and model.pt, as "
            "edgenas finalize writes them in a run's final/ folder; or give a trial number"
        )


def _teacher_from_folder(folder: Path, data: Any) -> tuple[Network, dict[str, Any]]:
    from edgenas.compress import load_pruned

    genotype_file, weights = folder / "genotype.txt", folder / "model.pt"
    try:
        genotype = Genotype.parse(genotype_file.read_text().strip())
        model = load_pruned(genotype, data.channels, data.num_classes, weights)
    except (EdgenasError, RuntimeError, ValueError, KeyError) as exc:
        raise ConfigError(
            f"--teacher {folder}: its model.pt does not load for {data.num_classes} classes and "
            f"{data.channels} channel(s) ({exc}); it must come from a run on the same data"
        ) from exc
    return model.eval(), {"source": str(folder), "genotype": str(genotype)}
