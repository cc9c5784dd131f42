"""Running the real ``edgenas`` command in a subprocess, for the end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import sys

EDGENAS = [sys.executable, "-m", "edgenas"]
# Small and quick: one resolution, shallow stages, one epoch.
QUICK = ["--resolution", "64", "--max-depth", "2", "--epochs", "1"]


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "160"}
    return subprocess.run(
        [*EDGENAS, *args], capture_output=True, text=True, timeout=timeout, env=env
    )
