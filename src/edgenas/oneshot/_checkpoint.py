"""``supernet.pt``: a supernet's weights, what it was built over, and how far its training got.

The file is a plain dictionary of tensors, numbers and strings (loadable with
``torch.load(..., weights_only=True)``), written atomically after every epoch, so a training that
is killed resumes from the last epoch, and a finished one is reused by other searches.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from edgenas.errors import ConfigError
from edgenas.oneshot._supernet import Supernet
from edgenas.space import StagedSpace, StageSpec

__all__ = ["FORMAT", "SupernetFile", "load_supernet", "read_checkpoint", "space_from_json",
           "space_to_json", "write_checkpoint"]  # fmt: skip

FORMAT = "edgenas-supernet"
VERSION = 1


def space_to_json(space: StagedSpace) -> dict[str, Any]:
    """The arguments that rebuild ``space`` (JSON-able)."""
    out: dict[str, Any] = {}
    for f in fields(space):
        if not f.init:
            continue
        value = getattr(space, f.name)
        if f.name == "stages":
            value = [[s.stride, list(s.widths), list(s.depths)] for s in value]
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def space_from_json(data: dict[str, Any]) -> StagedSpace:
    """The space :func:`space_to_json` described."""
    args: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    args["stages"] = tuple(StageSpec(int(s), tuple(w), tuple(d)) for s, w, d in data["stages"])
    return StagedSpace(**args)


@dataclass(frozen=True)
class SupernetFile:
    """What a ``supernet.pt`` holds besides the weights."""

    space: StagedSpace
    in_channels: int
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    data_fingerprint: str | None
    # The subnets the sandwich trained: its largest (the teacher) and its smallest.
    teacher: str
    smallest: str
    epochs: int  # planned
    epoch: int  # completed
    seconds: float  # of training, over every process that worked on it
    history: tuple[dict[str, float], ...]
    state: dict[str, Any]  # supernet, optimizer, scheduler, random state

    @property
    def complete(self) -> bool:
        return self.epoch >= self.epochs


def write_checkpoint(path: Path, meta: SupernetFile) -> None:
    """Write ``path`` atomically: a reader sees the old file or the new one, never half."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "space": space_to_json(meta.space),
        "in_channels": meta.in_channels,
        "num_classes": meta.num_classes,
        "mean": list(meta.mean),
        "std": list(meta.std),
        "data_fingerprint": meta.data_fingerprint,
        "teacher": meta.teacher,
        "smallest": meta.smallest,
        "epochs": meta.epochs,
        "epoch": meta.epoch,
        "seconds": meta.seconds,
        "history": [dict(h) for h in meta.history],
        "state": meta.state,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    torch.save(payload, partial)
    os.replace(partial, path)


def read_checkpoint(path: Path) -> SupernetFile:
    """Read a ``supernet.pt``.

    Raises:
        ConfigError: the file is missing, damaged or not a supernet.
    """
    if not path.is_file():
        raise ConfigError(f"supernet file {path} does not exist; give the supernet.pt of a run")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for damaged files
        raise ConfigError(
            f"supernet file {path} cannot be read ({type(exc).__name__}); it is damaged or not "
            f"a supernet.pt: delete it to train the supernet again"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ConfigError(f"{path} is not a supernet file written by edgenas")
    if payload.get("version") != VERSION:
        raise ConfigError(
            f"supernet file {path} has version {payload.get('version')}; this edgenas reads "
            f"version {VERSION}"
        )
    return SupernetFile(
        space=space_from_json(payload["space"]),
        in_channels=int(payload["in_channels"]),
        num_classes=int(payload["num_classes"]),
        mean=tuple(payload["mean"]),
        std=tuple(payload["std"]),
        data_fingerprint=payload["data_fingerprint"],
        teacher=str(payload["teacher"]),
        smallest=str(payload["smallest"]),
        epochs=int(payload["epochs"]),
        epoch=int(payload["epoch"]),
        seconds=float(payload["seconds"]),
        history=tuple(payload["history"]),
        state=payload["state"],
    )


def load_supernet(path: Path) -> tuple[Supernet, SupernetFile]:
    """The supernet a ``supernet.pt`` holds, with its weights, on the CPU in eval mode, and
    what the file says of it (whether its training finished is ``file.complete``).

    Raises:
        ConfigError: the file is missing, damaged or not a supernet.
    """
    saved = read_checkpoint(path)
    supernet = Supernet(saved.space, saved.in_channels, saved.num_classes, saved.mean, saved.std)
    supernet.load_state_dict(saved.state["supernet"])
    return supernet.eval(), saved
