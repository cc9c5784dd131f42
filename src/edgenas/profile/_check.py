"""How well a profile predicts this machine: predictor against two references, measured end to end."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgenas.arch import Genotype, build_model, export_onnx
from edgenas.cost import LatencyPredictor, analytic_costs
from edgenas.device import measure_onnx_latency
from edgenas.errors import ConfigError
from edgenas.space import SearchSpace

log = logging.getLogger("edgenas")

__all__ = ["check_profile", "load_profile", "prediction_metrics"]


def load_profile(path: Path, *, threads: int | None = None) -> dict[str, Any]:
    """A profile written by ``edgenas-device``, with its required fields checked.

    Logs a warning when the profile was timed with another ONNX Runtime version than the one
    installed here, or (with ``threads``) with another thread count than the one in use:
    latencies shift with either."""
    try:
        profile = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read the profile {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(
            f"{path} is not valid JSON ({exc}): the profile is damaged (cut short by a copy, "
            "perhaps). edgenas-device writes profiles whole, so its own copy on the device is "
            "sound: copy it again, or move this file away and time the plan again"
        ) from None
    if not isinstance(profile, dict) or profile.get("format") != "edgenas-profile":
        raise ConfigError(f"{path} is not an edgenas profile (written by edgenas-device)")
    missing = [k for k in ("version", "threads", "runtime", "plan", "measurements")
               if k not in profile]  # fmt: skip
    if missing:
        raise ConfigError(f"profile {path} lacks {', '.join(missing)}")
    for key, m in profile["measurements"].items():
        other = [
            u for u in ("median_s", "median_us", "median_ns") if isinstance(m, dict) and u in m
        ]
        if other:
            raise ConfigError(
                f"profile {path}: the measurement of {key!r} gives {other[0]}; profiles store "
                "milliseconds as median_ms (convert the values, or time the plan again)"
            )
        if (
            not isinstance(m, dict)
            or not isinstance(m.get("median_ms"), (int, float))
            or (m["median_ms"] <= 0)
        ):
            raise ConfigError(
                f"profile {path}: the measurement of {key!r} is not a positive median_ms"
            )
    anchors = profile.get("anchors", [])
    if not isinstance(anchors, list) or not all(
        isinstance(a, dict) and isinstance(a.get("median_ms"), (int, float)) and a["median_ms"] > 0
        for a in anchors
    ):
        raise ConfigError(
            f"profile {path}: anchors must be a list of timings with a positive median_ms"
        )
    if not isinstance(profile["threads"], int) or profile["threads"] < 1:
        raise ConfigError(f"profile {path}: threads must be a positive integer")
    if profile.get("version") not in (1,) or not isinstance(profile["measurements"], dict):
        raise ConfigError(
            f"profile {path} has version {profile.get('version')!r}; this edgenas reads "
            "version 1: time the plan again with this version's edgenas-device"
        )
    _warn_if_different(path, profile, threads)
    return profile


def _warn_if_different(path: Path, profile: dict[str, Any], threads: int | None) -> None:
    import onnxruntime

    version = profile.get("runtime", {}).get("version")
    if version and version != onnxruntime.__version__:
        log.warning(
            "profile %s was timed with ONNX Runtime %s, this machine has %s: predictions may be "
            "off by what changed between versions; time the plan again to be sure",
            path, version, onnxruntime.__version__,
        )  # fmt: skip
    if threads is not None and threads != profile["threads"]:
        log.warning(
            "profile %s was timed with %d thread(s), %d are in use here: latencies differ "
            "with the thread count; time the plan with --threads %d",
            path, profile["threads"], threads, threads,
        )  # fmt: skip


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x))
    return ranks


def prediction_metrics(
    predicted: Sequence[float] | np.ndarray, measured: Sequence[float] | np.ndarray
) -> dict[str, float]:
    """Share within ±5% and ±10%, mean absolute percentage error, Spearman rank correlation,
    and ``log_ratio_sd``, the standard deviation of log(predicted / measured): the size of a
    log-normal error that matches the predictor's (``edgenas bench nb201 --latency-error``)."""
    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    rel = np.abs(p - m) / m
    rp, rm = _ranks(p), _ranks(m)
    several = len(p) > 1
    return {
        "within_5": float(np.mean(rel <= 0.05)),
        "within_10": float(np.mean(rel <= 0.10)),
        "mape": float(np.mean(rel) * 100),
        "spearman": float(np.corrcoef(rp, rm)[0, 1]) if several else float("nan"),
        "log_ratio_sd": float(np.std(np.log(p / m), ddof=1)) if several else float("nan"),
    }


def ms_per_mac(macs: Sequence[int], latency_ms: Sequence[float]) -> float:
    """The least-squares factor of a FLOPs-proportional estimate (``latency ≈ factor · MACs``);
    computed in floating point, since squared MAC counts overflow 64-bit integers."""
    m = np.asarray(macs, dtype=float)
    return float(m @ np.asarray(latency_ms, dtype=float) / (m @ m)) if len(m) else 0.0


