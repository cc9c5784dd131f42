"""Time left of long steps: the pace of the work done so far, never of work done before."""

from __future__ import annotations

from typing import Any

import pytest

from edgenas import _eta
from edgenas._eta import TimeLeft, duration
from edgenas.finalize._clock import EpochClock


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(_eta.time, "monotonic", fake)
    return fake


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (42.4, "42s"), (185, "3m05s"), (3720, "1h02m"), (-3, "0s")]
)
def test_duration_reads_short(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_time_left_follows_the_pace(clock: FakeClock) -> None:
    left = TimeLeft(10)
    clock.now += 10
    assert left.update(1) == pytest.approx(90)  # 10 s a unit, 9 to go
    clock.now += 50
    assert left.update(4) == pytest.approx(90)  # now 15 s a unit, 6 to go
    assert left.text(4) == "about 1m30s left"
    clock.now += 90
    assert left.text(10) == ""  # nothing left to wait for


def test_units_done_before_a_resume_do_not_speed_up_the_pace(clock: FakeClock) -> None:
    left = TimeLeft(100)
    clock.now += 5
    # 90 units were done by an earlier process; this one has done one, in 5 s.
    assert left.update(91) == pytest.approx(45)


def test_unknown_total_gives_no_estimate(clock: FakeClock) -> None:
    left = TimeLeft()
    clock.now += 5
    assert left.update(1) is None and left.text(1) == ""


def test_epoch_clock_tells_each_epoch_and_the_training_left(clock: FakeClock) -> None:
    lines: list[str] = []
    epochs = EpochClock(lines.append, planned=4)
    report = epochs.reporter("trial 3", 2)
    clock.now += 30
    assert report(1, 0.5) is True  # training goes on
    clock.now += 30
    report(2, 0.625)
    epochs.add(2)  # quantization-aware training turned out to be needed
    clock.now += 30
    epochs.reporter("quantization-aware training", 2)(1, 0.6)
    assert (
        lines[0]
        == "trial 3: epoch 1/2, validation 50.0% · about 1m30s of training left (3 epoch(s))"
    )
    assert lines[1].endswith("about 1m00s of training left (2 epoch(s))")
    assert lines[2].startswith("quantization-aware training: epoch 1/2, validation 60.0%")
    assert lines[2].endswith("(3 epoch(s))")


def test_the_live_view_times_each_trial_on_its_own(clock: FakeClock) -> None:
    """With --workers, epochs of several trials interleave: each keeps its own pace."""
    import io
    from types import SimpleNamespace

    from rich.console import Console

    from edgenas.cli._live import LiveView

    view = LiveView(Console(file=io.StringIO()))
    costs: Any = SimpleNamespace(latency_ms=1.0)
    view.on_trial_start(1, "g1", costs)
    clock.now += 10
    view.on_trial_start(2, "g2", costs)
    clock.now += 10
    view.on_epoch(1, 1, 3, 0.5)  # trial 1: 20 s an epoch, 2 to go
    assert view.current.endswith("this trial about 40s more")
    clock.now += 30
    view.on_epoch(2, 1, 4, 0.5)  # trial 2: 40 s an epoch, 3 to go
    assert view.current.endswith("this trial about 2m00s more")
