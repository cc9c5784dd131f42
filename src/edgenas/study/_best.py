"""The end of a search: the best candidate chosen, measured again and exported, and
``results.json`` written (after every trial too, so that it follows the study)."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import optuna
import torch

from edgenas._io import json_default, write_json
from edgenas.arch import Genotype, build_model, export_onnx, onnx_max_abs_diff
from edgenas.study import _records as R
from edgenas.study._config import SearchProgress
from edgenas.study._front import FrontTracker
from edgenas.study._objectives import Objective
from edgenas.study._setup import SearchSetup, profile_identity, same_machine
from edgenas.study._study import RunDir
from edgenas.train import Metric, TrainData, class_report, evaluate_confusion

__all__ = ["ResultsFile", "choose_best"]

log = logging.getLogger("edgenas.search")

# The best-ranked candidates whose latency is measured again before one is chosen.
CANDIDATES_CHECKED = 5


class ResultsFile:
    """The run's ``results.json``: every trial, the front and the best, from the study."""

    def __init__(self, setup: SearchSetup, study: optuna.Study, front: FrontTracker) -> None:
        self._setup = setup
        self._study = study
        self._front = front

    def write(self, best: R.BestCheck | None = None) -> dict[str, Any]:
        """Write the file from the study as it is now, holding the run directory's writer lock,
        so that whichever search process on the study writes last writes the newest state;
        ``best`` is the chosen best's check (default: as the study records it, if chosen yet).
        Returns what was written."""
        study = self._study
        with self._setup.run.writing():
            records = R.records_from_study(study)
            attrs = study.user_attrs
            if best is None:
                best = R.BestCheck.from_json(attrs.get(R.STUDY_BEST))
            measured = {int(k): v for k, v in attrs.get(R.STUDY_FRONT, {}).items()}
            results = R.results_dict(records, self._setup.config.constraints, best,
                                     run_info(self._setup), measured, self._front.summary(),
                                     attrs.get(R.STUDY_ONE_SHOT),
                                     R.scoring_from_spec(self._setup.spec))  # fmt: skip
            write_json(self._setup.run.results, results, indent=2, default=json_default)
        return results


def run_info(setup: SearchSetup) -> dict[str, Any]:
    """The run as results.json describes it."""
    config, spec, profile = setup.config, setup.spec, setup.profile
    return {
        "data": spec["data"],
        "classes": spec["classes"],
        "objective": setup.objective.kind,
        "strategy": config.strategy,
        "space": setup.space.name,
        "epochs": config.epochs,
        "seed": config.seed,
        "latency": {
            **spec["latency"],
            "source": "predicted" if profile else "measured",
            **({"profile": str(config.device), **profile_identity(profile)} if profile else {}),
        },
        "energy": {**config.energy.to_dict(), "estimate": True},
        "fidelity_schedule": spec["fidelity_schedule"],
        "warm_start": spec["warm_start"],
        "search_training": setup.searches_training,
        "augment": list(setup.data.augment),
        "resize": setup.data.resize,
    }


def _ranked_candidates(
    records: list[R.TrialRecord], objective: Objective, run: RunDir
) -> list[R.TrialRecord]:
    """The usable candidates best first (`rank_candidates`) whose trained model is on disk."""
    return [r for r in R.rank_candidates(records, objective) if run.trial_model(r.number).exists()]


