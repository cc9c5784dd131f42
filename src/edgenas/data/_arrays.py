"""Images and labels given from Python (arrays, or a torch ``Dataset`` of (image, label)
pairs), saved once as an array folder that every process maps, and read back as a source.

An array folder holds ``images.npy`` (uint8 ``(N, H, W)`` or ``(N, H, W, 3)``), ``labels.npy``
(int64 class indices) and ``edgenas-arrays.json`` (class names, a content hash). It is named
by that hash, so the same data given again (to resume a search) finds the folder it wrote.
The worker processes of a search, Ray actors and ``edgenas finalize`` open it by its path, as
they open a folder of image files, and map the images rather than copy them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgenas.data._sources import ArrayImages, Source
from edgenas.data._transforms import FILE_AUGMENT
from edgenas.errors import DataError

__all__ = ["ARRAYS_META", "is_array_folder", "open_array_folder", "save_arrays"]

ARRAYS_META = "edgenas-arrays.json"
_FORMAT = "edgenas-arrays-v1"
# Images hashed and written per step: bounded memory however many there are.
_CHUNK = 1024


def save_arrays(
    data: Any,
    parent: Path,
    *,
    class_names: Sequence[str] | None = None,
    name: str | None = None,
) -> Path:
    """Save images and labels as an array folder in ``parent``; return its path.

    Args:
        data: ``(images, labels)``: images a numpy array or torch tensor, uint8 (or floats in
            [0, 1]), shaped ``(N, H, W)``, ``(N, H, W, C)`` or ``(N, C, H, W)`` with C 1 or 3;
            labels N class indices or class names. Or a torch ``Dataset`` whose items are
            ``(image, label)``: an image as a PIL image, an array or a tensor (``(C, H, W)``
            floats in [0, 1] as torchvision's ``ToTensor`` gives), all of one size.
        parent: where the folder is made (a search uses its run directory's ``cache/``).
        class_names: the name of each class index; default: the sorted label names, or
            ``"0"``, ``"1"``, ... for indices.
        name: what the data is called in messages and the run directory's name; default
            ``arrays``, or the Dataset's class name.

    Raises:
        DataError: the images or labels are not of a shape or type described above.
    """
    if _is_pair(data):
        images, labels = data
        return _save_pair(images, labels, parent, class_names, name or "arrays")
    if (
        hasattr(data, "__getitem__")
        and hasattr(data, "__len__")
        and not isinstance(data, (str, bytes, os.PathLike))
    ):
        return _save_dataset(data, parent, class_names, name or type(data).__name__)
    raise DataError(
        f"data of type {type(data).__name__} is neither a path nor images and labels; give a "
        "folder, a CSV manifest or a built-in name, a pair (images, labels) of arrays, or a "
        "torch Dataset of (image, label) pairs"
    )


def is_array_folder(path: Path) -> bool:
    """Whether ``path`` is a folder that `save_arrays` wrote."""
    return (path / ARRAYS_META).is_file()


def open_array_folder(path: Path) -> Source:
    """The source an array folder holds; its images are mapped, not read into memory."""
    path = path.absolute()
    origin = f"array folder {path}"
    try:
        meta = json.loads((path / ARRAYS_META).read_text(encoding="utf-8"))
        images = np.load(path / "images.npy", mmap_mode="r")
        labels = np.load(path / "labels.npy")
    except (OSError, ValueError) as exc:
        raise DataError(
            f"{origin} cannot be read ({exc}); delete it and give the arrays again"
        ) from exc
    if meta.get("format") != _FORMAT or len(images) != len(labels):
        raise DataError(
            f"{origin} is not a complete array folder; delete it and give the arrays again"
        )
    class_names = [str(c) for c in meta["class_names"]]
    return Source(
        name=str(meta.get("name") or "arrays"),
        origin=origin,
        class_names=class_names,
        labels=labels.astype(np.int64),
        groups=None,
        pixels=ArrayImages(images, f"arrays-{meta['sha256']}"),
        channels=3 if images.ndim == 4 else 1,
        # Like a user's folder: nothing is known of which symmetries keep the class.
        augment=FILE_AUGMENT,
    )


def _is_pair(data: Any) -> bool:
    return isinstance(data, (tuple, list)) and len(data) == 2 and hasattr(data[0], "shape")


def _save_pair(
    images: Any,
    labels: Any,
    parent: Path,
    class_names: Sequence[str] | None,
    name: str,
) -> Path:
    array = _as_uint8_nhwc(_to_numpy(images), "images")
    codes, names = _encode_labels(labels, len(array), class_names)
    sha = hashlib.sha256()
    _hash_header(sha, array.shape, codes, names)
    for start in range(0, len(array), _CHUNK):
        sha.update(np.ascontiguousarray(array[start : start + _CHUNK]).tobytes())
    folder = parent / f"arrays-{sha.hexdigest()[:16]}"
    if is_array_folder(folder):
        return folder  # the same data, saved before (a resumed search)

    def write(images_out: np.ndarray) -> None:
        for start in range(0, len(array), _CHUNK):
            images_out[start : start + _CHUNK] = array[start : start + _CHUNK]

    return _write_folder(folder, array.shape, write, codes, names, name, sha.hexdigest())


def _save_dataset(dataset: Any, parent: Path, class_names: Sequence[str] | None, name: str) -> Path:
    count = len(dataset)
    if count == 0:
        raise DataError(f"the Dataset {name} is empty; it needs (image, label) pairs")
    first = _item(dataset, 0)
    shape = (count, *first.shape)
    parent.mkdir(parents=True, exist_ok=True)
    partial = parent / f"arrays-{os.getpid()}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    raw_labels: list[Any] = []
    try:
        images_out = np.lib.format.open_memmap(
            partial / "images.npy", mode="w+", dtype=np.uint8, shape=shape
        )
        for index in range(count):
            image = first if index == 0 else _item(dataset, index)
            if image.shape != first.shape:
                raise DataError(
                    f"the images of the Dataset {name} differ in size: item 0 is "
                    f"{_size(first.shape)}, item {index} is {_size(image.shape)}; resize them "
                    f"in the Dataset (its transform) or save them as a folder of files"
                )
            images_out[index] = image
            raw_labels.append(_label(dataset, index))
        codes, names = _encode_labels(raw_labels, count, class_names)
        sha = hashlib.sha256()
        _hash_header(sha, shape, codes, names)
        for start in range(0, count, _CHUNK):
            sha.update(np.ascontiguousarray(images_out[start : start + _CHUNK]).tobytes())
        images_out.flush()
        del images_out
        folder = parent / f"arrays-{sha.hexdigest()[:16]}"
        if is_array_folder(folder):
            return folder
        np.save(partial / "labels.npy", codes)
        _write_meta(partial, names, name, sha.hexdigest(), shape)
        os.replace(partial, folder)
        return folder
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _write_folder(
    folder: Path,
    shape: tuple[int, ...],
    write: Any,
    codes: np.ndarray,
    names: list[str],
    name: str,
    sha: str,
) -> Path:
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = folder.with_name(f"{folder.name}.{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        images_out = np.lib.format.open_memmap(
            partial / "images.npy", mode="w+", dtype=np.uint8, shape=shape
        )
        write(images_out)
        images_out.flush()
        del images_out
        np.save(partial / "labels.npy", codes)
        _write_meta(partial, names, name, sha, shape)
        # Renamed when whole: a folder under the real name is always complete.
        os.replace(partial, folder)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return folder


def _write_meta(
    folder: Path, names: list[str], name: str, sha: str, shape: tuple[int, ...]
) -> None:
    meta = {
        "format": _FORMAT,
        "name": name,
        "class_names": names,
        "images": shape[0],
        "shape": list(shape[1:]),
        "sha256": sha,
    }
    (folder / ARRAYS_META).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")


def _hash_header(sha: Any, shape: tuple[int, ...], codes: np.ndarray, names: list[str]) -> None:
    sha.update(json.dumps([_FORMAT, list(shape), names]).encode())
    sha.update(codes.astype("<i8").tobytes())


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, on any device
        return value.detach().cpu().numpy()
    if hasattr(value, "convert") and hasattr(value, "mode"):  # a PIL image
        return np.asarray(value.convert("RGB" if value.mode not in ("L", "1") else "L"))
    return np.asarray(value)


def _as_uint8_nhwc(array: np.ndarray, what: str, *, single: bool = False) -> np.ndarray:
    """uint8 ``(N, H, W)`` or ``(N, H, W, 3)`` (``(H, W)`` / ``(H, W, 3)`` when ``single``)."""
    ndim = array.ndim - (0 if single else 1)
    if ndim not in (2, 3) or (not single and array.shape[0] == 0):
        expected = (
            "(H, W), (H, W, C) or (C, H, W)"
            if single
            else "(N, H, W), (N, H, W, C) or (N, C, H, W)"
        )
        raise DataError(f"{what} must be shaped {expected} with C 1 or 3, got {array.shape}")
    if ndim == 3:
        first, last = array.shape[-3], array.shape[-1]
        if last not in (1, 3) and first in (1, 3):
            array = np.moveaxis(array, -3, -1)  # channels first, as torch holds images
        elif last not in (1, 3):
            raise DataError(
                f"{what} must have 1 or 3 channels, first or last, got shape {array.shape}"
            )
        if array.shape[-1] == 1:
            array = array[..., 0]
    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.floating):
        if array.size and (np.nanmin(array) < 0 or np.nanmax(array) > 1 or np.isnan(array).any()):
            raise DataError(
                f"{what} are floats outside [0, 1]; give uint8 pixels (0-255) or floats in [0, 1]"
            )
        return np.rint(array * 255).astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer) and (
        not array.size or (array.min() >= 0 and array.max() <= 255)
    ):
        return array.astype(np.uint8)
    raise DataError(f"{what} must be uint8 pixels or floats in [0, 1], got dtype {array.dtype}")


def _item(dataset: Any, index: int) -> np.ndarray:
    item = dataset[index]
    if not isinstance(item, (tuple, list)) or len(item) < 2:
        raise DataError(
            f"item {index} of the Dataset is a {type(item).__name__}, not an (image, label) pair"
        )
    return _as_uint8_nhwc(_to_numpy(item[0]), f"the image of item {index}", single=True)


def _label(dataset: Any, index: int) -> Any:
    label = dataset[index][1]
    return label.item() if hasattr(label, "item") else label


def _encode_labels(
    labels: Any, count: int, class_names: Sequence[str] | None
) -> tuple[np.ndarray, list[str]]:
    values = _to_numpy(labels) if not isinstance(labels, list) else np.asarray(labels)
    if values.shape != (count,):
        raise DataError(
            f"labels must be one per image: {count} images, labels of shape {values.shape}"
        )
    if np.issubdtype(values.dtype, np.integer):
        codes = values.astype(np.int64)
        if codes.min() < 0:
            raise DataError(f"labels must be class indices >= 0, found {codes.min()}")
        names = (
            [str(c) for c in class_names]
            if class_names is not None
            else [str(c) for c in range(int(codes.max()) + 1)]
        )
        if codes.max() >= len(names):
            raise DataError(
                f"label {codes.max()} has no class name: class_names names {len(names)} classes"
            )
    else:
        text = values.astype(str)
        names = sorted(set(text.tolist())) if class_names is None else [str(c) for c in class_names]
        unknown = sorted(set(text.tolist()) - set(names))
        if unknown:
            raise DataError(f"labels {unknown[:5]} are not in class_names {names}")
        index = {n: i for i, n in enumerate(names)}
        codes = np.array([index[t] for t in text.tolist()], dtype=np.int64)
    if len(names) < 2:
        raise DataError(f"the labels name a single class ({names}); a classifier needs two or more")
    return codes, names


def _size(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape)
