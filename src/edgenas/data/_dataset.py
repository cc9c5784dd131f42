"""`ImageDataset`: labels, splits and decoded pixels of one data source, and `load_dataset`."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock

from edgenas.data._arrays import is_array_folder, open_array_folder
from edgenas.data._sources import (
    PixelSource,
    Source,
    open_source,
    quiet_large_images,
    unreadable_reason,
    worker_count,
)
from edgenas.data._split import Splits, check_fractions, stratified_split
from edgenas.data._transforms import parse_augment, parse_resize
from edgenas.errors import ConfigError, DataError

__all__ = ["ImageDataset", "load_dataset"]

_log = logging.getLogger("edgenas.data")

# Mean and std are measured at this side length: cheap, and close to the full-size statistics.
STATS_RESOLUTION = 32
# Bump when decoding changes (resampling, colour conversion), so older cache files are ignored.
_DECODE_VERSION = 2
# Images per decoding task: enough to make the thread pool's overhead negligible.
_CHUNK = 32


class ImageDataset:
    """A labelled image dataset with a fixed train / validation / holdout split.

    Pixels are decoded once per resolution into a uint8 tensor (made square as ``resize``
    says, with bilinear antialiased resizing): with a ``cache_dir``, a file there that every
    process maps and a resumed run reuses (see `images`); without one, in memory. Build one
    with `load_dataset`.

    Attributes:
        name: "elpv", "elpv4", "synthetic", the folder's name or the CSV manifest's stem.
        class_names: sorted class names; a label is an index into this list.
        labels: int64 ``(N,)``.
        groups: ``(N,)`` object array of group names (from a manifest's ``group`` column;
            ``""`` for none), or None. Images of one group are always in the same split.
        channels: 1 when every image is grayscale, else 3 (all images converted to RGB).
        augment: the augmentations training may use, named as in
            ``edgenas.data.AUGMENTATIONS`` and in that order (``()``: none).
        default_augment: the source's own: all of them for the built-in datasets, ``shift``,
            ``brightness`` and ``contrast`` for folders and manifests.
        resize: how an image of another aspect ratio becomes square: ``squash``, ``crop``
            or ``pad``.
        splits: indices of the train, validation and holdout images.
    """

    def __init__(
        self,
        source: Source,
        splits: Splits,
        *,
        cache_dir: Path | None = None,
        augment: str | Sequence[str] | None = None,
        resize: str = "pad",
    ) -> None:
        """Use `load_dataset` rather than this: ``source`` comes from a private module."""
        self.name: str = source.name
        self.class_names: list[str] = list(source.class_names)
        self.labels: np.ndarray = source.labels
        self.groups: np.ndarray | None = source.groups
        self.channels: int = source.channels
        self.default_augment: tuple[str, ...] = source.augment
        self.augment: tuple[str, ...] = (
            source.augment if augment is None else parse_augment(augment)
        )
        self.resize: str = parse_resize(resize)
        self.splits: Splits = splits
        self.cache_dir: Path | None = cache_dir
        self._origin = source.origin
        self._pixels: PixelSource = source.pixels
        self._decoded: dict[int, torch.Tensor] = {}
        self._stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None
        self._fingerprint = _fingerprint(source)
        self._cache_key = _digest(
            [
                f"decode-v{_DECODE_VERSION}",
                f"channels={self.channels}",
                f"resize={self.resize}",
                *source.pixels.cache_items(),
            ]
        )

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return (
            f"ImageDataset(name={self.name!r}, images={len(self)}, classes={self.class_names}, "
            f"channels={self.channels}, splits={self.splits!r})"
        )

    @property
    def num_classes(self) -> int:
        """Number of classes (``len(class_names)``)."""
        return len(self.class_names)

    @property
    def mean(self) -> tuple[float, ...]:
        """Per-channel mean of the training split's pixels in [0, 1], measured at 32×32."""
        return self._statistics()[0]

    @property
    def std(self) -> tuple[float, ...]:
        """Per-channel standard deviation of the training split's pixels in [0, 1], at 32×32."""
        return self._statistics()[1]

    def fingerprint(self) -> str:
        """A short hash of the source: file paths (as the source names them), sizes, labels,
        class names and groups. It does not depend on where the data is stored, so a moved
        copy matches; a resumed run compares it to make sure it uses the same data.
        """
        return self._fingerprint

    def images(self, resolution: int) -> torch.Tensor:
        """All images as a uint8 tensor ``(N, channels, resolution, resolution)``, dataset order.

        Decoded once per resolution. With a ``cache_dir`` the pixels go to a file there (an
        ``.npy`` array, named by a hash of the files' paths, sizes and modification times, the
        resize policy and the resolution) which every process on the machine maps instead of
        holding a copy: a search, its worker processes and Ray actors on the same node share
        one copy in the operating system's page cache, and the memory a process owns does not
        grow with the data. The file is written under a temporary name and renamed when
        complete, so a decode that is killed leaves nothing that is ever used. Without a
        ``cache_dir`` the pixels are decoded into memory. The same tensor is returned each
        time: do not modify it in place (writes to a mapped one would stay in this process).

        Raises:
            ConfigError: ``resolution`` is not a positive integer.
            DataError: an image that was readable at load time no longer is, or the decoded
                images would not fit on the cache's disk (or, without a cache, in memory).
        """
        if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
            raise ConfigError(f"resolution must be an integer >= 1, got {resolution!r}")
        tensor = self._decoded.get(resolution)
        if tensor is None:
            tensor = self._in_memory(resolution) if self.cache_dir is None else None
            if tensor is None:
                tensor = self._mapped(resolution)
            self._decoded[resolution] = tensor
        return tensor

    def cache_file(self, resolution: int) -> Path | None:
        """Where `images` caches this resolution on disk (None without a ``cache_dir``)."""
        if self.cache_dir is None:
            return None
        safe_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.name)[:40] or "data"
        return self.cache_dir / f"{safe_name}-{self._cache_key}-{resolution}px.npy"

    def decoded_bytes(self, resolution: int) -> int:
        """The size of all images decoded at ``resolution``, in bytes."""
        return len(self) * self.channels * resolution * resolution

    def __getstate__(self) -> dict[str, object]:
        # Decoded pixels never travel with a pickled dataset (to a process or a Ray actor):
        # they are large, and the receiver maps the cache file or decodes again.
        state = dict(self.__dict__)
        state["_decoded"] = {}
        return state

    def _in_memory(self, resolution: int) -> torch.Tensor:
        needed = self.decoded_bytes(resolution)
        available = _available_memory()
        if available is not None and needed > available:
            raise DataError(
                f"decoding the {len(self)} images of {self._origin} at {resolution}px needs "
                f"{_gb(needed)} of memory and {_gb(available)} is available; give a cache "
                f"directory (cache_dir=; a search uses its run directory's cache/) to keep "
                f"them on disk, mapped, or choose a smaller resolution"
            )
        out = np.empty((len(self), self.channels, resolution, resolution), dtype=np.uint8)
        self._decode_into(out, resolution)
        return torch.from_numpy(out)

    def _mapped(self, resolution: int) -> torch.Tensor:
        path = self.cache_file(resolution)
        assert path is not None
        shape = (len(self), self.channels, resolution, resolution)
        pixels = _open_cache(path, shape)
        if pixels is None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                lock = FileLock(f"{path}.lock")
                lock.acquire()
            except OSError as exc:
                # The cache only saves memory and time; decode in memory instead.
                _log.warning(
                    "cannot write the image cache in %s (%s); decoding into memory",
                    path.parent,
                    exc,
                )
                return self._in_memory(resolution)
            try:
                # Another process may have written it while this one waited for the lock.
                pixels = _open_cache(path, shape)
                if pixels is None:
                    self._build_cache(path, shape, resolution)
                    pixels = _open_cache(path, shape)
                    if pixels is None:
                        raise DataError(
                            f"the image cache {path} could not be read back after writing it"
                        )
                    return torch.from_numpy(pixels)
            finally:
                lock.release()
        _log.info("mapped %s images at %dpx from %s", self.name, resolution, path)
        return torch.from_numpy(pixels)

    def _build_cache(self, path: Path, shape: tuple[int, int, int, int], resolution: int) -> None:
        """Decode into ``path`` (under the caller's lock): a temporary file, renamed when whole."""
        # Partial files of this cache are left by a process killed while decoding (a live one
        # would hold the lock): never used, removed here.
        for stale in path.parent.glob(f"{path.name}.*.partial"):
            _log.warning("removed %s, left by a decode that did not finish", stale)
            stale.unlink(missing_ok=True)
        needed = self.decoded_bytes(resolution) + 4096
        free = shutil.disk_usage(path.parent).free
        if needed > free:
            raise DataError(
                f"decoding the {len(self)} images of {self._origin} at {resolution}px needs "
                f"{_gb(needed)} on the disk of {path.parent}, which has {_gb(free)} free; free "
                f"space there, put the run directory (--out) on a larger disk, or choose a "
                f"smaller resolution"
            )
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
        try:
            out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=shape)
            self._decode_into(out, resolution)
            out.flush()
            del out
            with partial.open("rb") as file:
                os.fsync(file.fileno())
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)

    def _decode_into(self, out: np.ndarray, resolution: int) -> None:
        started = time.perf_counter()
        count, channels = len(self), self.channels
        mode = "L" if channels == 1 else "RGB"

        def decode_chunk(start: int) -> None:
            for i in range(start, min(start + _CHUNK, count)):
                try:
                    pixels = self._pixels.read(i, resolution, mode, resize=self.resize)
                except Exception as exc:  # PIL raises many types for a broken file
                    raise DataError(
                        f"cannot read image {self._pixels.describe(i)} "
                        f"({unreadable_reason(exc)}) although it was "
                        f"readable when {self._origin} was loaded; replace or remove the file "
                        f"and start again"
                    ) from exc
                out[i] = pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)

        # PIL releases the GIL while decoding and resizing, so threads use all the cores.
        with quiet_large_images(), ThreadPoolExecutor(max_workers=worker_count()) as pool:
            for future in [pool.submit(decode_chunk, s) for s in range(0, count, _CHUNK)]:
                future.result()
        seconds = time.perf_counter() - started
        _log.info(
            "decoded %d images of %s at %dpx in %.1f s (%.0f images/s)",
            count,
            self.name,
            resolution,
            seconds,
            count / max(seconds, 1e-9),
        )

    def _statistics(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        if self._stats is None:
            images = self.images(STATS_RESOLUTION)
            train = torch.from_numpy(np.asarray(self.splits.train, dtype=np.int64))
            total = torch.zeros(self.channels, dtype=torch.float64)
            squares = torch.zeros(self.channels, dtype=torch.float64)
            # In chunks, so a large dataset never needs a copy, let alone a float one, of all
            # its training pixels.
            for rows in train.split(4096):
                wide = images[rows].to(torch.float64)
                total += wide.sum(dim=(0, 2, 3))
                squares += wide.square().sum(dim=(0, 2, 3))
            count = len(train) * STATS_RESOLUTION * STATS_RESOLUTION
            mean = total / count
            variance = (squares / count - mean.square()).clamp(min=0.0)
            # A floor of one grey level keeps normalisation finite on constant images.
            std = variance.sqrt().clamp(min=1.0)
            self._stats = (
                tuple(float(m) / 255 for m in mean),
                tuple(float(s) / 255 for s in std),
            )
        return self._stats


def load_dataset(
    source: str | Path,
    *,
    cache_dir: Path | None = None,
    seed: int = 0,
    val_fraction: float = 0.15,
    holdout_fraction: float = 0.15,
    augment: str | Sequence[str] | None = None,
    resize: str = "pad",
) -> ImageDataset:
    """Load a labelled image dataset and split it.

    Args:
        source: a folder with one subfolder of images per class (png, jpg/jpeg, bmp, tif/tiff
            in any case; grayscale, RGB, RGBA or palette; any sizes), a CSV manifest (``.csv``
            with a ``path,label`` header and an optional ``group`` column; relative paths are
            relative to the manifest's folder), or a built-in name: ``elpv`` (solar cells,
            functional vs defective), ``elpv4`` (the same cells, four defect-probability
            classes) or ``synthetic`` (960 generated 48×48 images in four classes, for tests),
            or a folder that `save_arrays` wrote from arrays or a torch ``Dataset``.
        cache_dir: where decoded images are cached per resolution, and what checking each
            image file found (a file unchanged since is not opened again at the next load);
            None keeps the images in memory only and checks every file each time.
        seed: seeds the split; the same seed gives the same split.
        val_fraction: share of each class in the validation split.
        holdout_fraction: share of each class in the holdout split, never seen by the search.
        augment: the augmentations that keep an image's class, which training may use: a
            comma-separated string or a sequence of ``flip-h`` (mirror left-right),
            ``flip-v`` (upside down), ``rot90`` (quarter turns; half turns only on non-square
            inputs), ``shift``, ``brightness``, ``contrast``, or ``"none"``. None: the
            source's default, all six for the built-in datasets and
            ``shift,brightness,contrast`` for folders and manifests.
        resize: how an image of another aspect ratio becomes the square input: ``squash``
            (stretch), ``crop`` (the short side to the resolution, centre-cropped) or ``pad``
            (the long side to the resolution, centred on black: nothing cut, nothing
            stretched). Square images, such as the built-in datasets', come out the same.

    Unreadable image files (and manifest rows whose file is missing) are skipped with one
    warning on the ``edgenas.data`` logger that lists them.

    Raises:
        DataError: the source is missing or unusable: no images, a single class, a class with
            fewer than 3 images, a manifest without ``path``/``label`` columns, ...
        ConfigError: bad fractions, an unknown augmentation or resize policy.

    Example:
        >>> data = load_dataset("synthetic", seed=0)
        >>> data.num_classes, data.images(32).shape
        (4, torch.Size([960, 1, 32, 32]))
    """
    check_fractions(val_fraction, holdout_fraction)
    # Checked before the images are opened, so a typo is named at once.
    augment = None if augment is None else parse_augment(augment)
    resize = parse_resize(resize)
    started = time.perf_counter()
    found = (
        open_array_folder(Path(source))
        if isinstance(source, (str, Path)) and is_array_folder(Path(source))
        else open_source(source, probes=None if cache_dir is None else Path(cache_dir))
    )
    splits = stratified_split(
        found.labels,
        found.groups,
        found.class_names,
        seed=seed,
        val_fraction=val_fraction,
        holdout_fraction=holdout_fraction,
        origin=found.origin,
    )
    dataset = ImageDataset(
        found,
        splits,
        cache_dir=None if cache_dir is None else Path(cache_dir),
        augment=augment,
        resize=resize,
    )
    _log.info("loaded %r in %.1f s", dataset, time.perf_counter() - started)
    return dataset


def _fingerprint(source: Source) -> str:
    groups = [""] * len(source.labels) if source.groups is None else source.groups.tolist()
    items = [
        "edgenas-data-v1",
        "classes=" + "\t".join(source.class_names),
        *source.pixels.content_items(),
        *(f"{label}\t{group}" for label, group in zip(source.labels.tolist(), groups, strict=True)),
    ]
    return _digest(items)


def _digest(items: list[str]) -> str:
    sha = hashlib.sha256()
    for item in items:
        sha.update(item.encode("utf-8", "surrogateescape"))
        sha.update(b"\n")
    return sha.hexdigest()[:16]


def _open_cache(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """The cache file mapped copy-on-write (reads share the page cache; a write would stay in
    this process, never reach the file), or None when it is missing or not whole."""
    if not path.is_file():
        return None
    try:
        pixels = np.load(path, mmap_mode="c")
    except Exception as exc:  # truncated (mmap longer than the file), foreign, not .npy
        _log.warning("ignored the incomplete or unreadable cache file %s (%s)", path, exc)
        return None
    if not isinstance(pixels, np.memmap) or pixels.dtype != np.uint8 or pixels.shape != shape:
        _log.warning("ignored the cache file %s: it does not hold %s uint8 images", path, shape)
        return None
    return pixels


def _available_memory() -> int | None:
    """MemAvailable of /proc/meminfo in bytes (None where there is none: not Linux)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as file:
            for line in file:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _gb(count: int) -> str:
    return f"{count / 1e9:.1f} GB" if count >= 1e9 else f"{count / 1e6:.1f} MB"
