"""JSON files the project keeps beside a study or a profile: read leniently, written atomically.

Standard library only, so the device half of profiling can use it without PyTorch.
"""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["json_default", "read_json", "replacing", "write_bytes", "write_json", "write_text"]


def read_json(path: Path) -> Any | None:
    """The file's content, or None when it is missing or not valid JSON (such as a file cut
    short by a crash); callers that must report a damaged file read it themselves."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write the whole file to; renamed over ``path`` when
    the block ends, removed if it raises. A crash at any moment leaves either the old file or
    the new one, never half of one (every file edgenas writes goes through here).

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "model.pt"
        >>> with replacing(target) as tmp:
        ...     _ = tmp.write_bytes(b"weights")
        >>> target.read_bytes()
        b'weights'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # One temporary name per process and thread: two searches on one run directory may write
    # at once. Hidden, so that a listing of the directory never shows it.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        yield tmp
        with tmp.open("rb+") as written:  # on disk before the rename, even if power fails
            os.fsync(written.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see `replacing`)."""
    with replacing(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see `replacing`)."""
    with replacing(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(
    path: Path, payload: Any, *, indent: int | None = 1, default: Callable[[Any], Any] | None = None
) -> None:
    """Write ``payload`` as JSON to ``path`` atomically (see `replacing`)."""
    write_text(path, json.dumps(payload, indent=indent, allow_nan=False, default=default))


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
