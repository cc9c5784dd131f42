"""One-shot search: candidates judged by a supernet's weights instead of each being trained.

A one-shot search runs in three phases, all recorded in the study:

1. **The supernet**, loaded from ``--supernet`` or trained into ``RUN/supernet.pt`` (resumed
   after a kill) over the subnets the limits allow (`edgenas.oneshot`).
2. **The search.** The strategy proposes as in any search, the cost model and the constraints
   reject what breaks a limit, and `JudgeExecutor` takes the place of training: the subnet's
   validation accuracy with inherited weights (BatchNorm recalibrated) is its score. Each is a
   trial with ``one_shot: true``, and no weights are saved (the supernet holds them).
3. **The finish.** Each of the best few one-shot candidates becomes three deliverable models
   (`FinishExecutor`): as judged (``start`` "judged": the inherited weights with BatchNorm
   recalibrated, no training, as Once-for-All and BigNAS deliver subnets), fine-tuned from
   the inherited weights ("inherited": `FINETUNE_LR_SHARE` of the learning rate, distilled
   from the supernet's largest subnet) and trained from scratch ("scratch", the trainer's
   recipe). Those are ordinary trials (``start``, ``finetune_of``) with weights on disk, and
   the best is chosen among them as in any search, on validation, and checked on the holdout.

A time budget is shared out: the supernet may take `SUPERNET_SHARE` of it, the search runs
until `SEARCH_SHARE` more has passed, and the finish has the rest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch

from edgenas._eta import duration
from edgenas.arch import Genotype, Network, build_model
from edgenas.errors import ConfigError
from edgenas.oneshot import (
    SubnetJudge,
    SubnetSampler,
    Supernet,
    SupernetEpoch,
    SupernetTraining,
    load_supernet,
    train_supernet,
)
from edgenas.space import StagedSpace
from edgenas.study import _records as R
from edgenas.study._config import SearchProgress
from edgenas.study._executors import Job, Reporter, Sequential
from edgenas.study._setup import SearchSetup
from edgenas.train import Distillation, Fidelity, TrainResult, fit, resolve_device

__all__ = [
    "FINETUNE_LR_SHARE",
    "SEARCH_SHARE",
    "STARTS",
    "SUPERNET_SHARE",
    "FinishExecutor",
    "JudgeExecutor",
    "OneShot",
    "finish_candidates",
    "queue_finish",
    "space_within",
]

log = logging.getLogger("edgenas.search")

#: Shares of a time budget: the supernet's training, then the search of subnets.
SUPERNET_SHARE = 0.50
SEARCH_SHARE = 0.15
#: The final models made of each candidate, in the order they are made (cheapest first).
STARTS = ("judged", "inherited", "scratch")
#: Fine-tuning from inherited weights runs at this share of the trainer's peak learning rate
#: (the weights are trained already; `benchmarks/oneshot_elpv.py finetune` compares recipes).
FINETUNE_LR_SHARE = 0.1
# Random subnets drawn to find the largest and smallest the limits allow (and, when latency is
# measured rather than predicted, the only ones the supernet trains besides those two).
_POOL_CHEAP = 3000
_POOL_MEASURED = 300


def space_within(inner: StagedSpace, outer: StagedSpace) -> str | None:
    """Why a subnet of ``inner`` may not be one of ``outer``, or None when every one is."""
    if len(inner.stages) != len(outer.stages):
        return f"it has {len(inner.stages)} stages, the supernet {len(outer.stages)}"
    for i, (a, b) in enumerate(zip(inner.stages, outer.stages, strict=True)):
        if a.stride != b.stride:
            return f"stage {i} has stride {a.stride}, the supernet's {b.stride}"
        for name in ("widths", "depths"):
            extra = set(getattr(a, name)) - set(getattr(b, name))
            if extra:
                return f"stage {i} {name} {sorted(extra)} are not among the supernet's"
    for name in ("resolutions", "stems", "heads", "block_types", "kernels", "expansions", "se",
                 "activations", "residuals", "skips"):  # fmt: skip
        extra = set(getattr(inner, name)) - set(getattr(outer, name))
        if extra:
            return f"{name.replace('_', ' ')} {sorted(extra, key=str)} are not the supernet's"
    return None


class OneShot:
    """The supernet of a one-shot search, and the executors that judge and finish with it.

    Making one loads the supernet named by ``--supernet`` or trains one (resuming an
    interrupted training), and records what it did in the study (``STUDY_ONE_SHOT``).
    """

    def __init__(
        self,
        setup: SearchSetup,
        study: optuna.Study,
        progress: SearchProgress,
        feasible: Callable[[Genotype], bool],
        deadline: float | None,
    ) -> None:
        self.setup = setup
        self.study = study
        self.progress = progress
        config, data = setup.config, setup.data
        assert isinstance(setup.space, StagedSpace)  # SearchConfig checked it
        started = time.perf_counter()
        if config.supernet is not None:
            self.supernet, info = self._load(Path(config.supernet))
        else:
            self.supernet, info = self._train(feasible, deadline)
        info["ready_seconds"] = round(time.perf_counter() - started, 1)
        self.info = {**dict(study.user_attrs.get(R.STUDY_ONE_SHOT, {})), **info}
        self.judge = SubnetJudge(self.supernet, data, seed=config.seed, metric=config.metric)
        self._save()

    # -- the supernet ---------------------------------------------------------------------------
    def _load(self, path: Path) -> tuple[Supernet, dict[str, Any]]:
        setup, data = self.setup, self.setup.data
        supernet, saved = load_supernet(path)
        if not saved.complete:
            raise ConfigError(
                f"the supernet {path} is trained for {saved.epoch} of its {saved.epochs} epochs; "
                f"rerun the search that trains it to finish it, or drop --supernet"
            )
        if (saved.in_channels, saved.num_classes) != (data.channels, data.num_classes):
            raise ConfigError(
                f"the supernet {path} takes {saved.in_channels}-channel images of "
                f"{saved.num_classes} classes, the data {data.name} has {data.channels} and "
                f"{data.num_classes}"
            )
        if saved.data_fingerprint not in (None, data.fingerprint()):
            log.warning("the supernet %s was trained on other data than %s", path, data.name)
        assert isinstance(setup.space, StagedSpace)
        why = space_within(setup.space, saved.space)
        if why:
            raise ConfigError(f"the search space does not fit the supernet {path}: {why}")
        self.progress.on_phase(
            f"supernet {path}: {saved.epochs} epoch(s), trained in {duration(saved.seconds)}"
        )
        info = {
            "supernet": str(path),
            "reused": True,
            "epochs": saved.epochs,
            "seconds": round(saved.seconds, 1),
            "teacher": saved.teacher,
            "smallest": saved.smallest,
            "history": list(saved.history),
        }
        return supernet.to(resolve_device(setup.train_config.device)).eval(), info

    def _train(
        self, feasible: Callable[[Genotype], bool], deadline: float | None
    ) -> tuple[Supernet, dict[str, Any]]:
        setup, config, data = self.setup, self.setup.config, self.setup.data
        space = setup.space
        assert isinstance(space, StagedSpace)
        cheap = setup.cost.predictor is not None or config.constraints.max_latency_ms is None
        if not cheap:
            log.warning(
                "latency is measured, not predicted: the supernet trains on %d random subnets "
                "checked one by one; a device profile (--device, such as one made by `edgenas "
                "profile local`) lets it draw from every subnet the limits allow",
                _POOL_MEASURED,
            )
        self.progress.on_phase(
            "one-shot: finding the largest and smallest subnets the limits allow"
        )
        # Finding them may take a twentieth of the supernet's time (it is quick unless
        # latency is measured one subnet at a time).
        limit = None if deadline is None else max(5.0, (deadline - time.monotonic()) / 20)
        sampler = SubnetSampler(
            space, data.channels, data.num_classes, feasible=feasible, seed=config.seed,
            pool=_POOL_CHEAP if cheap else _POOL_MEASURED, fresh=cheap, seconds=limit,
        )  # fmt: skip
        supernet = Supernet(space, data.channels, data.num_classes, data.mean, data.std)
        seconds = None
        if deadline is not None:
            seconds = max(1.0, deadline - time.monotonic())
        training = SupernetTraining(epochs=config.supernet_epochs, seconds=seconds)
        path = setup.run.supernet
        self.progress.on_phase(
            f"training the supernet ({config.supernet_epochs} epoch(s) at most; its largest "
            f"subnet {sampler.largest}) into {path}"
        )

        def report(epoch: SupernetEpoch) -> None:
            self.progress.on_phase(
                f"supernet epoch {epoch.epoch}/{epoch.epochs}: largest subnet "
                f"{epoch.teacher_accuracy:.1%}, smallest {epoch.smallest_accuracy:.1%} on "
                f"validation" + (f" · {epoch.time_left}" if epoch.time_left else "")
            )

        torch.manual_seed(config.seed)
        result = train_supernet(
            supernet, data, sampler, training=training, config=setup.train_config,
            seed=config.seed, checkpoint=path, data_fingerprint=data.fingerprint(),
            progress=report,
        )  # fmt: skip
        if result.status != "complete":
            log.warning("the supernet's training diverged after %d epoch(s)", result.epochs)
        info = {
            "supernet": str(path),
            "reused": False,
            "epochs": result.epochs,
            "seconds": round(result.seconds, 1),
            "teacher": str(result.teacher),
            "smallest": str(result.smallest),
            "history": list(result.history),
            "subnets_drawn_in_training": sampler.drawn,
            "subnets_rejected_in_training": sampler.rejected,
        }
        return supernet.eval(), info

    def _save(self) -> None:
        self.study.set_user_attr(R.STUDY_ONE_SHOT, self.info)

    # -- the search -----------------------------------------------------------------------------
    def judged(self, count: int, seconds: float) -> None:
        """Record that ``count`` subnets were judged in a search phase of ``seconds``
        (proposals, cost checks and rejections included)."""
        total = int(self.info.get("subnets_judged", 0)) + count
        spent = float(self.info.get("search_seconds", 0.0)) + seconds
        self.info["subnets_judged"] = total
        self.info["search_seconds"] = round(spent, 1)
        self.info["subnets_per_hour"] = round(3600 * total / spent) if spent > 0 else None
        self._save()

    def teacher(self) -> Distillation:
        """Distillation from the supernet's largest subnet (inherited weights, BatchNorm
        recalibrated), fed at its own resolution: the teacher of the fine-tunings."""
        genotype = Genotype.parse(str(self.info["teacher"]))
        network = self.judge.network(genotype).cpu()
        distill = Distillation(network, resolution=genotype.resolution)
        self.info["finetune_recipe"] = {
            "lr": self.setup.train_config.lr * FINETUNE_LR_SHARE,
            "distilled_from": str(genotype),
            "alpha": distill.alpha,
            "temperature": distill.temperature,
        }
        self._save()
        return distill

    def finishing(self, candidates: list[int]) -> None:
        """Record which one-shot trials are trained again."""
        self.info["trained_again"] = candidates
        self._save()


class JudgeExecutor(Sequential):
    """Judges each job by the weights its subnet inherits, in this process (an `Executor`)."""

    def __init__(self, one_shot: OneShot) -> None:
        super().__init__()
        self._one_shot = one_shot
        self.count = 0

    def run(self, job: Job, reporter: Reporter) -> tuple[Any, ...]:
        started = time.perf_counter()
        judge = self._one_shot.judge
        result = _judged(judge, judge.network(job.genotype), started)
        self.count += 1
        return result, None


def _judged(judge: SubnetJudge, network: Network, started: float) -> TrainResult:
    """A subnet's judgement as a training's result: its validation score (of the metric),
    top-1 accuracy and confusion matrix, with no epoch trained."""
    confusion = judge.confusion(network)
    score = judge.metric.score(confusion, judge.class_names)
    return TrainResult(
        score, (score,), 0, time.perf_counter() - started, "complete", None,
        top1=float(np.trace(confusion)) / int(confusion.sum()),
        confusion=tuple(tuple(int(n) for n in row) for row in confusion),
    )  # fmt: skip


class FinishExecutor(Sequential):
    """Makes a one-shot search's final models in this process (an `Executor`), by the job's
    ``start``: "judged" (inherited weights, BatchNorm recalibrated, no training), "inherited"
    (fine-tuned from them with distillation from the supernet's largest subnet) or "scratch"."""

    def __init__(self, one_shot: OneShot) -> None:
        super().__init__()
        self._one_shot = one_shot
        self._teacher: Distillation | None = None

    def run(self, job: Job, reporter: Reporter) -> tuple[Any, ...]:
        setup, judge = self._one_shot.setup, self._one_shot.judge
        data, genotype = setup.data, job.genotype
        config, distill = job.train_config, None
        if job.start == "judged":
            started = time.perf_counter()
            model = judge.network(genotype)
            result = _judged(judge, model, started)
            return result, {k: v.detach().cpu() for k, v in model.state_dict().items()}
        if job.start == "inherited":
            model = judge.network(genotype).cpu()
            config = replace(config, lr=config.lr * FINETUNE_LR_SHARE)
            if self._teacher is None:
                self._teacher = self._one_shot.teacher()
            distill = self._teacher
        else:
            torch.manual_seed(job.seed)
            model = build_model(genotype, data.channels, data.num_classes, data.mean, data.std)
        result = fit(model, data, Fidelity(epochs=setup.config.epochs),
                     resolution=genotype.resolution, seed=job.seed, config=config,
                     report=reporter, distill=distill)  # fmt: skip
        return result, {k: v.detach().cpu() for k, v in model.state_dict().items()}


def finish_candidates(records: list[R.TrialRecord], setup: SearchSetup) -> list[R.TrialRecord]:
    """The one-shot candidates trained again at the end: the best ``--finetune`` of them by the
    objective, one per architecture."""
    chosen: list[R.TrialRecord] = []
    seen: set[str] = set()
    for r in R.rank_candidates(records, setup.objective):
        if r.one_shot and r.genotype not in seen:
            seen.add(r.genotype or "")
            chosen.append(r)
        if len(chosen) == setup.config.finetune:
            break
    return chosen


def queue_finish(
    study: optuna.Study, records: list[R.TrialRecord], chosen: list[R.TrialRecord]
) -> int:
    """Queue the final models of ``chosen`` not yet made or queued, by `STARTS` (every
    candidate as judged first, then the fine-tunings, then the trainings from scratch);
    returns how many were queued."""
    done = {(r.finetune_of, r.start) for r in records if r.start and r.state != "failed"}
    waiting = {
        (t.user_attrs.get(R.ATTR_FINETUNE_OF), t.user_attrs.get(R.ATTR_START))
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
    }
    queued = 0
    for start in STARTS:
        for r in chosen:
            if (r.number, start) in done or (r.number, start) in waiting:
                continue
            study.enqueue_trial(
                r.params, user_attrs={R.ATTR_FINETUNE_OF: r.number, R.ATTR_START: start}
            )
            queued += 1
    return queued
