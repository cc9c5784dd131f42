"""Trials as the search writes them into the study: asked, told, kept alive, queued again.

This is the only module that reaches into Optuna's storage (``Study._storage``,
``Trial._trial_id``): a trial found RUNNING in the storage is a `FrozenTrial` without setters,
and a heartbeat is written from another thread without going through a `Trial`.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeAlias

import optuna
from optuna.trial import FrozenTrial, TrialState

from edgenas.cost import Costs
from edgenas.study import _records as R
from edgenas.study._driver import ATTR_DRIVER, ATTR_HEARTBEAT, Driver, Heartbeat, abandoned

__all__ = [
    "DirectTrial",
    "SearchTrial",
    "ask",
    "beat_now",
    "keep_alive",
    "recover_interrupted",
    "requeue",
    "set_costs",
    "set_system_attr",
    "study_storage",
    "tell",
    "trial_seed",
]

# How long a process may take between asking for a trial and recording itself on it.
RECORD_GRACE_S = 2.0


class DirectTrial:
    """A candidate evaluated outside the sampler (a baseline the space cannot express).

    It collects what a trial would record and enters the study only when finished, through
    ``Study.add_trial``; a crash before that simply means evaluating it again.
    """

    def __init__(self, number: int, label: str) -> None:
        self.number = number
        self.params: dict[str, Any] = {}
        self.user_attrs: dict[str, Any] = {R.ATTR_BASELINE: label}

    def set_user_attr(self, key: str, value: Any) -> None:
        self.user_attrs[key] = value

    def set_constraint(self, key: str, value: float) -> None:
        pass  # strategies ignore trials without parameters; violations are in user_attrs

    def report(self, value: float, step: int) -> None:
        pass


#: A trial the search evaluates: one the sampler proposed, or a `DirectTrial`.
SearchTrial: TypeAlias = optuna.Trial | DirectTrial


def trial_seed(seed: int, number: int) -> int:
    """The seed trial ``number`` of a search seeded with ``seed`` trains with (and a retraining
    of it, as in ``edgenas finalize``, starts from)."""
    digest = hashlib.sha256(f"{seed}:{number}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def ask(study: optuna.Study, distributions: dict[str, Any], driver: Driver) -> optuna.Trial:
    """A new trial from the sampler, recorded as run by ``driver``."""
    trial = study.ask(distributions)
    trial.set_user_attr(ATTR_DRIVER, driver.to_dict())
    return trial


def tell(
    study: optuna.Study,
    trial: SearchTrial,
    values: list[float] | None = None,
    state: TrialState | None = None,
) -> None:
    """Finish ``trial``: with ``values`` (complete), or in ``state`` (failed, pruned)."""
    if isinstance(trial, DirectTrial):
        state = state or TrialState.COMPLETE
        study.add_trial(
            optuna.trial.create_trial(
                state=state,
                values=values if state == TrialState.COMPLETE else None,
                params={},
                distributions={},
                user_attrs=trial.user_attrs,
            )
        )
    elif values is not None:
        study.tell(trial, values)
    else:
        study.tell(trial, state=state, skip_if_finished=True)


def set_costs(trial: SearchTrial, costs: Costs, violations: dict[str, float]) -> None:
    """Record a candidate's costs and constraint violations (which samplers read)."""
    trial.set_user_attr(R.ATTR_COSTS, costs.to_dict())
    trial.set_user_attr(R.ATTR_VIOLATIONS, violations)
    for name, value in violations.items():
        trial.set_constraint(name, value)


def _carried(attrs: dict[str, Any]) -> dict[str, Any]:
    """What a trial queued to run again keeps of the interrupted one: where it came from."""
    keys = (R.ATTR_BASELINE, R.ATTR_WARM_START, R.ATTR_START, R.ATTR_FINETUNE_OF)
    return {k: attrs[k] for k in keys if k in attrs}


def requeue(
    study: optuna.Study,
    trial: optuna.Trial | FrozenTrial,
    *,
    queue: bool = True,
    lost: int | None = None,
) -> None:
    """Record ``trial`` as interrupted (failed) and, with ``queue``, enqueue its assignment
    to run again as a new trial that names it (``retry_of``), keeps where it came from, and
    counts the worker processes lost training it so far (``lost``)."""
    if queue:
        attrs: dict[str, Any] = {R.ATTR_RETRY_OF: trial.number}
        if lost is not None:
            attrs[R.ATTR_LOST] = lost
        study.enqueue_trial(trial.params, user_attrs={**attrs, **_carried(trial.user_attrs)})
    study._storage.set_trial_user_attr(trial._trial_id, R.ATTR_REASON, R.INTERRUPTED)
    study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)


def recover_interrupted(study: optuna.Study) -> int:
    """Trials left RUNNING by a killed process: mark failed and queue them again (see
    `_driver` for how a dead process is told from a live one); returns how many."""
    trials = study.get_trials(deepcopy=False)
    if any(t.state == TrialState.RUNNING and ATTR_DRIVER not in t.user_attrs for t in trials):
        # Another process may have just asked for it and not yet recorded itself.
        time.sleep(RECORD_GRACE_S)
        trials = study.get_trials(deepcopy=False)
    queued = {t.user_attrs.get(R.ATTR_RETRY_OF) for t in trials if t.state == TrialState.WAITING}
    n = 0
    for t in trials:
        # Another live search process may be running it: leave it to that one.
        if t.state != TrialState.RUNNING or not abandoned(t.user_attrs):
            continue
        requeue(study, t, queue=t.number not in queued and bool(t.params))
        n += 1
    return n


def left_running(study: optuna.Study) -> set[int]:
    """The trials still RUNNING in the study whose search process is gone (killed, or stopped
    before it could record them); the next search on the study trains them again."""
    return {
        t.number
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if abandoned(t.user_attrs)
    }


def _beat(study: optuna.Study, trials: Iterable[SearchTrial]) -> None:
    now = time.time()
    for trial in trials:
        if not isinstance(trial, DirectTrial):  # not in the study yet: nobody can take it
            study._storage.set_trial_user_attr(trial._trial_id, ATTR_HEARTBEAT, now)


def keep_alive(study: optuna.Study, trials: Callable[[], Iterable[SearchTrial]]) -> Heartbeat:
    """A heartbeat for the trials under way (``trials()``, asked at every beat), so that
    search processes on other hosts see they are alive; it beats once on entering.

    `beat_now` gives a trial its first beat when it starts, between two beats.
    """
    return Heartbeat(lambda: _beat(study, trials()))


def beat_now(study: optuna.Study, trial: SearchTrial) -> None:
    """A heartbeat for ``trial`` now: one that starts training has none yet, and a trial
    without one looks abandoned to a search process on another host."""
    _beat(study, [trial])


def set_system_attr(study: optuna.Study, trial: FrozenTrial, key: str, value: Any) -> None:
    """Set a system attribute on a trial a sampler sees only as a `FrozenTrial`."""
    study._storage.set_trial_system_attr(trial._trial_id, key, value)


def study_storage(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The study's own storage, for tools that read it directly (optuna-dashboard), so that they
    share its connection pool instead of opening another."""
    return study._storage
