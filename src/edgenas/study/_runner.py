"""The search loop: ask → decode → estimate → (train) → tell, with budgets and resumption.

The runner is the single writer of the study. Everything it learns goes into the study (trial
user attributes) before anything else is written, so a crash at any moment loses at most the
candidate being trained, which the next run trains again.

The parts it ties together: `prepare_search` (what the config names, read and checked), the
study and its trials (`_study`, `_trials`), the `Evaluator` that judges each candidate, an
`Executor` that trains, the `FrontTracker`, and `choose_best` with `ResultsFile` at the end.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from optuna.trial import TrialState

from edgenas.arch import Genotype
from edgenas.errors import EdgenasError
from edgenas.study import _records as R
from edgenas.study import _trials as T
from edgenas.study._best import ResultsFile, choose_best
from edgenas.study._config import SearchConfig, SearchProgress, SearchResult, SilentProgress
from edgenas.study._driver import Driver
from edgenas.study._evaluate import Evaluator
from edgenas.study._executors import Executor, make_executor
from edgenas.study._front import FrontTracker
from edgenas.study._oneshot import (
    SEARCH_SHARE,
    STARTS,
    SUPERNET_SHARE,
    FinishExecutor,
    JudgeExecutor,
    OneShot,
    finish_candidates,
    queue_finish,
)
from edgenas.study._reach import RejectionStreak, analytic_excess
from edgenas.study._setup import prepare_search
from edgenas.study._strategies import Check, make_sampler
from edgenas.study._study import check_study_matches, open_study
from edgenas.study._warm import queue_baselines, queue_warm_start

__all__ = ["run_search"]

log = logging.getLogger("edgenas.search")

# Trainings in a row that fail before the search stops.
MAX_FAILURES = 3
# Seconds between writes of results.json while a one-shot search judges subnets.
RESULTS_EVERY_S = 5.0


def _spent(records: list[R.TrialRecord]) -> int:
    """Trainings the budget counts: every training that ended (failures included), and those
    under way in other search processes on the study, but not an interrupted one, which is
    queued to run again and counts when it does."""
    return sum(
        r.state == "running"
        or (r.trained and not (r.state == "failed" and r.reason == R.INTERRUPTED))
        for r in records
    )


@dataclass
class _Streaks:
    """Outcomes in a row that end a search: failed trainings, repeated architectures and
    candidates rejected by the constraints."""

    failed: int = 0
    repeated: int = 0
    rejected: int = 0

    def count(self, trial: T.SearchTrial, outcome: str) -> None:
        """Count ``trial``'s outcome; raises EdgenasError when too many trainings failed."""
        if outcome == "failed":
            self.failed += 1
            if self.failed >= MAX_FAILURES:
                raise EdgenasError(
                    f"{MAX_FAILURES} trainings in a row failed, the last one trial "
                    f"{trial.number} (see the log above and results.json): the search stops"
                )
        elif outcome != "lost":
            self.failed = 0
        self.repeated = self.repeated + 1 if outcome == "duplicate" else 0
        if outcome == "infeasible":
            self.rejected += 1
        elif outcome != "duplicate":
            self.rejected = 0


