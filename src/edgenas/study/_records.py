"""Trial records read from the study, the Pareto front, the ranking of candidates, and
``results.json``.

The study storage is the source of truth: everything here is derived from it, so ``edgenas show``
gives the same answer during a search, after it, and after a crash.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from edgenas.cost import Constraints, Costs
from edgenas.study._frontier import stable_for
from edgenas.study._objectives import Objective
from edgenas.study._pareto import non_dominated
from edgenas.train import Metric

__all__ = [
    "REDRAWN_ATTR",
    "STUDY_BEST",
    "TrialRecord",
    "frontier_dict",
    "pareto_front",
    "rank_candidates",
    "records_from_study",
    "results_dict",
    "scoring_from_spec",
]

# Keys of the user attributes each trial carries (written by the runner).
ATTR_GENOTYPE = "genotype"
ATTR_STATUS = "status"  # "infeasible", "complete", "pruned", "failed", "interrupted", "duplicate"
ATTR_TRAINED = "trained"
ATTR_COSTS = "costs"
ATTR_ACCURACY = "accuracy"  # the validation score of the search's metric (top-1 by default)
ATTR_TOP1 = "top1_accuracy"  # top-1 validation accuracy, whatever the metric
ATTR_CONFUSION = "val_confusion"  # the validation confusion matrix (rows: true class)
ATTR_HISTORY = "history"
ATTR_EPOCHS = "epochs"
ATTR_SECONDS = "train_seconds"
ATTR_REASON = "reason"
ATTR_VIOLATIONS = "violations"
ATTR_BASELINE = "baseline"
ATTR_RETRY_OF = "retry_of"
ATTR_LOST = "workers_lost"  # how many times a worker process died training this candidate
# The reason of a trial whose process died or was stopped: it failed and runs again as a new
# trial carrying ATTR_RETRY_OF.
INTERRUPTED = "interrupted; queued to run again"
ATTR_HYPERVOLUME = "hypervolume"  # the front's measure after this training (see _frontier)
ATTR_TRAINING = "training"  # the training settings used, when they are searched too
ATTR_BRACKET = "fidelity_bracket"  # the Hyperband bracket the candidate was trained in
#: Trial system attribute: candidates the strategy drew, found predicted infeasible and
#: replaced before proposing this trial (rejected before training, never told to the study).
REDRAWN_ATTR = "edgenas:redrawn"
ATTR_WARM_START = "warm_start"  # where a warm-start candidate came from
ATTR_ONE_SHOT = "one_shot"  # judged by the weights it inherits from the supernet, not trained
ATTR_START = "start"  # a one-shot search's final model: "judged", "inherited" or "scratch"
ATTR_FINETUNE_OF = "finetune_of"  # the one-shot trial a final training trains again

STUDY_BEST = "best"  # study user attribute: the chosen best with its final checks
STUDY_FRONT = "front_latency_measured"  # study user attribute: trial → latency measured at the end
STUDY_HV_REFERENCE = "hypervolume_reference_ms"  # study user attribute: fixed once first set
STUDY_ONE_SHOT = "one_shot"  # study user attribute: the supernet and the subnets it judged


@dataclass(frozen=True)
class BestCheck:
    """The best candidate of a search as checked at its end: its holdout score, its latency
    measured again, and its ONNX export compared with PyTorch.

    ``accuracy`` and ``holdout_accuracy`` are scores of the search's ``metric`` (top-1
    accuracy unless ``--metric`` named another); ``validation_report`` and ``holdout_report``
    hold every figure of each split (`edgenas.train.class_report`: the confusion matrix,
    top-1 and balanced accuracy, macro F1, and per class precision, recall, F1 and support).

    The study keeps it as JSON (``STUDY_BEST``) and ``results.json`` as ``best_details``;
    `from_json` reads both, also those of older runs, where figures not yet recorded are None.
    """

    trial: int
    genotype: str
    accuracy: float | None  # validation score (of the metric) in the search
    holdout_accuracy: float | None  # the score of the metric on the holdout split
    holdout_images: int | None = None
    validation_images: int | None = None
    latency_ms: float | None = None  # as the search knew it (measured or predicted)
    latency_ms_measured: float | None = None  # measured again at the end
    latency_ms_predicted: float | None = None  # from the device profile, when one was used
    onnx: str = "best.onnx"  # the exported file, in the run directory
    onnx_max_abs_diff: float | None = None  # ONNX Runtime against PyTorch on holdout images
    training: dict[str, Any] | None = None  # training hyperparameters, when searched
    # the candidates whose latency was measured again, the chosen one last
    candidates_checked: tuple[dict[str, Any], ...] = ()
    metric: str = "accuracy"  # what accuracy and holdout_accuracy score (--metric)
    validation_report: dict[str, Any] | None = None  # class_report of the validation split
    holdout_report: dict[str, Any] | None = None  # and of the holdout split

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "trial": self.trial,
            "genotype": self.genotype,
            "accuracy": self.accuracy,
            "holdout_accuracy": self.holdout_accuracy,
            "holdout_images": self.holdout_images,
            "validation_images": self.validation_images,
            "latency_ms": self.latency_ms,
            "latency_ms_measured": self.latency_ms_measured,
            "latency_ms_predicted": self.latency_ms_predicted,
            "onnx": self.onnx,
            "onnx_max_abs_diff": self.onnx_max_abs_diff,
            "metric": self.metric,
            "validation_report": self.validation_report,
            "holdout_report": self.holdout_report,
        }
        if self.training:
            d["training"] = self.training
        d["candidates_checked"] = [dict(c) for c in self.candidates_checked]
        return d

    @classmethod
    def from_json(cls, d: Any) -> BestCheck | None:
        """The check as stored, or None where there is none (no best chosen yet)."""
        if not isinstance(d, Mapping) or d.get("trial") is None:
            return None

        def number(key: str) -> float | None:
            value = d.get(key)
            return None if value is None else float(value)

        def count(key: str) -> int | None:
            value = d.get(key)
            return None if value is None else int(value)

        return cls(
            trial=int(d["trial"]),
            genotype=str(d.get("genotype") or ""),
            accuracy=number("accuracy"),
            holdout_accuracy=number("holdout_accuracy"),
            holdout_images=count("holdout_images"),
            validation_images=count("validation_images"),
            latency_ms=number("latency_ms"),
            latency_ms_measured=number("latency_ms_measured"),
            latency_ms_predicted=number("latency_ms_predicted"),
            onnx=str(d.get("onnx") or "best.onnx"),
            onnx_max_abs_diff=number("onnx_max_abs_diff"),
            training=dict(d["training"]) if isinstance(d.get("training"), Mapping) else None,
            candidates_checked=tuple(
                dict(c) for c in d.get("candidates_checked") or () if isinstance(c, Mapping)
            ),
            metric=str(d.get("metric") or "accuracy"),
            validation_report=_mapping(d.get("validation_report")),
            holdout_report=_mapping(d.get("holdout_report")),
        )


@dataclass(frozen=True)
class TrialRecord:
    """One candidate as ``results.json`` reports it."""

    number: int
    genotype: str | None
    state: str  # complete, infeasible, pruned, failed, running
    trained: bool
    accuracy: float | None  # the validation score of the search's metric (top-1 by default)
    costs: Costs | None
    epochs: int
    train_seconds: float
    history: tuple[float, ...] = ()
    reason: str | None = None
    violations: dict[str, float] = field(default_factory=dict)
    baseline: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    hypervolume: float | None = None
    training: dict[str, Any] | None = None
    bracket: int | None = None
    warm_start: str | None = None
    redrawn: int = 0  # candidates the strategy replaced as infeasible before proposing this one
    one_shot: bool = False  # judged by inherited weights (its accuracy is the supernet's)
    start: str | None = None  # a final model of a one-shot search: "judged", "inherited", "scratch"
    finetune_of: int | None = None  # and the one-shot trial it trained again
    top1_accuracy: float | None = None  # top-1 validation accuracy, whatever the metric
    # The validation confusion matrix (rows: true class, columns: predicted class).
    val_confusion: tuple[tuple[int, ...], ...] | None = None

    @property
    def feasible(self) -> bool:
        """Whether it meets every constraint (not rejected, no positive violation)."""
        return self.state != "infeasible" and all(v <= 0 for v in self.violations.values())

    @property
    def usable(self) -> bool:
        """Whether the candidate may be ranked, put on the Pareto front and chosen as the best:
        it was trained to the end or judged by inherited weights (state ``complete``, and
        ``trained`` or ``one_shot``, so not stopped early, failed, still running, nor a repeat
        scored from an earlier trial), it meets every constraint (:attr:`feasible`), and it has
        an accuracy, costs and a genotype."""
        return (
            self.state == "complete"
            and (self.trained or self.one_shot)
            and self.feasible
            and self.accuracy is not None
            and self.costs is not None
            and bool(self.genotype)
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "number": self.number,
            "genotype": self.genotype,
            "state": self.state,
            "trained": self.trained,
            "accuracy": self.accuracy,
            "costs": self.costs.to_dict() if self.costs else None,
            "epochs": self.epochs,
            "train_seconds": round(self.train_seconds, 3),
        }
        if self.reason:
            d["reason"] = self.reason
        if self.violations:
            d["violations"] = {k: round(v, 4) for k, v in self.violations.items()}
        if self.baseline:
            d["baseline"] = self.baseline
        if self.warm_start:
            d["warm_start"] = self.warm_start
        if self.training:
            d["training"] = dict(self.training)
        if self.bracket is not None:
            d["fidelity_bracket"] = self.bracket
        if self.one_shot:
            d["one_shot"] = True
        if self.start:
            d["start"] = self.start
            d["finetune_of"] = self.finetune_of
        if self.top1_accuracy is not None:
            d["top1_accuracy"] = self.top1_accuracy
        if self.val_confusion is not None:
            d["confusion_matrix"] = [list(row) for row in self.val_confusion]
        return d


def _record(t: FrozenTrial) -> TrialRecord | None:
    a = t.user_attrs
    if t.state == TrialState.WAITING:
        return None
    status = a.get(ATTR_STATUS)
    if t.state == TrialState.RUNNING:
        state = "running"
    elif t.state == TrialState.PRUNED:
        state = "pruned"
    elif t.state == TrialState.FAIL:
        state = "failed"
    elif status == "infeasible":
        state = "infeasible"
    else:
        state = "complete"
    costs = Costs.from_dict(a[ATTR_COSTS]) if a.get(ATTR_COSTS) else None
    return TrialRecord(
        number=t.number,
        genotype=a.get(ATTR_GENOTYPE),
        state=state,
        trained=bool(a.get(ATTR_TRAINED, False)),
        accuracy=a.get(ATTR_ACCURACY),
        costs=costs,
        epochs=int(a.get(ATTR_EPOCHS, 0)),
        train_seconds=float(a.get(ATTR_SECONDS, 0.0)),
        history=tuple(a.get(ATTR_HISTORY, ())),
        reason=a.get(ATTR_REASON),
        violations=dict(a.get(ATTR_VIOLATIONS, {})),
        baseline=a.get(ATTR_BASELINE),
        params=dict(t.params),
        hypervolume=a.get(ATTR_HYPERVOLUME),
        training=a.get(ATTR_TRAINING),
        bracket=a.get(ATTR_BRACKET),
        warm_start=a.get(ATTR_WARM_START),
        redrawn=int(t.system_attrs.get(REDRAWN_ATTR, 0)),
        one_shot=bool(a.get(ATTR_ONE_SHOT, False)),
        start=a.get(ATTR_START),
        finetune_of=a.get(ATTR_FINETUNE_OF),
        top1_accuracy=_number(a.get(ATTR_TOP1)),
        val_confusion=_matrix(a.get(ATTR_CONFUSION)),
    )


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _matrix(value: Any) -> tuple[tuple[int, ...], ...] | None:
    """A confusion matrix as a trial stored it; None when absent (older trials) or malformed."""
    if not isinstance(value, list) or not all(isinstance(row, list) for row in value):
        return None
    try:
        return tuple(tuple(int(n) for n in row) for row in value)
    except (TypeError, ValueError):
        return None


def _mapping(value: Any) -> dict[str, Any] | None:
    return dict(value) if isinstance(value, Mapping) else None


def records_from_study(study: optuna.Study) -> list[TrialRecord]:
    """Every proposed candidate, in trial order (queued, not yet started trials are left out)."""
    out = []
    for t in study.get_trials(deepcopy=False):
        r = _record(t)
        if r is not None:
            out.append(r)
    return out


def _accuracy_latency(r: TrialRecord) -> tuple[float, float]:
    """A usable record as a point with both objectives maximised (latency negated)."""
    assert r.accuracy is not None and r.costs is not None
    return (r.accuracy, -r.costs.latency_ms)


def pareto_front(records: Sequence[TrialRecord]) -> list[TrialRecord]:
    """The :attr:`~TrialRecord.usable` candidates no other beats on both accuracy and latency,
    sorted by latency; of candidates with equal accuracy and latency, only the earliest."""
    pool = [r for r in records if r.usable]
    front = [pool[i] for i in non_dominated([_accuracy_latency(r) for r in pool])]
    unique: dict[tuple[float, float], TrialRecord] = {}
    for r in sorted(front, key=lambda r: (-_accuracy_latency(r)[1], r.number)):
        unique.setdefault(_accuracy_latency(r), r)
    return list(unique.values())


def rank_candidates(records: Iterable[TrialRecord], objective: Objective) -> list[TrialRecord]:
    """The :attr:`~TrialRecord.usable` candidates, best first: by the objective's score
    (accuracy, or the weighted score), then by lower latency, then in the order given
    (trial order for records read from a study). A Pareto search ranks by accuracy too: the
    best of a front is its most accurate candidate, the fastest among equals."""
    pool = [r for r in records if r.usable]

    def key(r: TrialRecord) -> tuple[float, float]:
        assert r.costs is not None and r.accuracy is not None
        return (-objective.score(r.accuracy, r.costs), r.costs.latency_ms)

    return sorted(pool, key=key)


def results_dict(
    records: Sequence[TrialRecord],
    constraints: Constraints,
    best: BestCheck | None,
    run: dict[str, Any],
    measured: dict[int, float] | None = None,
    frontier: dict[str, Any] | None = None,
    one_shot: dict[str, Any] | None = None,
    scoring: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The content of ``results.json``. ``measured``: latency measured for trials whose latency
    was predicted from a device profile (the Pareto front, at the end of the search).
    ``frontier``: what the runner knows of the front's measure beyond its history (the
    reference latency, the --stop-when-stable patience). ``one_shot``: the supernet and the
    subnets it judged, in a one-shot search. ``scoring``: what the trials' accuracy is
    (`scoring_from_spec`: ``metric``, ``metric_label``, ``class_weights``,
    ``majority_baseline``), put at the top level."""
    front = pareto_front(records)
    measured = measured or {}
    trials = []
    for r in records:
        d = r.to_json()
        if r.number in measured:
            d["latency_ms_predicted"] = r.costs.latency_ms if r.costs else None
            d["latency_ms_measured"] = measured[r.number]
        if best and r.number == best.trial:
            d["holdout_accuracy"] = best.holdout_accuracy
            d["latency_ms_measured"] = best.latency_ms_measured
            if best.latency_ms_predicted is not None:
                d["latency_ms_predicted"] = best.latency_ms_predicted
        trials.append(d)
    # Candidates the strategy found predicted infeasible and replaced before proposing: never
    # trials of the study, counted on the trial proposed instead.
    redrawn = sum(r.redrawn for r in records)
    counts: dict[str, int] = {}
    for r in records:
        counts[r.state] = counts.get(r.state, 0) + 1
    return {
        "version": 1,
        "run": run,
        **dict(scoring or {}),
        "constraints": constraints.to_dict(),
        "summary": {
            "trials": len(records),
            # A one-shot subnet kept as judged is a final model, but was never trained.
            "trained": sum(r.trained and r.start != "judged" for r in records),
            **({"one_shot": sum(r.one_shot for r in records)} if one_shot else {}),
            # Candidates the constraints turned away before any training: those the strategy
            # redrew itself, and proposals told to the study as infeasible.
            "rejected": counts.get("infeasible", 0) + redrawn,
            "redrawn": redrawn,
            # Failed trials whose process was killed or stopped; each runs again.
            "interrupted": sum(r.state == "failed" and r.reason == INTERRUPTED for r in records),
            **counts,
        },
        "hypervolume": frontier_dict(records, frontier),
        "trials": trials,
        "pareto": [r.number for r in front],
        "best": best.trial if best else None,
        "best_holdout_accuracy": best.holdout_accuracy if best else None,
        "best_latency_ms_measured": best.latency_ms_measured if best else None,
        "best_latency_ms_predicted": best.latency_ms_predicted if best else None,
        "best_details": best.to_json() if best else None,
        **({"one_shot": one_shot} if one_shot else {}),
    }


def scoring_from_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """What a run's accuracies mean, from its spec.json, as results.json's top level holds it:
    ``metric`` (as ``--metric`` writes it), ``metric_label`` (in words), ``class_weights``
    and ``majority_baseline`` (per split, ``validation`` and ``holdout``: what always answering
    the most frequent class scores; see `edgenas.train.majority_baseline`). A run from before
    the metric was recorded scored top-1 accuracy with unweighted classes."""
    metric = Metric.parse(str(spec.get("metric") or "accuracy"))
    return {
        "metric": metric.name,
        "metric_label": metric.label,
        "class_weights": str(spec.get("class_weights") or "none"),
        "majority_baseline": _mapping(spec.get("majority_baseline")),
    }


def frontier_dict(
    records: Sequence[TrialRecord], extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The front's measure after each training, and the trainings since it last improved."""
    history = [r.hypervolume for r in records if r.hypervolume is not None]
    return {
        **(extra or {}),
        "history": [
            {"trial": r.number, "value": r.hypervolume}
            for r in records
            if r.hypervolume is not None
        ],
        "stable_for": stable_for(history),
    }
