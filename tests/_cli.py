"""Running the real ``edgenas`` command in a subprocess, for the end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

EDGENAS = [sys.executable, "-m", "edgenas"]
# Small and quick: one resolution, shallow stages, one epoch.
QUICK = ["--resolution", "64", "--max-depth", "2", "--epochs", "1"]
# A command that takes a minute alone can take several when the slow tests' searches, workers
# and Ray actors share two cores with it; the limit is there to catch a hang, not to time it.
TIMEOUT = 600.0


def run_cli(*args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "160"}
    try:
        return subprocess.run(
            [*EDGENAS, *args], capture_output=True, text=True, timeout=timeout, env=env
        )
    except subprocess.TimeoutExpired as exc:
        # Say where the command was when it was stopped: its last lines of output.
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr
        tail = "\n".join((err or "").strip().splitlines()[-15:])
        pytest.fail(f"edgenas {' '.join(args)} ran past {timeout:.0f} s; it last printed:\n{tail}")
