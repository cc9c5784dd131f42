"""The device half of profiling: time every model of a plan, and measure the peak memory of its
whole reference networks, resumably.

Run on the target (a Raspberry Pi, a phone board, any CPU) with only NumPy and ONNX Runtime::

    edgenas-device plan.zip --threads 4 --out pi4.json      # or: python -m edgenas.device ...

The plan (written on the host by ``edgenas profile plan``) is a zip with ``plan.json`` and one
ONNX file per model. Progress is saved to the output file as it goes, so an interrupted run
started again with the same arguments times and measures only what is left.

Every 20th operator is timed a second time at the end (``repeat_ms``: how noisy one timing is),
and one reference network is timed again every 100 timings (``anchors``, with each entry's
``anchor`` index: how the machine's speed drifted through the run).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgenas._eta import TimeLeft
from edgenas._io import write_json
from edgenas.device._memory import InputSpec, MemoryMeasurementError, measure_onnx_memory
from edgenas.device._timing import LatencyMeasurement, measure_onnx_latency

__all__ = [
    "PLAN_FORMAT",
    "PROFILE_FORMAT",
    "PROFILE_VERSION",
    "PlanEntry",
    "PlanError",
    "device_info",
    "main",
    "profile_plan",
    "read_plan",
]

PLAN_FORMAT = "edgenas-plan"
PROFILE_FORMAT = "edgenas-profile"
PROFILE_VERSION = 1


class PlanError(Exception):
    """The plan or an earlier partial profile cannot be used."""


@dataclass(frozen=True)
class PlanEntry:
    key: str  # what the model measures, such as "ir_k3_e4_c24_s2|in16x48"
    kind: str  # "conv" (one operator), "network" (a whole reference network)
    file: str  # path inside the zip


def read_plan(path: Path) -> tuple[dict[str, Any], list[PlanEntry], str]:
    """The plan's header, its entries and the SHA-256 of the zip file."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise PlanError(f"cannot read the plan {path}: {exc.strerror}") from None
    digest = hashlib.sha256(data).hexdigest()
    try:
        with zipfile.ZipFile(path) as z:
            header = json.loads(z.read("plan.json"))
            names = set(z.namelist())
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise PlanError(
            f"{path} is not an edgenas plan ({exc}); write one with `edgenas profile plan`"
        ) from None
    if header.get("format") != PLAN_FORMAT:
        raise PlanError(f"{path} is not an edgenas plan (format {header.get('format')!r})")
    entries = []
    for m in header.get("models", []):
        entry = PlanEntry(str(m["key"]), str(m.get("kind", "block")), str(m["file"]))
        if entry.file not in names:
            raise PlanError(f"{path} is incomplete: {entry.file} is missing; write the plan again")
        entries.append(entry)
    return header, entries, digest


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key = line.split(":", 1)[0].strip().lower()
            if key in ("model name", "hardware", "cpu model"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_info(name: str | None = None) -> dict[str, Any]:
    """What the numbers were measured on: device, CPU, OS, Python and ONNX Runtime."""
    import onnxruntime

    return {
        "device": {
            "name": name or platform.node(),
            "machine": platform.machine(),
            "cpu": _cpu_model(),
            "cores": os.cpu_count(),
            "os": platform.platform(),
            "python": platform.python_version(),
        },
        "runtime": {
            "name": "onnxruntime",
            "version": onnxruntime.__version__,
            "provider": "CPUExecutionProvider",
        },
    }


def profile_plan(
    plan: Path,
    out: Path,
    *,
    threads: int = 1,
    name: str | None = None,
    max_seconds: float = 2.0,
    progress: Callable[[int, int, PlanEntry, float], None] | None = None,
    memory: bool = True,
    memory_progress: Callable[[int, int, PlanEntry, float], None] | None = None,
) -> dict[str, Any]:
    """Time every model of ``plan`` and write the profile to ``out``; resume a partial one.

    With ``memory``, the peak memory of each whole reference network (kind ``network``) is
    measured too, in a fresh process per network (:func:`measure_onnx_memory`), and stored in
    its entry as ``peak_memory_mb``; ``memory_progress`` then hears of each (MB instead of ms).
    """
    plan, out = Path(plan), Path(out)
    if _same_file(plan, out):
        raise PlanError(
            f"--out {out} is the plan itself; give another --out for the profile, such as "
            f"{plan.with_name(plan.stem + '.profile.json')}"
        )
    header, entries, digest = read_plan(plan)
    old = _earlier_profile(out)
    measurements: dict[str, Any] = {}
    if old is not None:
        if old.get("plan", {}).get("sha256") != digest or old.get("threads") != threads:
            raise PlanError(
                f"--out {out} holds a profile of another plan or thread count; "
                f"give another --out, or move {out} away to start again"
            )
        measurements = dict(old.get("measurements", {}))
    profile: dict[str, Any] = {
        "format": PROFILE_FORMAT,
        "version": PROFILE_VERSION,
        **device_info(name),
        "threads": threads,
        "batch": 1,
        "dtype": "float32",
        "plan": {
            "sha256": digest,
            "models": len(entries),
            "space": header.get("space"),
            "in_channels": header.get("in_channels"),
            "num_classes": header.get("num_classes"),
            # measured: every entry of "measurements"; modelled: what the plan says it left out
            "coverage": header.get("coverage"),
        },
        "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "complete": False,
        "measurements": measurements,
        # timings of one model repeated through the run: how the machine's speed drifted
        "anchors": list(old.get("anchors", [])) if isinstance(old, dict) else [],
    }
    if isinstance(old, dict) and old.get("energy") is not None:
        profile["energy"] = old["energy"]  # coefficients a user added by hand stay
    if memory or any(isinstance(m, dict) and "peak_memory_mb" in m for m in measurements.values()):
        profile["memory"] = {
            "method": "peak resident memory of a fresh process that loads the model and runs "
            f"it {_MEMORY_RUNS} times at batch 1, minus the same process without the model",
            "unit": "MB",
        }

    def save() -> None:
        # Atomic (a temporary file renamed over --out): an interrupted run leaves the last
        # whole profile, never half of one, so running again resumes it.
        try:
            write_json(out, profile)
        except OSError as exc:
            raise PlanError(
                f"cannot write --out {out}: {exc.strerror or exc}; give another --out"
            ) from None

    try:
        _time_entries(plan, entries, measurements, profile["anchors"], threads, max_seconds,
                      progress, save)  # fmt: skip
        if memory:
            _measure_memory(plan, entries, measurements, threads, memory_progress, save)
    except BaseException:
        save()  # keep what was timed, whatever stopped us
        raise
    profile["complete"] = True
    profile["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    save()
    return profile


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file, however they are spelled (links, ``..``, case)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return a.resolve() == b.resolve()


def _earlier_profile(out: Path) -> dict[str, Any] | None:
    """The profile at ``out`` that this run resumes, or None when there is no file there.

    Anything else at ``out`` is refused before a byte is written: a file that is not a profile
    (a README, the plan, unrelated JSON) is not ours to replace, and a damaged profile is
    evidence the user may want to keep."""
    try:
        raw = out.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:  # a folder, no permission
        raise PlanError(
            f"cannot read --out {out}: {exc.strerror or exc}; give another --out"
        ) from None
    try:
        old = json.loads(raw)
    except ValueError as exc:  # also UnicodeDecodeError: a zip, an image
        # A profile names its format in its first line or two: this one was cut short.
        if PROFILE_FORMAT.encode() in raw[:200]:
            where = f" at line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
            raise PlanError(
                f"--out {out} is a damaged profile (invalid JSON{where}, as when a copy stops "
                "short): its measurements cannot be read back, and nothing was written; "
                f"move {out} away, or give another --out, and run again to time the plan afresh"
            ) from None
        old = None
    if not isinstance(old, dict) or old.get("format") != PROFILE_FORMAT:
        raise PlanError(
            f"--out {out} exists and is not a profile written by edgenas-device; "
            f"give another --out, or move {out} away"
        )
    return old


#: Every this many lone operators is timed a second time after the first pass; the spread of
#: the two tells the predictor how far to trust single table entries.
REPEAT_EVERY = 20


def _time(data: bytes, kind: str, threads: int, max_seconds: float) -> LatencyMeasurement:
    # Whole networks calibrate the predictor and need steady medians; the thousands of lone
    # operators get a shorter timing each.
    network = kind == "network"
    return measure_onnx_latency(
        data,
        threads=threads,
        warmup=5 if network else 3,
        min_runs=20 if network else 10,
        max_runs=2000,
        min_seconds=0.3 if network else 0.04,
        max_seconds=max_seconds,
        stable_within=0.01 if network else 0.02,
    )


#: One model is timed again every this many entries; a machine's speed drifts (thermal
#: throttling, a busy neighbour) and these timings let the predictor take the drift out.
ANCHOR_EVERY = 100


def _time_entries(
    plan: Path,
    entries: list[PlanEntry],
    measurements: dict[str, Any],
    anchors: list[dict[str, Any]],
    threads: int,
    max_seconds: float,
    progress: Callable[[int, int, PlanEntry, float], None] | None,
    save: Callable[[], None],
) -> None:
    """Time every entry not yet measured, then every REPEAT_EVERY-th operator again. Each
    timing records the index of the latest anchor timing (``anchor``/``repeat_anchor``)."""
    repeats = [e for e in entries if e.kind != "network"][::REPEAT_EVERY]
    total = len(entries) + len(repeats)
    anchor = next((e for e in entries if e.kind == "network"), entries[0] if entries else None)
    todo = [(i, e, False) for i, e in enumerate(entries) if e.key not in measurements]
    todo += [(len(entries) + j, e, True) for j, e in enumerate(repeats)
             if "repeat_ms" not in measurements.get(e.key, {})]  # fmt: skip
    last_write = time.monotonic()
    with zipfile.ZipFile(plan) as z:
        for n, (i, entry, repeat) in enumerate(todo):
            if anchor is not None and n % ANCHOR_EVERY == 0:
                a = _time(z.read(anchor.file), anchor.kind, threads, max_seconds)
                anchors.append({"key": anchor.key, "median_ms": round(a.median_ms, 5)})
            m = _time(z.read(entry.file), entry.kind, threads, max_seconds)
            if repeat:
                measurements[entry.key]["repeat_ms"] = round(m.median_ms, 5)
                measurements[entry.key]["repeat_anchor"] = len(anchors) - 1
            else:
                measurements[entry.key] = {
                    "kind": entry.kind,
                    "median_ms": round(m.median_ms, 5),
                    "iqr_ms": round(m.spread_ms, 5),
                    "runs": m.runs,
                    "anchor": len(anchors) - 1,
                }
            if progress:
                progress(i + 1, total, entry, m.median_ms)
            if time.monotonic() - last_write > 1.0:
                save()
                last_write = time.monotonic()


_MEMORY_RUNS = 3


def _measure_memory(
    plan: Path,
    entries: list[PlanEntry],
    measurements: dict[str, Any],
    threads: int,
    progress: Callable[[int, int, PlanEntry, float], None] | None,
    save: Callable[[], None],
) -> None:
    networks = [e for e in entries if e.kind == "network"]
    baselines: dict[tuple[InputSpec, ...], float] = {}  # one per input shape in this run
    with zipfile.ZipFile(plan) as z:
        for i, entry in enumerate(networks):
            m = measurements.get(entry.key)
            if not isinstance(m, dict) or "peak_memory_mb" in m:
                continue
            try:
                peak = measure_onnx_memory(
                    z.read(entry.file), threads=threads, runs=_MEMORY_RUNS, baseline_mb=baselines
                )
            except MemoryMeasurementError as exc:
                raise PlanError(f"measuring the peak memory of {entry.key}: {exc}") from None
            m["peak_memory_mb"] = round(peak.peak_mb, 3)
            save()  # each measurement takes a process or more: keep every one
            if progress:
                progress(i + 1, len(networks), entry, peak.peak_mb)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="edgenas-device",
        description="Time the models of an edgenas plan on this device, and measure the peak "
        "memory of its reference networks (needs only onnxruntime and numpy). Progress is saved "
        "as it goes: run the same command again to resume.",
    )
    parser.add_argument("plan", type=Path, help="plan.zip written by `edgenas profile plan`")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads (default 1)")
    parser.add_argument(
        "--out", type=Path, required=True, help="profile to write, such as pi4.json"
    )
    parser.add_argument("--name", help="device name to record (default: the host name)")
    parser.add_argument("--max-seconds", type=float, default=2.0,
                        help="timing budget per model (default 2)")  # fmt: skip
    parser.add_argument(
        "--no-memory",
        action="store_true",
        help="skip measuring the peak memory of the reference networks (one fresh process "
        "each, a few seconds per network); run again without it to add them later",
    )
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be at least 1")

    timing, measuring = TimeLeft(), TimeLeft()

    def report(done: int, total: int, entry: PlanEntry, ms: float) -> None:
        left = timing.text(done, total)
        if done == total:
            measuring.restart()  # peak memory is measured once the timing is over
        print(f"[{done}/{total}] {entry.key}: {ms:.3f} ms" + (f" · {left}" if left else ""),
              file=sys.stderr, flush=True)  # fmt: skip

    def report_memory(done: int, total: int, entry: PlanEntry, mb: float) -> None:
        left = measuring.text(done, total)
        print(f"[memory {done}/{total}] {entry.key}: peak {mb:.1f} MB"
              + (f" · {left}" if left else ""), file=sys.stderr, flush=True)  # fmt: skip

    try:
        profile = profile_plan(args.plan, args.out, threads=args.threads, name=args.name,
                               max_seconds=args.max_seconds, progress=report,
                               memory=not args.no_memory,
                               memory_progress=report_memory)  # fmt: skip
    except PlanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: progress is in {args.out}; run the same command to resume",
              file=sys.stderr)  # fmt: skip
        return 130
    measured = sum("peak_memory_mb" in m for m in profile["measurements"].values())
    memory = f", peak memory of {measured} network(s)" if measured else ""
    print(f"{len(profile['measurements'])} models timed{memory} → {args.out}", file=sys.stderr)
    return 0