def check_profile(
    profile: dict[str, Any],
    space: SearchSpace,
    n: int = 100,
    *,
    seed: int = 1,
    rounds: int = 3,
    progress: Callable[[int, int], None] | None = None,
    repeats: int = 50,
) -> dict[str, Any]:
    """Measure ``n`` random architectures here and compare three predictions with them: the
    predictor, a FLOPs-proportional estimate (one ms-per-MAC factor fitted on the profile's
    reference networks) and the plain sum of the profile's operator latencies. The
    architectures are distinct and never one of the profile's reference networks.

    When the profile has anchor timings, the anchor model is timed here too (every 25
    architectures): ``speed_now_vs_profile`` says how much slower (>1) this machine runs now
    than while it was profiled, and ``at_profile_speed`` gives the same figures with each
    measurement divided by that speed at its moment — what the predictor can be asked for,
    since it predicts the machine as it was profiled.

    ``repeat`` holds the same figures for up to ``repeats`` (and at most ``n``) of the
    profile's own reference networks, timed here in the same passes, against their latency in
    the profile as the predictor reads it (the profile's drift divided out): what a predictor
    that knew every network's profiled latency exactly would score. It is the ceiling this
    machine's timing noise sets for any predictor."""
    if n < 1:
        raise ConfigError(f"the check needs at least 1 architecture to measure, not n={n}")
    in_channels = int(profile["plan"].get("in_channels") or 3)
    num_classes = int(profile["plan"].get("num_classes") or 10)
    threads = int(profile["threads"])
    predictor = LatencyPredictor(profile, in_channels, num_classes)
    # FLOPs-proportional reference: one ms-per-MAC factor fitted on the reference networks.
    refs = predictor.references
    per_mac = ms_per_mac(
        [analytic_costs(g, in_channels, num_classes).macs for g in refs], list(refs.values())
    )
    rng = np.random.default_rng(seed)
    # Distinct random architectures, none of them a reference network the predictor was
    # calibrated on (the check would then score the calibration itself).
    genotypes: list[Genotype] = []
    for _ in range(100 * n):
        if len(genotypes) == n:
            break
        g = space.sample(rng)
        if g not in refs and g not in genotypes:
            genotypes.append(g)
    if len(genotypes) < n:
        raise ConfigError(
            f"the space has fewer than {n} architectures besides the profile's reference "
            "networks; check fewer"
        )
    # The profile's own reference networks, timed again in the same passes.
    again = list(refs)[: max(0, min(repeats, n))]
    models = [export_onnx(build_model(g, in_channels, num_classes)) for g in genotypes + again]
    total = len(models)
    # The anchor model the device timed again and again while profiling: timed here too, it
    # tells how fast this machine runs now compared with then.
    anchor = _anchor_model(profile, in_channels, num_classes)
    anchor_times: list[float] = []
    # Each network is timed in `rounds` passes over all of them and the median pass is kept:
    # a slow spell of a shared machine then hits one pass of a network, not its result.
    times = np.zeros((rounds, total))
    speed = np.ones((rounds, total))
    for r in range(rounds):
        for i, model in enumerate(models):
            if anchor is not None and i % 25 == 0:
                anchor_times.append(_timing(anchor, threads))
            times[r, i] = _timing(model, threads)
            if anchor_times:
                speed[r, i] = anchor_times[-1]
            if progress:
                progress(r * total + i + 1, rounds * total)
    measured, measured_again = np.split(np.median(times, axis=0), [n])
    profiled_again = [refs[g] for g in again]
    pred = predictor.predict_many(genotypes)
    flops = [per_mac * analytic_costs(g, in_channels, num_classes).macs for g in genotypes]
    block_sum = [predictor.block_sum(g) for g in genotypes]
    coverage = [predictor.coverage(g) for g in genotypes]
    figures: dict[str, Any] = {}
    if anchor is not None:
        then = float(np.median([a["median_ms"] for a in profile["anchors"]]))
        # each timing divided by the machine's speed at that moment (relative to the profile)
        steady, steady_again = np.split(np.median(times / (speed / then), axis=0), [n])
        figures["speed_now_vs_profile"] = float(np.median(anchor_times) / then)
        figures["at_profile_speed"] = {
            "predictor": prediction_metrics(pred, steady),
            "flops": prediction_metrics(flops, steady),
            "block_sum": prediction_metrics(block_sum, steady),
        }
        if again:
            figures["at_profile_speed"]["repeat"] = {
                "n": len(again),
                **prediction_metrics(profiled_again, steady_again),
            }
    return {
        "n": n,
        "threads": threads,
        "references": len(refs),
        "calibration_residual": predictor.residual,
        "coverage": float(np.mean(coverage)),
        "predictor": prediction_metrics(pred, measured),
        "flops": prediction_metrics(flops, measured),
        "block_sum": prediction_metrics(block_sum, measured),
        **(
            {"repeat": {"n": len(again), **prediction_metrics(profiled_again, measured_again)}}
            if again
            else {}
        ),
        **figures,
    }


def _timing(model: bytes, threads: int) -> float:
    return measure_onnx_latency(model, threads=threads, min_runs=20, min_seconds=0.15,
                                stable_within=0.01, max_seconds=2.0).median_ms  # fmt: skip


def _anchor_model(profile: dict[str, Any], in_channels: int, num_classes: int) -> bytes | None:
    """The ONNX model of the profile's anchor (a reference network, rebuilt from its key)."""
    anchors = profile.get("anchors") or []
    key = anchors[0].get("key") if anchors and isinstance(anchors[0], dict) else None
    suffix = f"|in{in_channels}_n{num_classes}"
    if not isinstance(key, str) or not key.endswith(suffix) or len(anchors) < 3:
        return None
    genotype = Genotype.parse(key[: -len(suffix)])
    return export_onnx(build_model(genotype, in_channels, num_classes))
