"""The data of a run, loaded again with the run's split, for finalize and for the baselines
of runs that did not record them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgenas.errors import ConfigError, EdgenasError
from edgenas.study import BestCheck, RunDir

__all__ = ["load_run_data"]


def load_run_data(run_dir: Path, spec: dict[str, Any], best: BestCheck | None) -> Any:
    """The run's data with the run's split, checked against what the run recorded."""
    from edgenas.data import load_dataset

    if "data" not in spec or "seed" not in spec:
        raise ConfigError(f"{run_dir} has no usable spec.json: the data split cannot be rebuilt")
    cache = RunDir(run_dir).cache
    try:
        data = load_dataset(
            spec["data"],
            cache_dir=cache if cache.is_dir() else None,
            seed=int(spec["seed"]),
            val_fraction=float(spec.get("val_fraction", 0.15)),
            holdout_fraction=float(spec.get("holdout_fraction", 0.15)),
            # Trained as the search trained: runs from before these were recorded used the
            # data's default augmentation and squashed their images.
            augment=spec.get("augment"),
            resize=str(spec.get("resize", "squash")),
        )
    except EdgenasError as exc:
        raise ConfigError(
            f"the run's data {spec['data']!r} cannot be loaded again ({exc}); run finalize from "
            "the folder the search ran in"
        ) from exc
    fingerprint = spec.get("data_fingerprint")
    if fingerprint and data.fingerprint() != fingerprint:
        raise ConfigError(
            f"the data at {spec['data']!r} is not the data the run searched on (fingerprint "
            f"{data.fingerprint()}, the run recorded {fingerprint}): the split cannot be rebuilt"
        )
    if best:
        recorded = (best.validation_images, best.holdout_images)
        now = (len(data.splits.val), len(data.splits.holdout))
        if None not in recorded and tuple(recorded) != now:
            raise ConfigError(
                f"the rebuilt split has {now[0]} validation and {now[1]} holdout images, the run "
                f"had {recorded[0]} and {recorded[1]}: it was split with other fractions, and "
                "the split cannot be reproduced"
            )
    return data
