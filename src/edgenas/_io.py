"""JSON files the project keeps beside a study or a profile: read leniently, written atomically.

Standard library only, so the device half of profiling can use it without PyTorch.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["json_default", "read_json", "write_json"]


def read_json(path: Path) -> Any | None:
    """The file's content, or None when it is missing or not valid JSON (such as a file cut
    short by a crash); callers that must report a damaged file read it themselves."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def write_json(
    path: Path, payload: Any, *, indent: int | None = 1, default: Callable[[Any], Any] | None = None
) -> None:
    """Write through a temporary file and rename it over ``path``, so that a crash at any moment
    leaves either the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # One temporary name per process: two searches on one run directory may write at once.
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=indent, allow_nan=False, default=default))
    os.replace(tmp, path)


def json_default(value: Any) -> Any:
    """The ``default`` of `write_json` for numbers :mod:`json` does not know: NumPy scalars
    become Python numbers, a non-finite float becomes null.

    Example:
        >>> import numpy as np
        >>> json_default(np.float32(0.5)), json_default(np.int64(3))
        (0.5, 3)
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None
    # NumPy registers its scalar types with the numbers ABCs: no NumPy import needed here.
    if isinstance(value, (numbers.Integral, numbers.Real)) and hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
