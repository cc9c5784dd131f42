"""BENCHMARKS.md is written by several benchmarks, each owning one section between markers."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"


def write_section(mark: str, text: str, path: Path = BENCHMARKS) -> None:
    """Replace the section between ``<!-- mark -->`` and ``<!-- /mark -->`` with ``text``, or
    append it; the rest of the file is left as it is."""
    body = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"<!-- {mark} -->\n{text.rstrip()}\n<!-- /{mark} -->"
    pattern = re.compile(rf"<!-- {re.escape(mark)} -->.*?<!-- /{re.escape(mark)} -->", re.S)
    if pattern.search(body):
        body = pattern.sub(lambda _: block, body)
    else:
        body = body.rstrip() + "\n\n" + block + "\n"
    path.write_text(body)


def cpu_name() -> str:
    """The processor's model name, as benchmarks record the machine."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"


def git_commit(revision: str) -> str:
    """The full hash of ``revision`` in this repository; exits with a one-line error if unknown."""
    found = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"],
        cwd=BENCHMARKS.parent, capture_output=True, text=True,
    )  # fmt: skip
    if found.returncode != 0:
        raise SystemExit(
            f"--before {revision!r} is not a commit of this repository; give a hash or tag "
            f"from `git log` (the clone must hold that history)"
        )
    return found.stdout.strip()