def choose_best(
    setup: SearchSetup,
    study: optuna.Study,
    records: list[R.TrialRecord],
    progress: SearchProgress,
) -> tuple[R.TrialRecord | None, R.BestCheck | None]:
    """The best candidate whose latency, measured again, meets the limit, with its final
    checks (holdout accuracy, ONNX export), recorded in the study; (None, None) if none.

    With a device profile, the Pareto front's latency is measured here first.
    """
    limit = setup.config.constraints.max_latency_ms
    tried: list[dict[str, Any]] = []
    predicted = setup.cost.predictor is not None
    if predicted:
        _measure_front(setup, study, records, progress)
    # With a profile of another device, a measurement here says nothing of the device's
    # limit: the prediction decides, and the measurement is recorded beside it.
    measured_decides = not predicted or same_machine(setup.profile)
    ranked = _ranked_candidates(records, setup.objective, setup.run)
    for candidate in ranked[:CANDIDATES_CHECKED]:
        progress.on_phase(f"checking trial {candidate.number}: latency measured again")
        genotype = Genotype.parse(candidate.genotype or "")
        measured = setup.cost.latency_ms(genotype, fresh=True)
        tried.append({"trial": candidate.number, "latency_ms_measured": measured})
        if limit is not None and measured_decides and measured > limit:
            log.warning(
                "trial %d measured %.3f ms again, over the %.3g ms limit: next candidate",
                candidate.number,
                measured,
                limit,
            )
            continue
        check = _check_best(setup, candidate, genotype, measured, progress)
        check = replace(check, candidates_checked=tuple(tried))
        study.set_user_attr(R.STUDY_BEST, check.to_json())
        return candidate, check
    return None, None


def _measure_front(
    setup: SearchSetup, study: optuna.Study, records: list[R.TrialRecord], progress: SearchProgress
) -> None:
    """Latency predicted during the search is measured here for the Pareto front."""
    done = dict(study.user_attrs.get(R.STUDY_FRONT, {}))
    for r in R.pareto_front(records):
        if str(r.number) in done or not r.genotype:
            continue
        progress.on_phase(f"trial {r.number} of the front: latency measured")
        done[str(r.number)] = setup.cost.latency_ms(Genotype.parse(r.genotype), fresh=True)
        study.set_user_attr(R.STUDY_FRONT, done)


def _check_best(
    setup: SearchSetup,
    record: R.TrialRecord,
    genotype: Genotype,
    measured: float,
    progress: SearchProgress,
) -> R.BestCheck:
    """Holdout score (of the metric), the confusion matrix and per-class figures of both
    splits, and the ONNX export of the chosen best, checked against PyTorch."""
    metric = setup.config.parsed_metric()
    progress.on_phase(f"trial {record.number}: holdout {metric.label} and ONNX export")
    data, run = setup.data, setup.run
    model = build_model(genotype, data.channels, data.num_classes, data.mean, data.std)
    model.load_state_dict(
        torch.load(run.trial_model(record.number), map_location="cpu", weights_only=True)
    )
    model.eval()
    images = data.images(genotype.resolution)
    holdout = torch.as_tensor(data.splits.holdout)
    reports = {
        split: _report(model, images, data, index, metric)
        for split, index in (("validation", data.splits.val), ("holdout", data.splits.holdout))
    }
    holdout_report = reports["holdout"]
    holdout_accuracy = None if holdout_report is None else holdout_report["score"]
    onnx_bytes = export_onnx(model, run.best_onnx)
    max_diff = onnx_max_abs_diff(model, onnx_bytes, images[holdout[:16]])
    return R.BestCheck(
        trial=record.number,
        genotype=record.genotype or "",
        accuracy=record.accuracy,
        holdout_accuracy=holdout_accuracy,
        holdout_images=len(holdout),
        validation_images=len(data.splits.val),
        latency_ms=record.costs.latency_ms if record.costs else None,
        latency_ms_measured=measured,
        latency_ms_predicted=(
            record.costs.latency_ms if record.costs and setup.cost.predictor else None
        ),
        onnx=run.best_onnx.name,
        onnx_max_abs_diff=max_diff,
        training=record.training or None,
        metric=metric.name,
        validation_report=reports["validation"],
        holdout_report=holdout_report,
    )


def _report(
    model: torch.nn.Module, images: torch.Tensor, data: TrainData, index: Any, metric: Metric
) -> dict[str, Any] | None:
    """`class_report` of one split, with ``score`` (the metric's); None for an empty split."""
    rows = torch.as_tensor(index, dtype=torch.long)
    if len(rows) == 0:
        return None
    labels = torch.as_tensor(data.labels)[rows]
    confusion = evaluate_confusion(model, images, labels, data.num_classes, rows=rows)
    return {
        "metric": metric.name,
        "score": metric.score(confusion, data.class_names),
        **class_report(confusion, data.class_names),
    }
