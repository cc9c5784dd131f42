"""Judging one candidate: a repeat, infeasible, or trained; and recording the verdict.

The `Evaluator` decides what each trial the search asks for needs (told at once when it repeats
an architecture already judged or breaks the constraints, else trained by an `Executor`),
answers each epoch of a training (early stopping, the fidelity schedule), and records how the
training ended on its trial before telling the study.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from edgenas._io import replacing
from edgenas.arch import Genotype
from edgenas.cost import Costs
from edgenas.study import _records as R
from edgenas.study import _trials as T
from edgenas.study._config import SearchProgress
from edgenas.study._early_stop import EpochCurve
from edgenas.study._executors import Ended, Executor, Job, Reporter
from edgenas.study._fidelity import RungEntry
from edgenas.study._front import FrontTracker
from edgenas.study._reach import analytic_excess
from edgenas.study._setup import SearchSetup
from edgenas.study._training_space import TrainingSpace
from edgenas.train import TrainConfig, TrainResult

__all__ = ["Evaluator"]

log = logging.getLogger("edgenas.search")

# A candidate whose worker process dies this many times is recorded as failed.
MAX_LOST = 3
# A limit (ms) no network meets: asks the cost model for a rough latency (warm-up runs only).
ROUGH_LIMIT_MS = 1e-9


def _identity(genotype: str, params: dict[str, Any]) -> str:
    """What makes two candidates the same: the architecture, and the training when searched."""
    training = TrainingSpace.training(params)
    return f"{genotype} {json.dumps(training, sort_keys=True)}" if training else genotype


def _training_dict(config: TrainConfig) -> dict[str, Any]:
    """The training settings a candidate was trained with, as recorded on its trial."""
    return {
        "optimizer": config.optimizer,
        "lr": config.lr,
        "batch_size": config.batch_size,
        "weight_decay": config.weight_decay,
        "augment_strength": config.augment_strength if config.augment else 0.0,
    }


class Evaluator:
    """Judges the trials of one search and records each verdict in ``study``."""

    def __init__(
        self,
        setup: SearchSetup,
        study: optuna.Study,
        front: FrontTracker,
        progress: SearchProgress,
    ) -> None:
        self.setup = setup
        self.study = study
        self.front = front
        self.progress = progress
        self.objective = setup.objective
        self.config = setup.config
        self.known: dict[str, R.TrialRecord] = {}  # de-duplication: identity → record
        self.curves: list[EpochCurve] = []  # complete trainings, for early stopping
        # What the fidelity schedule knows of earlier trainings.
        self.rung_entries: list[RungEntry] = []
        self.bracket_ordinal = 0
        # In a one-shot search's search phase: candidates are judged by inherited weights.
        self.one_shot = False

    def resume(self, records: list[R.TrialRecord]) -> None:
        """What de-duplication, early stopping, the fidelity schedule and the front's measure
        know of the trainings already in the study."""
        self.known = {
            _identity(r.genotype, r.params): r
            for r in records
            if r.genotype
            and r.state in ("complete", "infeasible", "pruned")
            and (r.trained or r.state == "infeasible")
        }
        self.curves = [
            EpochCurve(r.history, r.costs)
            for r in records
            if r.state == "complete" and r.trained and r.costs and r.history
        ]
        self.front.resume(records)
        self.rung_entries = [
            RungEntry(
                tuple(self.objective.ranking_point(a, r.costs) for a in r.history), r.bracket or 0
            )
            for r in records
            if r.trained and r.state in ("complete", "pruned") and r.costs and r.history
        ]
        self.bracket_ordinal = sum(r.bracket is not None for r in records)

    def failed(self, trial: T.SearchTrial, reason: str) -> None:
        """Record ``trial`` as a failed training, for ``reason``."""
        trial.set_user_attr(R.ATTR_REASON, reason)
        trial.set_user_attr(R.ATTR_STATUS, "failed")
        self.front.note(trial)
        T.tell(self.study, trial, state=TrialState.FAIL)

    def collect(self, ended: Ended) -> str:
        """Record how a job ended in the executor; returns the outcome."""
        job, kind, payload = ended
        trial = job.trial
        if kind == "done":
            result, state = payload
            return self._conclude(job, result, state)
        if kind == "error":
            message, trace = payload
            log.error("trial %d failed in its worker:\n%s", trial.number, trace)
            self.failed(trial, message)
            return "failed"
        # The worker process died: run the candidate again, a bounded number of times.
        lost = int(trial.user_attrs.get(R.ATTR_LOST, 0)) + 1
        status = payload[0]
        if lost < MAX_LOST or isinstance(trial, T.DirectTrial):
            log.warning(
                "trial %d: the process training it died (exit status %s); it runs again",
                trial.number, status,
            )  # fmt: skip
            if not isinstance(trial, T.DirectTrial):
                T.requeue(self.study, trial, lost=lost)
            return "lost"
        self.failed(trial, f"its worker process died {lost} times (exit status {status})")
        return "failed"

    def evaluate(
        self, trial: T.SearchTrial, executor: Executor, genotype: Genotype | None = None
    ) -> str:
        """Decide on one candidate: told at once when a duplicate or infeasible, else handed
        to ``executor`` to train ("submitted")."""
        setup = self.setup
        genotype = genotype or setup.space.decode(trial.params)
        key = str(genotype)
        trial.set_user_attr(R.ATTR_GENOTYPE, key)
        limits = self.config.constraints
        # With the training searched too, one architecture under other settings is new; so is
        # a one-shot candidate trained again at the end.
        identity = _identity(key, trial.params)
        start = trial.user_attrs.get(R.ATTR_START)
        if start:
            identity = f"{identity} start={start}"
        prior = self.known.get(identity)
        if prior is not None and prior.costs is not None:
            return self._repeat(trial, prior, prior.costs)

        analytic = setup.cost.analytic(genotype)
        # A candidate the analytic costs already rule out gets only a rough latency (the
        # warm-up runs): timing it properly would only delay its rejection.
        ruled_out = bool(analytic_excess(limits, analytic))
        latency = setup.cost.latency_ms(
            genotype, limit_ms=ROUGH_LIMIT_MS if ruled_out else limits.max_latency_ms
        )
        costs = replace(analytic, latency_ms=latency)
        violations = limits.violations(costs)
        T.set_costs(trial, costs, violations)
        self.front.saw(costs)
        if any(v > 0 for v in violations.values()):
            trial.set_user_attr(R.ATTR_STATUS, "infeasible")
            trial.set_user_attr(R.ATTR_TRAINED, False)
            T.tell(self.study, trial, self.objective.values(0.0, costs))
            self.known[identity] = R.TrialRecord(
                trial.number, key, "infeasible", False, None, costs, 0, 0.0
            )
            return "infeasible"

        self.progress.on_trial_start(trial.number, key, costs)
        trial.set_user_attr(R.ATTR_TRAINED, not self.one_shot)
        if self.one_shot:
            trial.set_user_attr(R.ATTR_ONE_SHOT, True)
        train_config = setup.train_config
        if setup.searches_training:
            train_config = TrainingSpace.train_config(trial.params, setup.train_config)
            trial.set_user_attr(R.ATTR_TRAINING, _training_dict(train_config))
        bracket = 0
        if setup.schedule.kind == "hyperband":
            bracket = setup.schedule.bracket_for(self.bracket_ordinal)
            self.bracket_ordinal += 1
            trial.set_user_attr(R.ATTR_BRACKET, bracket)
        job = Job(trial, genotype, identity, costs, train_config, bracket,
                  T.trial_seed(self.config.seed, trial.number), start)  # fmt: skip
        T.beat_now(self.study, trial)
        executor.submit(job, self._reporter(job))
        return "submitted"

    def _repeat(self, trial: T.SearchTrial, prior: R.TrialRecord, costs: Costs) -> str:
        """The same architecture again (many assignments decode to one genotype): tell the
        sampler what it already cost and scored, without measuring or training again."""
        T.set_costs(trial, costs, self.config.constraints.violations(costs))
        trial.set_user_attr(R.ATTR_REASON, f"same architecture as trial {prior.number}")
        if prior.state == "infeasible":
            trial.set_user_attr(R.ATTR_STATUS, "infeasible")
            T.tell(self.study, trial, self.objective.values(0.0, costs))
            return "infeasible"
        trial.set_user_attr(R.ATTR_STATUS, "duplicate")
        if prior.state == "pruned" or prior.accuracy is None:
            T.tell(self.study, trial, state=TrialState.PRUNED)
        else:
            trial.set_user_attr(R.ATTR_ACCURACY, prior.accuracy)
            if prior.top1_accuracy is not None:
                trial.set_user_attr(R.ATTR_TOP1, prior.top1_accuracy)
            if prior.val_confusion is not None:
                trial.set_user_attr(R.ATTR_CONFUSION, [list(row) for row in prior.val_confusion])
            T.tell(self.study, trial, self.objective.values(prior.accuracy, costs))
        return "duplicate"

    def _reporter(self, job: Job) -> Reporter:
        """The per-epoch report of one training: records it, and says whether to go on."""
        trial, costs, bracket = job.trial, job.costs, job.bracket
        fidelity, schedule = self.setup.fidelity, self.setup.schedule
        history: list[float] = []

        def report(epoch: int, accuracy: float) -> bool:
            history.append(accuracy)
            trial.set_user_attr(R.ATTR_HISTORY, list(history))
            if job.start:  # a one-shot search's final training: every epoch, no early stop
                self.progress.on_epoch(trial.number, epoch, self.config.epochs, accuracy)
                return True
            if not self.objective.multi:
                trial.report(self.objective.score(accuracy, costs), epoch)
            self.progress.on_epoch(trial.number, epoch, fidelity.epochs, accuracy)
            if epoch >= fidelity.epochs:
                return True
            if schedule.active:
                point = self.objective.ranking_point(accuracy, costs)
                reason = schedule.should_stop(epoch, point, self.rung_entries, bracket)
                if reason:
                    name = "successive halving" if schedule.kind == "sh" else "hyperband"
                    trial.set_user_attr(R.ATTR_REASON, f"pruned by {name} at {reason}")
                    return False
                return True
            reason = self.setup.stopping.should_stop(epoch, accuracy, costs, self.curves)
            if reason:
                trial.set_user_attr(R.ATTR_REASON, f"stopped early: {reason}")
                return False
            return True

        return report

    def _conclude(
        self, job: Job, result: TrainResult, state_dict: Mapping[str, torch.Tensor] | None
    ) -> str:
        """Record a finished training and tell the study; returns the outcome. Without a
        ``state_dict`` (a one-shot judgement: the supernet holds the weights) nothing is saved."""
        trial, costs, key = job.trial, job.costs, str(job.genotype)
        trial.set_user_attr(R.ATTR_EPOCHS, result.epochs)
        trial.set_user_attr(R.ATTR_SECONDS, result.seconds)
        trial.set_user_attr(R.ATTR_HISTORY, list(result.history))
        if result.accuracy is not None:
            trial.set_user_attr(R.ATTR_ACCURACY, result.accuracy)
        if result.top1 is not None:
            trial.set_user_attr(R.ATTR_TOP1, result.top1)
        if result.confusion is not None:
            trial.set_user_attr(R.ATTR_CONFUSION, [list(row) for row in result.confusion])
        if result.status == "diverged":
            trial.set_user_attr(R.ATTR_STATUS, "failed")
            trial.set_user_attr(R.ATTR_REASON, result.reason or "training diverged")
            self.front.note(trial)
            T.tell(self.study, trial, state=TrialState.FAIL)
            return "failed"
        self.rung_entries.append(
            RungEntry(
                tuple(self.objective.ranking_point(a, costs) for a in result.history), job.bracket
            )
        )
        if result.status == "stopped" or result.accuracy is None:
            trial.set_user_attr(R.ATTR_STATUS, "pruned")
            self.front.note(trial)
            T.tell(self.study, trial, state=TrialState.PRUNED)
            self.known[job.identity] = R.TrialRecord(
                trial.number, key, "pruned", True, result.accuracy, costs, result.epochs, 0.0
            )
            return "pruned"
        # Weights first, then the verdict: a crash in between only means training again.
        if state_dict is not None:
            with replacing(self.setup.run.trial_model(trial.number)) as path:
                torch.save(dict(state_dict), path)
        trial.set_user_attr(R.ATTR_STATUS, "complete")
        self.front.note(trial, result.accuracy, costs)
        T.tell(self.study, trial, self.objective.values(result.accuracy, costs))
        self.known[job.identity] = R.TrialRecord(
            trial.number, key, "complete", True, result.accuracy, costs, result.epochs, 0.0,
            history=result.history, top1_accuracy=result.top1, val_confusion=result.confusion,
        )  # fmt: skip
        self.curves.append(EpochCurve(tuple(result.history), costs))
        return "complete"

    # -- the end --------------------------------------------------------------------------
