"""Peak memory of an ONNX Runtime session, measured in a fresh process.

A process's peak resident memory only ever grows, so each measurement runs in a new Python
process (``sys.executable -m edgenas.device._memory_child``): it imports ONNX Runtime and NumPy,
allocates the input, creates the session as :func:`~edgenas.device.make_session` does, runs a few
inferences at batch 1 and reports its peak resident set size. The same process without the
model (imports and input only) is the baseline; the model's peak memory is the difference: what
loading and running it adds to a Python process that has ONNX Runtime imported. ONNX Runtime's
per-session overhead is part of it, as it is on the device.

Like the rest of ``edgenas.device`` this needs only NumPy and ONNX Runtime.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "MemoryMeasurement",
    "MemoryMeasurementError",
    "baseline_peak_mb",
    "measure_onnx_memory",
]

MB = 1e6  # megabytes of 10^6 bytes, as the cost model reports memory
_CHILD = "edgenas.device._memory_child"
_PROC_STATUS = Path("/proc/self/status")

# An input as the child reports it and the baseline allocates it: (shape, NumPy dtype name).
InputSpec = tuple[tuple[int, ...], str]


class MemoryMeasurementError(RuntimeError):
    """The measuring process failed (the model does not load, or it ran out of memory)."""


@dataclass(frozen=True)
class MemoryMeasurement:
    peak_mb: float  # the model's peak: process peak minus the baseline's peak
    process_peak_mb: float  # peak resident memory of the process that ran the model
    baseline_peak_mb: float  # the same process without the model
    inputs: tuple[InputSpec, ...]


def _peak_rss_bytes() -> int:
    """This process's peak resident set size in bytes.

    On Linux, ``ru_maxrss`` survives ``execve``: a child started by a large parent (a search
    holding PyTorch) would report the parent's peak. The high-water mark of the process's own
    address space (``VmHWM``) starts afresh at ``execve``, so it is read instead where it exists.
    """
    try:
        for line in _PROC_STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kilobytes, macOS bytes.
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def _child_env() -> dict[str, str]:
    # The child must import this package even when the parent found it through sys.path tricks.
    root = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}


def _run_child(args: Sequence[str], timeout: float) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-m", _CHILD, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_child_env(),
    )
    if proc.returncode != 0:
        tail = (proc.stderr or "").strip().splitlines()[-3:]
        raise MemoryMeasurementError(
            f"the memory-measuring process exited with status {proc.returncode}: "
            + (" / ".join(tail) or "no message")
        )
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def _inputs_arg(inputs: Sequence[InputSpec]) -> list[str]:
    return [f"{'x'.join(map(str, shape))}:{dtype}" for shape, dtype in inputs]


def baseline_peak_mb(
    inputs: Sequence[InputSpec], *, repeats: int = 3, timeout: float = 120.0
) -> float:
    """Median peak resident memory (MB) of ``repeats`` fresh processes that import ONNX Runtime
    and NumPy and allocate ``inputs``, but load no model."""
    peaks = []
    for _ in range(repeats):
        out = _run_child(["--baseline", *_inputs_arg(inputs)], timeout)
        peaks.append(float(out["peak_bytes"]) / MB)  # type: ignore[arg-type]
    return statistics.median(peaks)


def measure_onnx_memory(
    model: bytes | str | Path,
    *,
    threads: int = 1,
    runs: int = 3,
    repeats: int = 3,
    baseline_mb: dict[tuple[InputSpec, ...], float] | None = None,
    timeout: float = 300.0,
) -> MemoryMeasurement:
    """Peak memory (MB) that loading and running an ONNX model ``runs`` times at batch 1 adds
    to a process.

    ``model`` is the serialized model or a path to it. The process runs ``repeats`` times and
    the median peak is kept: now and then a process peaks a few MB higher (where the runtime's
    threads happen to allocate), and the median ignores that. The baseline of the same inputs
    is measured once (median of three processes) and kept in ``baseline_mb``, when given, so a
    run over many models of the same input shape pays for it once.
    """
    peaks = []
    with tempfile.TemporaryDirectory(prefix="edgenas-memory-") as tmp:
        if isinstance(model, bytes):
            path = Path(tmp) / "model.onnx"
            path.write_bytes(model)
        else:
            path = Path(model)
        for _ in range(max(repeats, 1)):
            out = _run_child([str(path), "--threads", str(threads), "--runs", str(runs)], timeout)
            peaks.append(float(out["peak_bytes"]) / MB)  # type: ignore[arg-type]
    raw_inputs = out["inputs"]
    assert isinstance(raw_inputs, list)
    inputs = tuple((tuple(int(d) for d in shape), str(dtype)) for shape, dtype in raw_inputs)
    cache = baseline_mb if baseline_mb is not None else {}
    if inputs not in cache:
        cache[inputs] = baseline_peak_mb(inputs, timeout=timeout)
    process = statistics.median(peaks)
    return MemoryMeasurement(max(process - cache[inputs], 0.0), process, cache[inputs], inputs)


# -- the child process ---------------------------------------------------------------------------


def child_main(argv: list[str] | None = None) -> None:
    """What the measuring process runs: prints its peak resident memory as JSON."""
    parser = argparse.ArgumentParser(prog=f"python -m {_CHILD}")
    parser.add_argument("model", nargs="?")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline", nargs="*", metavar="SHAPE:DTYPE")
    args = parser.parse_args(argv)
    if args.baseline is None and not args.model:
        parser.error("give a model, or --baseline with the input shapes")

    # Both kinds of process import the same modules, so the imports cancel out
    # (make_session imports ONNX Runtime only when called: import it here for both).
    import numpy as np
    import onnxruntime  # noqa: F401

    from edgenas.device._timing import _feeds, make_session

    if args.baseline is not None:
        arrays = []
        for spec in args.baseline:
            shape, dtype = spec.split(":")
            dims = [int(d) for d in shape.split("x")] if shape else []
            arrays.append(np.random.default_rng(0).random(dims).astype(dtype))
        print(json.dumps({"peak_bytes": _peak_rss_bytes()}))
        return
    session = make_session(args.model, args.threads)
    feeds = _feeds(session, 1)
    for _ in range(max(args.runs, 1)):
        session.run(None, feeds)
    inputs = [[list(a.shape), a.dtype.name] for a in feeds.values()]
    print(json.dumps({"peak_bytes": _peak_rss_bytes(), "inputs": inputs}))
