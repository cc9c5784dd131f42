"""`ImageDataset`: labels, splits and decoded pixels of one data source, and `load_dataset`."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from edgenas.data._sources import (
    PixelSource,
    Source,
    open_source,
    quiet_large_images,
    unreadable_reason,
    worker_count,
)
from edgenas.data._split import Splits, check_fractions, stratified_split
from edgenas.errors import ConfigError, DataError

__all__ = ["ImageDataset", "load_dataset"]

_log = logging.getLogger("edgenas.data")

# Mean and std are measured at this side length: cheap, and close to the full-size statistics.
STATS_RESOLUTION = 32
# Bump when decoding changes (resampling, colour conversion), so older cache files are ignored.
_DECODE_VERSION = 1
# Images per decoding task: enough to make the thread pool's overhead negligible.
_CHUNK = 32


class ImageDataset:
    """A labelled image dataset with a fixed train / validation / holdout split.

    Pixels are decoded once per resolution into a uint8 tensor (squashed to a square with
    bilinear antialiased resizing), kept in memory and, when ``cache_dir`` is set, saved there
    so a resumed run does not decode again. Build one with `load_dataset`.

    Attributes:
        name: "elpv", "elpv4", "synthetic", the folder's name or the CSV manifest's stem.
        class_names: sorted class names; a label is an index into this list.
        labels: int64 ``(N,)``.
        groups: ``(N,)`` object array of group names (from a manifest's ``group`` column;
            ``""`` for none), or None. Images of one group are always in the same split.
        channels: 1 when every image is grayscale, else 3 (all images converted to RGB).
        allow_rot90: 90° rotations keep the class (together with ``allow_flips``, so do
            vertical flips), so augmentation may use them.
        allow_flips: mirror images keep the class.
        splits: indices of the train, validation and holdout images.
    """

    def __init__(
        self,
        source: Source,
        splits: Splits,
        *,
        cache_dir: Path | None = None,
        allow_rot90: bool | None = None,
        allow_flips: bool | None = None,
    ) -> None:
        """Use `load_dataset` rather than this: ``source`` comes from a private module."""
        self.name: str = source.name
        self.class_names: list[str] = list(source.class_names)
        self.labels: np.ndarray = source.labels
        self.groups: np.ndarray | None = source.groups
        self.channels: int = source.channels
        self.allow_rot90: bool = source.allow_rot90 if allow_rot90 is None else allow_rot90
        self.allow_flips: bool = source.allow_flips if allow_flips is None else allow_flips
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

        Decoded once per resolution and kept in memory (the same tensor is returned each time:
        do not modify it in place). With a ``cache_dir`` the tensor is also saved there, named
        by a hash of the files' paths, sizes and modification times and the resolution, and
        later datasets with the same files load it instead of decoding.

        Raises:
            ConfigError: ``resolution`` is not a positive integer.
            DataError: an image that was readable at load time no longer is.
        """
        if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
            raise ConfigError(f"resolution must be an integer >= 1, got {resolution!r}")
        tensor = self._decoded.get(resolution)
        if tensor is None:
            tensor = self._load_cached(resolution)
            if tensor is None:
                tensor = self._decode(resolution)
                self._save_cached(resolution, tensor)
            self._decoded[resolution] = tensor
        return tensor

    def cache_file(self, resolution: int) -> Path | None:
        """Where `images` caches this resolution on disk (None without a ``cache_dir``)."""
        if self.cache_dir is None:
            return None
        safe_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.name)[:40] or "data"
        return self.cache_dir / f"{safe_name}-{self._cache_key}-{resolution}px.pt"

    def _decode(self, resolution: int) -> torch.Tensor:
        started = time.perf_counter()
        count, channels = len(self), self.channels
        mode = "L" if channels == 1 else "RGB"
        out = np.empty((count, channels, resolution, resolution), dtype=np.uint8)

        def decode_chunk(start: int) -> None:
            for i in range(start, min(start + _CHUNK, count)):
                try:
                    pixels = self._pixels.read(i, resolution, mode)
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
        _log.info(
            "decoded %d images of %s at %dpx in %.1f s",
            count,
            self.name,
            resolution,
            time.perf_counter() - started,
        )
        return torch.from_numpy(out)

    def _load_cached(self, resolution: int) -> torch.Tensor | None:
        path = self.cache_file(resolution)
        if path is None or not path.is_file():
            return None
        expected = (len(self), self.channels, resolution, resolution)
        try:
            tensor = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a truncated or foreign file: decode again, it is only a cache
            _log.warning("ignored the unreadable cache file %s (%s); decoding again", path, exc)
            return None
        if (
            not isinstance(tensor, torch.Tensor)
            or tensor.dtype != torch.uint8
            or tuple(tensor.shape) != expected
        ):
            _log.warning("ignored the cache file %s: it does not hold %s uint8", path, expected)
            return None
        _log.info("loaded %s images at %dpx from %s", self.name, resolution, path)
        return tensor

    def _save_cached(self, resolution: int, tensor: torch.Tensor) -> None:
        path = self.cache_file(resolution)
        if path is None:
            return
        # Write then rename, so a crash mid-write never leaves a half file under the real name.
        # The temporary name is unique to this process, so concurrent writers never collide.
        temporary = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                with temporary.open("xb") as file:
                    torch.save(tensor, file)
                os.replace(temporary, path)
            finally:
                temporary.unlink(missing_ok=True)
        except OSError as exc:
            # The cache only saves time; the images are in memory either way.
            _log.warning(
                "could not write the image cache %s (%s); continuing without it", path, exc
            )

    def _statistics(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        if self._stats is None:
            train = self.images(STATS_RESOLUTION)[torch.from_numpy(self.splits.train)]
            total = torch.zeros(self.channels, dtype=torch.float64)
            squares = torch.zeros(self.channels, dtype=torch.float64)
            # In chunks, so a large dataset never needs a float copy of all its pixels.
            for chunk in train.split(4096):
                wide = chunk.to(torch.float64)
                total += wide.sum(dim=(0, 2, 3))
                squares += wide.square().sum(dim=(0, 2, 3))
            count = train.shape[0] * STATS_RESOLUTION * STATS_RESOLUTION
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
    allow_rot90: bool | None = None,
    allow_flips: bool | None = None,
) -> ImageDataset:
    """Load a labelled image dataset and split it.

    Args:
        source: a folder with one subfolder of images per class (png, jpg/jpeg, bmp, tif/tiff
            in any case; grayscale, RGB, RGBA or palette; any sizes), a CSV manifest (``.csv``
            with a ``path,label`` header and an optional ``group`` column; relative paths are
            relative to the manifest's folder), or a built-in name: ``elpv`` (solar cells,
            functional vs defective), ``elpv4`` (the same cells, four defect-probability
            classes) or ``synthetic`` (960 generated 48×48 images in four classes, for tests).
        cache_dir: where decoded images are cached per resolution; None keeps them in memory only.
        seed: seeds the split; the same seed gives the same split.
        val_fraction: share of each class in the validation split.
        holdout_fraction: share of each class in the holdout split, never seen by the search.
        allow_rot90: override whether 90° rotations keep the class (default: True for the
            built-in datasets, False for folders and manifests).
        allow_flips: override whether mirror images keep the class (same defaults).

    Unreadable image files (and manifest rows whose file is missing) are skipped with one
    warning on the ``edgenas.data`` logger that lists them.

    Raises:
        DataError: the source is missing or unusable: no images, a single class, a class with
            fewer than 3 images, a manifest without ``path``/``label`` columns, ...
        ConfigError: bad fractions.

    Example:
        >>> data = load_dataset("synthetic", seed=0)
        >>> data.num_classes, data.images(32).shape
        (4, torch.Size([960, 1, 32, 32]))
    """
    check_fractions(val_fraction, holdout_fraction)
    started = time.perf_counter()
    found = open_source(source)
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
        allow_rot90=allow_rot90,
        allow_flips=allow_flips,
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
