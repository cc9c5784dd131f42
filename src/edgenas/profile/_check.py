"""How well a profile predicts this machine: predictor against two references, measured end to end."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgenas.arch import Genotype, build_model, export_onnx
from edgenas.cost import LatencyPredictor, analytic_costs
from edgenas.device import measure_onnx_latency
from edgenas.errors import ConfigError
from edgenas.space import SearchSpace

__all__ = ["check_profile", "load_profile", "prediction_metrics"]


def load_profile(path: Path) -> dict[str, Any]:
    """A profile written by ``edgenas-device``, with its required fields checked."""
    try:
        profile = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read the profile {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(
            f"{path} is not valid JSON ({exc}); it may be truncated: run edgenas-device again "
            "with the same arguments to finish it"
        ) from None
    if not isinstance(profile, dict) or profile.get("format") != "edgenas-profile":
        raise ConfigError(f"{path} is not an edgenas profile (written by edgenas-device)")
    missing = [k for k in ("version", "threads", "runtime", "plan", "measurements")
               if k not in profile]  # fmt: skip
    if missing:
        raise ConfigError(f"profile {path} lacks {', '.join(missing)}")
    for key, m in profile["measurements"].items():
        if (
            not isinstance(m, dict)
            or not isinstance(m.get("median_ms"), (int, float))
            or (m["median_ms"] <= 0)
        ):
            raise ConfigError(
                f"profile {path}: the measurement of {key!r} is not a positive median_ms"
            )
    return profile


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x))
    return ranks


def prediction_metrics(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
    """Share within ±5% and ±10%, mean absolute percentage error, Spearman rank correlation."""
    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    rel = np.abs(p - m) / m
    rp, rm = _ranks(p), _ranks(m)
    spearman = float(np.corrcoef(rp, rm)[0, 1]) if len(p) > 1 else float("nan")
    return {
        "within_5": float(np.mean(rel <= 0.05)),
        "within_10": float(np.mean(rel <= 0.10)),
        "mape": float(np.mean(rel) * 100),
        "spearman": spearman,
    }


def check_profile(
    profile: dict[str, Any],
    space: SearchSpace,
    n: int = 100,
    *,
    seed: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Measure ``n`` random architectures here and compare three predictions with them."""
    in_channels = int(profile["plan"].get("in_channels") or 3)
    num_classes = int(profile["plan"].get("num_classes") or 10)
    threads = int(profile["threads"])
    predictor = LatencyPredictor(profile, in_channels, num_classes)
    # FLOPs-proportional reference: one ms-per-MAC factor fitted on the reference networks.
    refs = predictor.references
    macs = np.array([analytic_costs(g, in_channels, num_classes).macs for g in refs])
    lat = np.array(list(refs.values()))
    per_mac = float(macs @ lat / (macs @ macs)) if len(refs) else 0.0
    rng = np.random.default_rng(seed)
    genotypes: list[Genotype] = [space.sample(rng) for _ in range(n)]
    measured, pred, flops, block_sum, coverage = [], [], [], [], []
    for i, g in enumerate(genotypes):
        model = build_model(g, in_channels, num_classes)
        measured.append(
            measure_onnx_latency(export_onnx(model), threads=threads, min_runs=20,
                                 min_seconds=0.2, stable_within=0.01, max_seconds=3.0).median_ms
        )  # fmt: skip
        pred.append(predictor.predict(g)[0])
        flops.append(per_mac * analytic_costs(g, in_channels, num_classes).macs)
        block_sum.append(predictor.block_sum(g))
        coverage.append(predictor.coverage(g))
        if progress:
            progress(i + 1, n)
    return {
        "n": n,
        "threads": threads,
        "coverage": float(np.mean(coverage)),
        "predictor": prediction_metrics(pred, measured),
        "flops": prediction_metrics(flops, measured),
        "block_sum": prediction_metrics(block_sum, measured),
    }
