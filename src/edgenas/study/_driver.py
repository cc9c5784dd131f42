"""Which search process (driver) runs a trial, and whether that process is still alive.

A driver killed with SIGKILL leaves its trial RUNNING in the study. The next driver must run
that trial again, but must not touch a trial that another live driver is running on the same
study. Each trial therefore records its driver (host, process id, the process's start time)
and a heartbeat the driver refreshes while it trains. A RUNNING trial is abandoned when its
driver ran on this host and that process is gone (or the id now belongs to another process),
or, for a driver elsewhere, when its heartbeat is older than the grace period.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ATTR_DRIVER", "ATTR_HEARTBEAT", "Driver", "Heartbeat", "abandoned"]

ATTR_DRIVER = "driver"
ATTR_HEARTBEAT = "heartbeat"
HEARTBEAT_S = 30.0
# A driver on another machine that has not beaten for this long is taken for dead.
GRACE_S = 300.0


def _start_time(pid: int) -> str | None:
    """The start time of a process in clock ticks since boot (Linux), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22, counted after the command name (which may hold spaces) in parentheses.
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Driver:
    """The identity of one search process."""

    host: str
    pid: int
    started: str | None

    @classmethod
    def this(cls) -> Driver:
        pid = os.getpid()
        return cls(socket.gethostname(), pid, _start_time(pid))

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "pid": self.pid, "started": self.started}

    def is_alive(self) -> bool | None:
        """Whether this driver's process still runs; None when it ran on another host."""
        if self.host != socket.gethostname():
            return None
        if not _alive(self.pid):
            return False
        now = _start_time(self.pid)
        return now is None or self.started is None or now == self.started


def abandoned(attrs: Mapping[str, Any], *, now: float | None = None) -> bool:
    """Whether a RUNNING trial with these user attributes has lost its driver.

    A trial without a recorded driver counts as abandoned: it predates drivers being recorded,
    or its process died between asking for it and recording itself. (A live process records
    itself within moments of asking; the runner looks twice before deciding.)
    """
    now = time.time() if now is None else now
    info = attrs.get(ATTR_DRIVER)
    if not isinstance(info, dict):
        return True
    driver = Driver(str(info.get("host")), int(info.get("pid", -1)), info.get("started"))
    if driver == Driver.this():
        return True  # this very process did not finish it (an exception unwound past it)
    alive = driver.is_alive()
    if alive is not None:
        return not alive
    beat = attrs.get(ATTR_HEARTBEAT)
    return not isinstance(beat, (int, float)) or now - float(beat) > GRACE_S


class Heartbeat:
    """Calls ``beat()`` every ``interval`` seconds in a daemon thread while in a ``with``."""

    def __init__(self, beat: Callable[[], None], interval: float = HEARTBEAT_S) -> None:
        self._beat = beat
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edgenas-heartbeat", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            with contextlib.suppress(Exception):  # a missed beat only makes it look older
                self._beat()

    def __enter__(self) -> Heartbeat:
        self._beat()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
