"""Where images come from: class folders, CSV manifests and the built-in datasets.

Each source is turned into one `Source`: class names, labels, optional groups, and a pixel
source that decodes any image at any resolution. Unreadable files are found here, at load
time, so they never surface in the middle of a search.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
import os
import re
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, cast

import numpy as np
from PIL import Image, ImageOps

from edgenas._io import write_json
from edgenas.data._synthetic import SYNTHETIC_CLASSES, SYNTHETIC_IDENTITY, generate_synthetic
from edgenas.data._transforms import AUGMENTATIONS, FILE_AUGMENT, resize_image
from edgenas.errors import DataError

__all__ = [
    "BUILTIN_NAMES",
    "IMAGE_EXTENSIONS",
    "ArrayImages",
    "FileImages",
    "FileRecord",
    "PixelSource",
    "Source",
    "open_source",
    "quiet_large_images",
    "unreadable_reason",
    "worker_count",
]

_log = logging.getLogger("edgenas.data")

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
BUILTIN_NAMES = ("elpv", "elpv4", "synthetic")
_ACCEPTED = (
    "Give a folder with one subfolder of images per class, a CSV manifest (a .csv file with "
    "columns path,label and optionally group), or a built-in dataset name: "
    + ", ".join(BUILTIN_NAMES)
)
# How many file names a warning lists before it only counts the rest.
_LIST_LIMIT = 10
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})


def worker_count() -> int:
    """CPU cores this process may use (respecting affinity masks, e.g. in containers)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


class PixelSource(Protocol):
    """Decodes image ``index`` to a square uint8 array of the given mode ("L" or "RGB")."""

    def __len__(self) -> int: ...

    def read(self, index: int, resolution: int, mode: str, *, resize: str) -> np.ndarray:
        """``(resolution, resolution)`` for "L", ``(resolution, resolution, 3)`` for "RGB";
        an image of another aspect ratio made square as ``resize`` says (squash, crop, pad)."""
        ...

    def describe(self, index: int) -> str:
        """Where image ``index`` comes from, for error messages."""
        ...

    def content_items(self) -> Iterator[str]:
        """What identifies the images wherever they are stored (for the dataset fingerprint)."""
        ...

    def cache_items(self) -> Iterator[str]:
        """What changes whenever a decoded pixel could change (for the decode cache key)."""
        ...


@dataclass(frozen=True)
class FileRecord:
    """One readable image file, as found at load time."""

    path: Path  # absolute
    key: str  # the path as the source names it (relative to the folder or CSV): relocatable
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class FileImages:
    """Images stored as files."""

    records: tuple[FileRecord, ...]

    def __len__(self) -> int:
        return len(self.records)

    def read(self, index: int, resolution: int, mode: str, *, resize: str) -> np.ndarray:
        with Image.open(self.records[index].path) as image:
            if image.format == "JPEG":
                # Decode in the DCT domain at 1/2 to 1/8 scale, never below the target size:
                # much faster for large photos, and the resize below still antialiases.
                image.draft(mode, (resolution, resolution))
            # Phone and camera JPEGs store their orientation in EXIF; honour it so images
            # look as the user sees them.
            ImageOps.exif_transpose(image, in_place=True)
            return resize_image(_to_mode(image, mode), resolution, resize)

    def describe(self, index: int) -> str:
        return str(self.records[index].path)

    def content_items(self) -> Iterator[str]:
        return (f"{r.key}\t{r.size}" for r in self.records)

    def cache_items(self) -> Iterator[str]:
        return (f"{r.path}\t{r.size}\t{r.mtime_ns}" for r in self.records)


@dataclass(frozen=True, eq=False)
class ArrayImages:
    """Images held in memory as uint8 arrays ``(N, H, W)`` or ``(N, H, W, 3)``."""

    arrays: np.ndarray
    identity: str  # names the arrays' content, e.g. the generator and its version

    def __len__(self) -> int:
        return len(self.arrays)

    def read(self, index: int, resolution: int, mode: str, *, resize: str) -> np.ndarray:
        image = _to_mode(Image.fromarray(self.arrays[index]), mode)
        return resize_image(image, resolution, resize)

    def describe(self, index: int) -> str:
        return f"{self.identity}[{index}]"

    def content_items(self) -> Iterator[str]:
        return iter((self.identity,))

    def cache_items(self) -> Iterator[str]:
        return iter((self.identity,))


