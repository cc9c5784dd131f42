"""Time left of a long step, from the pace of the work done so far.

Standard library only: the device half (``edgenas-device``) uses it where neither PyTorch nor
rich may be installed.
"""

from __future__ import annotations

import time

__all__ = ["TimeLeft", "duration"]


def duration(seconds: float) -> str:
    """``42s``, ``3m05s`` or ``1h02m``: short enough for a progress line."""
    whole = max(0, round(seconds))
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m:02d}m"
    return f"{m}m{s:02d}s" if m else f"{s}s"


class TimeLeft:
    """Estimates how long the rest of ``total`` units of work takes.

    Created when the work starts; ``update(done)`` is called after each unit. Units done before
    this process started (a resumed run) are not counted in the pace: the first update sets
    the baseline at ``done - 1``, the unit just finished being the first one this process did.
    """

    def __init__(self, total: int | None = None) -> None:
        self.total = total
        self.started = time.monotonic()
        self._baseline: float | None = None

    def restart(self) -> None:
        """Start the clock again, for work that begins only now."""
        self.started = time.monotonic()
        self._baseline = None

    def update(self, done: float, total: int | None = None) -> float | None:
        """Seconds left after ``done`` units, or None while nothing is known yet."""
        if total is not None:
            self.total = total
        if self._baseline is None:
            self._baseline = max(0.0, done - 1)
        progressed = done - self._baseline
        elapsed = time.monotonic() - self.started
        if self.total is None or progressed <= 0 or elapsed <= 0:
            return None
        return max(0.0, self.total - done) * elapsed / progressed

    def text(self, done: float, total: int | None = None) -> str:
        """``about 3m05s left``; an empty string while unknown, and once all is done."""
        left = self.update(done, total)
        if left is None or self.total is None or done >= self.total:
            return ""
        return f"about {duration(left)} left"