class _Search:
    def __init__(self, config: SearchConfig, progress: SearchProgress) -> None:
        self.config = config
        self.progress = progress
        self.driver = Driver.this()
        self.setup = setup = prepare_search(config, progress)
        self.objective = setup.objective
        self.study = open_study(setup.run.root, self.objective.directions, config.storage)
        check_study_matches(setup.run, self.study)
        self.front = FrontTracker(
            self.study, self.objective, config.constraints.max_latency_ms,
            config.stop_when_stable, config.parsed_metric().label,
        )  # fmt: skip
        self.results = ResultsFile(setup, self.study, self.front)
        self._written = -math.inf  # when results.json was last written (monotonic seconds)
        self.judge = Evaluator(setup, self.study, self.front, progress)
        self.streak = RejectionStreak(config.constraints)
        previous = len(self.study.get_trials(deepcopy=False))
        # A sampler restarted with the seed it had would propose the same first candidates
        # again; offsetting by the trials already told keeps a resumed search moving forward.
        self.study.sampler = make_sampler(
            config.strategy,
            setup.space,
            config.seed + 7919 * previous,
            self.objective.multi,
            check=self._check,
            # Checks predict (a profile, or no latency needed) unless latency is measured here.
            cheap_check=setup.cost.predictor is not None
            or (config.constraints.max_latency_ms is None and not self.objective.uses_latency),
        )

    def _check(self, params: Mapping[str, Any], *, streak: bool = True) -> Check:
        """What a strategy may know of an assignment before training: whether its predicted
        (or already measured) costs meet the constraints, and its latency. With ``streak``,
        rejections in a row are counted, and explained when they go on."""
        limits, cost = self.config.constraints, self.setup.cost
        genotype = self.setup.space.decode(params)
        analytic = cost.analytic(genotype)  # microseconds; latency may take a measurement
        costs = replace(analytic, latency_ms=0.0)
        feasible, latency = not analytic_excess(limits, costs), math.nan
        if feasible and (limits.max_latency_ms is not None or self.objective.uses_latency):
            latency = cost.latency_ms(genotype, limit_ms=limits.max_latency_ms)
            costs = replace(costs, latency_ms=latency)
            feasible = limits.max_latency_ms is None or latency <= limits.max_latency_ms
        if streak and feasible:
            self.streak.feasible()
        elif streak:
            self.streak.rejected(costs)
        return Check(feasible, latency)

    def run(self) -> SearchResult:
        config, setup = self.config, self.setup
        recovered = T.recover_interrupted(self.study)
        if recovered:
            log.warning("%d interrupted trial(s) will run again", recovered)
        outside_baselines = queue_baselines(
            self.study, setup.space, setup.baselines, setup.baseline_resolution
        )
        warm = queue_warm_start(self.study, setup.warm)
        if warm:
            log.info("%d warm-start candidate(s) from %s go first", warm, config.warm_start)
        records = R.records_from_study(self.study)
        self.judge.resume(records)
        started = time.monotonic()
        deadline = started + config.time_budget_s if config.time_budget_s else None
        self.progress.on_start(self._start_info(_spent(records), deadline))
        if config.one_shot:
            return self._run_one_shot(records, outside_baselines, started, deadline)
        max_rejected = config.max_rejected or 50 * config.trials + 200

        def stop(streaks: _Streaks, records: list[R.TrialRecord]) -> str | None:
            trained = _spent(records)
            return self._stop_reason(trained, config.trials, deadline, streaks, max_rejected)

        executor = make_executor(setup, self.progress)
        stopped_because = self._loop(executor, stop, outside_baselines)
        return self._finish(stopped_because or "the trial budget is spent")

    def _loop(
        self,
        executor: Executor,
        stop: Callable[[_Streaks, list[R.TrialRecord]], str | None],
        outside_baselines: list[tuple[str, Genotype]],
    ) -> str | None:
        """Propose, judge and record candidates through ``executor`` until ``stop`` (given
        the streaks and the records as of the last candidate that ended) gives a reason and
        nothing is in flight; returns the reason."""
        streaks = _Streaks()
        reason: str | None = None
        records = R.records_from_study(self.study)
        try:
            with T.keep_alive(self.study, lambda: [job.trial for job in executor.in_flight()]):
                while True:
                    reason = stop(streaks, records)
                    finished: list[tuple[T.SearchTrial, str]] = []
                    if reason is None and executor.free:
                        trial, genotype = self._next_trial(outside_baselines)
                        judge = self.judge.evaluate
                        outcome = self._guarded(trial, judge, trial, executor, genotype)
                        if outcome == "submitted":
                            continue
                        finished.append((trial, outcome))
                    elif executor.in_flight():
                        for ended in executor.wait():
                            trial = ended[0].trial
                            outcome = self._guarded(trial, self.judge.collect, ended)
                            finished.append((trial, outcome))
                    else:
                        break
                    for trial, outcome in finished:
                        streaks.count(trial, outcome)
                        records = self._recorded(trial)
        except KeyboardInterrupt:
            for job in executor.in_flight():
                self._interrupt(job.trial)
            raise
        finally:
            executor.close()
        return reason

    def _run_one_shot(
        self,
        records: list[R.TrialRecord],
        outside_baselines: list[tuple[str, Genotype]],
        started: float,
        deadline: float | None,
    ) -> SearchResult:
        """The supernet, the search of subnets judged by inherited weights, the finish."""
        config = self.config
        budget = config.time_budget_s

        def at(share: float) -> float | None:
            return None if budget is None else started + share * budget

        def feasible(genotype: Genotype) -> bool:
            # The supernet's pool of subnets is drawn at random: rejections are expected.
            return self._check(self.setup.space.encode(genotype), streak=False).feasible

        one_shot = OneShot(self.setup, self.study, self.progress, feasible, at(SUPERNET_SHARE))
        search_deadline = at(SUPERNET_SHARE + SEARCH_SHARE)
        max_rejected = config.max_rejected or 50 * config.subnets + 200
        if not any(r.start for r in records):  # the search is over once the finish began
            self.judge.one_shot = True
            judge = JudgeExecutor(one_shot)

            def stop_search(streaks: _Streaks, records: list[R.TrialRecord]) -> str | None:
                judged = sum(r.one_shot for r in records)
                # However late the supernet's training ended, the finish gets candidates:
                # judging one takes seconds.
                usable = sum(r.one_shot and r.usable for r in records)
                ends = search_deadline if usable >= config.finetune else None
                return self._stop_reason(
                    judged, config.subnets, ends, streaks, max_rejected, "subnets"
                )

            self.progress.on_phase(f"one-shot: judging up to {config.subnets} subnets")
            began = time.monotonic()
            try:
                self._loop(judge, stop_search, outside_baselines)
            finally:
                one_shot.judged(judge.count, time.monotonic() - began)
            self.judge.one_shot = False
        records = R.records_from_study(self.study)
        chosen = finish_candidates(records, self.setup)
        one_shot.finishing([r.number for r in chosen])
        queued = queue_finish(self.study, records, chosen)
        if queued:
            self.progress.on_phase(
                f"one-shot: making models of the best {len(chosen)} subnet(s): as judged, "
                f"fine-tuned from inherited weights and from scratch ({config.epochs} "
                f"epoch(s) each)"
            )

        def stop_finish(streaks: _Streaks, records: list[R.TrialRecord]) -> str | None:
            waiting = self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
            if not waiting:
                return "the final trainings are done"
            if deadline is not None:
                # Another final training starts only if one takes no longer than the time
                # left, judging by the slowest of those done.
                took = [r.train_seconds for r in records if r.start]
                if time.monotonic() + max(took, default=0.0) > deadline:
                    return "the time budget would not hold another final training"
            return None

        reason = self._loop(FinishExecutor(one_shot), stop_finish, [])
        return self._finish(reason or "the final trainings are done")

    def _start_info(self, trained: int, deadline: float | None) -> dict[str, Any]:
        """What `SearchProgress.on_start` is told of the search about to run."""
        config, setup, profile = self.config, self.setup, self.setup.profile
        return {
            "run_dir": str(setup.run.root),
            "data": setup.data.name,
            "images": len(setup.data),
            "classes": setup.data.class_names,
            # trainings: in a one-shot search, the final models (one per start)
            "trials": len(STARTS) * config.finetune if config.one_shot else config.trials,
            "trained_before": trained,
            "deadline": deadline,
            "constraints": config.constraints.describe(),
            "objective": self.objective.kind,
            "metric": config.parsed_metric().name,
            "class_weights": config.class_weights,
            "strategy": config.strategy,
            "space_size": len(setup.distributions),
            "fidelity_schedule": setup.schedule.kind,
            "front_measure": self.front.measure_name,
            "front_measure_is_share": self.front.measure_is_share,
            "stop_when_stable": config.stop_when_stable,
            "search_training": setup.searches_training,
            "augment": list(setup.data.augment),
            "augment_default": setup.data.augment == setup.data.default_augment,
            "resize": setup.data.resize,
            "one_shot": (
                {
                    "supernet": str(config.supernet or setup.run.supernet),
                    "reused": config.supernet is not None,
                    "supernet_epochs": config.supernet_epochs,
                    "subnets": config.subnets,
                    "finetune": config.finetune,
                    "epochs": config.epochs,
                }
                if config.one_shot
                else None
            ),
            "latency": (
                f"predicted from {config.device} "
                f"({profile.get('device', {}).get('name', 'unnamed device')}, "
                f"{profile['threads']} thread(s))"
                if profile
                else f"measured here ({setup.cost.threads} thread(s))"
            ),
        }

    def _next_trial(
        self, outside_baselines: list[tuple[str, Genotype]]
    ) -> tuple[T.SearchTrial, Genotype | None]:
        """The next candidate: a baseline the space cannot express, else the sampler's."""
        if outside_baselines:
            label, genotype = outside_baselines.pop(0)
            return T.DirectTrial(len(self.study.get_trials(deepcopy=False)), label), genotype
        return T.ask(self.study, self.setup.distributions, self.driver), None

    def _recorded(self, trial: T.SearchTrial) -> list[R.TrialRecord]:
        """Show and write what the study holds after ``trial`` ended; returns the records (of
        every search process on the study, those under way included).

        While subnets are judged (seconds each, thousands of them) results.json is written
        at most every few seconds; it follows the study again at the next training and at
        the end."""
        records = R.records_from_study(self.study)
        record = next(r for r in reversed(records) if r.number == trial.number)
        self.progress.on_trial_end(record, records)
        now = time.monotonic()
        if not self.judge.one_shot or now - self._written >= RESULTS_EVERY_S:
            self.results.write()
            self._written = now
        return records

    def _stop_reason(
        self,
        spent: int,
        allowed: int,
        deadline: float | None,
        streaks: _Streaks,
        limit: int,
        unit: str = "trial",
    ) -> str | None:
        """Why no further candidate should start, or None."""
        config = self.config
        if spent >= allowed:
            return f"the {unit} budget is spent"
        if deadline is not None and time.monotonic() >= deadline:
            return "the time budget is spent"
        patience = config.stop_when_stable
        if patience is not None and self.front.stable_for() >= patience:
            return f"the front has not improved for {patience} trainings"
        if streaks.repeated >= limit:
            reason = (
                f"{streaks.repeated} proposals in a row were architectures already tried; the space may "
                "be exhausted"
            )
            log.warning(reason)
            return reason
        if streaks.rejected >= limit:
            reason = (
                f"{streaks.rejected} candidates in a row broke the constraints; the constraints may be "
                "too tight for this space"
            )
            log.warning(reason)
            return reason
        return None

    def _guarded(self, trial: T.SearchTrial, step: Callable[..., str], *args: Any) -> str:
        """``step(*args)``'s outcome for ``trial``, with what goes wrong recorded on it: a
        candidate that breaks the trainer must not end the search; Ctrl-C queues it again."""
        try:
            return step(*args)
        except KeyboardInterrupt:
            self._interrupt(trial)
            raise
        except EdgenasError:
            T.tell(self.study, trial, state=TrialState.FAIL)
            raise
        except Exception as exc:
            log.exception("trial %d failed", trial.number)
            self.judge.failed(trial, f"{type(exc).__name__}: {exc}")
            return "failed"

    def _interrupt(self, trial: T.SearchTrial) -> None:
        """Ctrl-C during a candidate: record it as interrupted and queue it for the next run."""
        if isinstance(trial, T.DirectTrial):
            return  # not in the study yet: the next run evaluates it again
        with contextlib.suppress(Exception):  # else the next run finds it RUNNING
            T.requeue(self.study, trial)
            self.results.write()

    def _finish(self, stopped_because: str) -> SearchResult:
        # One process at a time chooses the best, exports best.onnx and writes results.json,
        # each from the study as it is then (another search on the study may have added to it).
        with self.setup.run.writing():
            records = R.records_from_study(self.study)
            best, best_check = choose_best(self.setup, self.study, records, self.progress)
            results = self.results.write(best_check)
        front = R.pareto_front(records)
        return SearchResult(
            self.setup.run.root, records, front, best, best_check, results, stopped_because
        )


def run_search(config: SearchConfig, progress: SearchProgress | None = None) -> SearchResult:
    """Run (or resume) a search and return what it found."""
    return _Search(config, progress or SilentProgress()).run()