@dataclass(frozen=True, eq=False)
class Source:
    """Everything known about a data source before it is split and decoded."""

    name: str
    origin: str  # "folder /data/cells", "CSV manifest ...": names the input in messages
    class_names: list[str]
    labels: np.ndarray
    groups: np.ndarray | None
    pixels: PixelSource
    channels: int
    # The augmentations that keep an image's class, unless the user says otherwise.
    augment: tuple[str, ...]


def open_source(source: str | Path, *, probes: Path | None = None) -> Source:
    """Find the images, labels and groups of ``source`` and check every image can be read.

    A string equal to a built-in name (``elpv``, ``elpv4``, ``synthetic``) means the built-in
    dataset even if a folder of that name exists; pass ``./elpv`` (or a `Path`) for the folder.

    ``probes``: a folder (the run's cache) where what the check found is kept per file, with
    the file's size and modification time: a file unchanged since is not opened again, so a
    second process (a worker, a resumed search) checks a large data set with a stat per file
    (BENCHMARKS.md, factory scale: 127,000 files in seconds rather than half a minute).
    """
    if isinstance(source, str) and source in BUILTIN_NAMES:
        if Path(source).exists():
            _log.warning(
                "%r is a built-in dataset name and also a path here; using the built-in dataset "
                "(write ./%s to use the path)",
                source,
                source,
            )
        if source == "synthetic":
            return _synthetic()
        return _elpv(four_levels=source == "elpv4", probes=probes)
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(f"data source {str(source)!r} not found. {_ACCEPTED}.")
    if path.is_dir():
        return _from_folder(path, probes)
    if path.suffix.lower() == ".csv":
        return _from_csv(path, probes)
    raise DataError(f"data source {str(source)!r} is a file but not a .csv manifest. {_ACCEPTED}.")


@dataclass(frozen=True)
class _Candidate:
    """An image file named by a source, not yet checked."""

    path: Path
    key: str
    label: str
    group: str | None
    where: str  # for messages: the path, or "line 7: a/b.png" for a manifest row


def _from_folder(root: Path, probes: Path | None) -> Source:
    root = root.absolute()
    entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    class_dirs = [p for p in entries if p.is_dir()]
    loose = [p.name for p in entries if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    if not class_dirs:
        raise DataError(
            f"folder {root} has no class subfolders: put the images of each class in a "
            f"subfolder named after the class (e.g. {root / 'good'}/*.png and "
            f"{root / 'defect'}/*.png), or give a CSV manifest"
        )
    if loose:
        _log.warning(
            "ignored %d image(s) directly in %s, outside any class subfolder: %s",
            len(loose),
            root,
            _listing(loose),
        )
    candidates: list[_Candidate] = []
    other: Counter[str] = Counter()
    for class_dir in class_dirs:
        for path in sorted(class_dir.rglob("*")):
            relative = path.relative_to(root)
            if any(part.startswith(".") for part in relative.parts) or not path.is_file():
                continue
            if path.suffix.lower() in IMAGE_EXTENSIONS:
                key = relative.as_posix()
                candidates.append(_Candidate(path, key, class_dir.name, None, key))
            else:
                other[path.suffix.lower() or "(no extension)"] += 1
    if other:
        _log.warning(
            "ignored %d file(s) in %s that are not images of a supported type (%s): %s",
            sum(other.values()),
            root,
            ", ".join(sorted(IMAGE_EXTENSIONS)),
            ", ".join(f"{count} {ext}" for ext, count in other.most_common()),
        )
    origin = f"folder {root}"
    if not candidates:
        raise DataError(
            f"no images found in the class subfolders of {root} "
            f"({', '.join(p.name for p in class_dirs[:_LIST_LIMIT])}); supported file types "
            f"are {', '.join(sorted(IMAGE_EXTENSIONS))} (any case)"
        )
    class_names = [p.name for p in class_dirs]
    _need_two_classes(class_names, origin)
    return _from_files(root.name, origin, class_names, candidates, grouped=False, probes=probes)


def _from_csv(manifest: Path, probes: Path | None) -> Source:
    manifest = manifest.absolute()
    origin = f"CSV manifest {manifest}"
    try:
        with manifest.open(newline="", encoding="utf-8-sig") as file:
            rows = list(csv.reader(file))
    except UnicodeDecodeError as exc:
        raise DataError(f"{origin} is not UTF-8 text ({exc}); save it as UTF-8 CSV") from exc
    except csv.Error as exc:
        raise DataError(f"{origin} is not a valid CSV file: {exc}") from exc
    if not rows:
        raise DataError(f"{origin} is empty; its first line must name the columns: path,label")
    header = [cell.strip().lower() for cell in rows[0]]
    missing = [column for column in ("path", "label") if column not in header]
    if missing:
        raise DataError(
            f"{origin} has no {' or '.join(repr(c) for c in missing)} column; its first line "
            f"names the columns {rows[0]}. The first line must be 'path,label' (or "
            f"'path,label,group'), paths relative to the manifest's folder"
        )
    path_col, label_col = header.index("path"), header.index("label")
    group_col = header.index("group") if "group" in header else None

    candidates: list[_Candidate] = []
    seen: dict[str, tuple[int, str]] = {}
    duplicates: list[str] = []
    missing_files: list[str] = []
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue  # blank lines, common at the end of hand-edited files
        if len(row) < len(header):
            raise DataError(
                f"line {line} of {origin} has {len(row)} field(s) but the header has "
                f"{len(header)}: {row}; fill in every column"
            )
        name, label = row[path_col].strip(), row[label_col].strip()
        group = row[group_col].strip() if group_col is not None else None
        if not name or not label:
            raise DataError(
                f"line {line} of {origin} has an empty {'path' if not name else 'label'}: {row}; "
                f"fill it in or delete the line"
            )
        # Strings rather than Paths: cheaper, for the many rows of a large manifest.
        path = os.path.normpath(os.path.join(manifest.parent, os.path.expanduser(name)))
        if path in seen:
            first_line, first_label = seen[path]
            if first_label != label:
                raise DataError(
                    f"{origin} gives {name!r} two labels: {first_label!r} on line {first_line} "
                    f"and {label!r} on line {line}; keep one of the lines"
                )
            duplicates.append(f"line {line}: {name}")
            continue
        seen[path] = (line, label)
        where = f"line {line}: {name}"
        if not os.path.isfile(path):
            missing_files.append(where)
            continue
        candidates.append(_Candidate(Path(path), Path(name).as_posix(), label, group, where))
    if duplicates:
        _log.warning(
            "%s lists %d file(s) more than once; each is used once: %s",
            origin,
            len(duplicates),
            _listing(duplicates),
        )
    if missing_files:
        _log.warning(
            "skipped %d row(s) of %s whose file does not exist: %s",
            len(missing_files),
            origin,
            _listing(missing_files),
        )
    class_names = sorted({label for _, label in seen.values()})
    if not class_names:
        raise DataError(f"{origin} lists no images; add one 'path,label' line per image")
    if not candidates:
        raise DataError(
            f"none of the files listed in {origin} exist; paths are relative to {manifest.parent}"
        )
    _need_two_classes(class_names, origin)
    return _from_files(
        manifest.stem, origin, class_names, candidates, grouped=group_col is not None,
        probes=probes,
    )  # fmt: skip


def _elpv(*, four_levels: bool, probes: Path | None) -> Source:
    try:
        import elpv_dataset
    except ImportError as exc:
        raise DataError(
            "the built-in dataset 'elpv' needs the elpv-dataset package: pip install elpv-dataset"
        ) from exc
    data_dir = Path(elpv_dataset.__file__).parent / "data"
    labels_file = data_dir / "labels.csv"
    name = "elpv4" if four_levels else "elpv"
    candidates = []
    # Whitespace-separated: "images/cell0001.png  1.0  mono" (path, defect probability, type).
    for line, text in enumerate(labels_file.read_text().splitlines(), start=1):
        fields = text.split()
        if not fields:
            continue
        key, probability = fields[0], float(fields[1])
        # The four annotated levels are 0, 1/3, 2/3 and 1.
        label = (
            f"p{probability:.2f}"
            if four_levels
            else ("defective" if probability >= 0.5 else "functional")
        )
        candidates.append(_Candidate(data_dir / key, key, label, None, f"line {line}: {key}"))
    class_names = sorted({c.label for c in candidates})
    # Square cells whose defects have no preferred orientation: all eight symmetries keep the class.
    return _from_files(
        name,
        f"built-in dataset {name!r} ({labels_file})",
        class_names,
        candidates,
        grouped=False,
        augment=AUGMENTATIONS,
        probes=probes,
    )


def _synthetic() -> Source:
    images, labels = generate_synthetic()
    return Source(
        name="synthetic",
        origin="built-in dataset 'synthetic'",
        class_names=list(SYNTHETIC_CLASSES),
        labels=labels,
        groups=None,
        pixels=ArrayImages(images, SYNTHETIC_IDENTITY),
        channels=1,
        # The textures are drawn at random positions and angles, so every symmetry keeps the class.
        augment=AUGMENTATIONS,
    )


def _from_files(
    name: str,
    origin: str,
    class_names: list[str],
    candidates: Sequence[_Candidate],
    *,
    grouped: bool,
    augment: tuple[str, ...] = FILE_AUGMENT,
    probes: Path | None = None,
) -> Source:
    """Check every candidate file, drop (with one warning) the unreadable ones, build a Source.

    With ``probes`` (a folder), files checked before and unchanged since (same size and
    modification time) are not opened again, and what this check found is kept there.
    """
    table = None if probes is None else probes / f"probes-{_digest_of(origin)}.json"
    known = _read_probes(table)
    # Unchanged files are recognised here (a stat each); only the others are opened, in threads.
    found: list[_Probe | str | None] = [_known(c.path, known) for c in candidates]
    todo = [i for i, p in enumerate(found) if p is None]
    if todo:
        workers = min(32, 4 * worker_count())
        with quiet_large_images(), ThreadPoolExecutor(max_workers=workers) as pool:
            opened = pool.map(_probe, [candidates[i].path for i in todo])
            for i, probe in zip(todo, opened, strict=True):
                found[i] = probe
    probes_found = cast("list[_Probe | str]", found)  # every file has its answer now
    if table is not None and any(isinstance(found[i], _Probe) for i in todo):
        _write_probes(table, candidates, probes_found)
    bad = [
        f"{c.where} ({p})"
        for c, p in zip(candidates, probes_found, strict=True)
        if isinstance(p, str)
    ]
    if bad:
        _log.warning(
            "skipped %d unreadable image file(s) in %s: %s", len(bad), origin, _listing(bad)
        )
    kept = [(c, p) for c, p in zip(candidates, probes_found, strict=True) if not isinstance(p, str)]
    if not kept:
        raise DataError(f"none of the image files of {origin} could be read; see the warning above")
    index = {n: i for i, n in enumerate(class_names)}
    labels = np.array([index[c.label] for c, _ in kept], dtype=np.int64)
    groups = np.array([c.group or "" for c, _ in kept], dtype=object) if grouped else None
    records = tuple(FileRecord(c.path, c.key, p.size, p.mtime_ns) for c, p in kept)
    return Source(
        name=name,
        origin=origin,
        class_names=class_names,
        labels=labels,
        groups=groups,
        pixels=FileImages(records),
        # One colour image makes the whole dataset RGB: a network has one input layout.
        channels=1 if all(p.gray for _, p in kept) else 3,
        augment=augment,
    )


@dataclass(frozen=True)
class _Probe:
    size: int
    mtime_ns: int
    gray: bool


# What a probe table holds per file: [size, modification time in ns, gray].
_PROBES_VERSION = 1


def _digest_of(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def _read_probes(table: Path | None) -> dict[str, tuple[int, int, bool]]:
    """The readable files a probe table lists (path → size, mtime, gray); empty when there is
    no table or it is damaged (then every file is checked again)."""
    if table is None:
        return {}
    try:
        payload = json.loads(table.read_text())
        if payload.get("version") != _PROBES_VERSION:
            return {}
        return {k: (int(v[0]), int(v[1]), bool(v[2])) for k, v in payload["files"].items()}
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError):
        return {}


def _write_probes(
    table: Path, candidates: Sequence[_Candidate], found: Sequence[_Probe | str]
) -> None:
    """Keep the readable files' probes (unreadable ones are checked again next time). Written
    whole under a temporary name and renamed: processes loading at once each write a whole
    table, and the last one stays."""
    files = {
        str(c.path): [p.size, p.mtime_ns, p.gray]
        for c, p in zip(candidates, found, strict=True)
        if isinstance(p, _Probe)
    }
    try:
        write_json(table, {"version": _PROBES_VERSION, "files": files}, indent=None)
    except OSError as exc:  # a cache that cannot be written costs time, never the run
        _log.warning("could not keep the image checks in %s (%s)", table, exc)


def _known(path: Path, known: dict[str, tuple[int, int, bool]]) -> _Probe | None:
    """The probe of a file ``known`` to be readable, when its size and modification time are
    still the ones recorded; None when it must be opened."""
    seen = known.get(str(path)) if known else None
    if seen is None:
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return None  # opened, and its reason given, by _probe
    if (stat.st_size, stat.st_mtime_ns) != seen[:2]:
        return None
    return _Probe(stat.st_size, stat.st_mtime_ns, seen[2])


def _probe(path: Path) -> _Probe | str:
    """Check that ``path`` is a readable image, cheaply; return why not as a string."""
    try:
        stat = path.stat()
    except OSError as exc:
        return unreadable_reason(exc)
    try:
        with Image.open(path) as image:
            gray = _is_gray(image)
            if image.format == "PNG":
                # Walks every chunk and checks its CRC without inflating the pixels: catches
                # truncated and corrupted files at a fraction of the cost of decoding.
                image.verify()
            else:
                if image.format == "JPEG":
                    image.draft(image.mode, (1, 1))  # decode at 1/8 scale: cheap, still complete
                image.load()
    # PIL reports broken files through many exception types (OSError, SyntaxError, ValueError,
    # struct.error, DecompressionBombError, ...); any of them means "skip this file".
    except Exception as exc:
        return unreadable_reason(exc)
    return _Probe(stat.st_size, stat.st_mtime_ns, gray)


@contextlib.contextmanager
def quiet_large_images() -> Iterator[None]:
    """Silence PIL's DecompressionBombWarning while images are probed or decoded.

    PIL warns, in words meant for servers ("DOS attack"), about images over
    ``Image.MAX_IMAGE_PIXELS`` and refuses those over twice that. A large image the user chose
    loads without a word; one over the hard limit is skipped with `unreadable_reason`. The
    limits stay as PIL sets them. Enter this in the thread that starts the decoding threads:
    warning filters are shared by all threads, and workers entering it each would restore
    each other's filters."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


_BOMB_SIZE = re.compile(r"\((\d+) pixels\) exceeds limit of (\d+) pixels")


def unreadable_reason(exc: Exception) -> str:
    """Why PIL could not read an image, in words for a warning or an error message."""
    if isinstance(exc, Image.DecompressionBombError):
        # PIL's message carries the numbers; its wording ("DOS attack") does not fit a dataset.
        found = _BOMB_SIZE.search(str(exc))
        if found is None:
            return "over PIL's size limit for one image: downscale it"
        pixels, limit = int(found[1]) / 1e6, int(found[2]) / 1e6
        digits = 0 if round(pixels) > round(limit) else 1  # never "179 over 179"
        return (
            f"{pixels:.{digits}f} megapixels, over the {limit:.{digits}f}-megapixel limit for "
            "one image: downscale it"
        )
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _is_gray(image: Image.Image) -> bool:
    if image.mode in _GRAY_MODES:
        return True
    palette = image.palette
    if image.mode in ("P", "PA") and palette is not None and palette.mode in ("RGB", "RGBA"):
        raw = np.frombuffer(bytes(palette.palette), dtype=np.uint8)
        stride = len(palette.mode)
        if raw.size and raw.size % stride == 0:
            rgb = raw.reshape(-1, stride)[:, :3]
            return bool((rgb == rgb[:, :1]).all())
    return False


def _to_mode(image: Image.Image, mode: str) -> Image.Image:
    """Convert to "L" or "RGB", scaling 16-bit grayscale to 8 bits rather than clipping it."""
    if image.mode == "I" or image.mode.startswith("I;16"):
        # PIL's own conversion clips 16-bit values at 255, which turns most pixels white.
        wide = np.asarray(image).astype(np.float32)
        image = Image.fromarray(np.clip(np.rint(wide / 257.0), 0, 255).astype(np.uint8))
    elif image.mode in ("P", "PA") and "transparency" in image.info:
        image = image.convert("RGBA")  # PIL warns when converting such palettes straight to RGB
    if image.mode != mode:
        image = image.convert(mode)
    return image


def _need_two_classes(class_names: Sequence[str], origin: str) -> None:
    if len(class_names) < 2:
        raise DataError(
            f"{origin} has a single class ({', '.join(map(repr, class_names))}), and a "
            f"classifier needs at least two classes: add a folder (or labels) for another class"
        )


def _listing(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_LIST_LIMIT])
    more = len(items) - _LIST_LIMIT
    return f"{shown} and {more} more" if more > 0 else shown
