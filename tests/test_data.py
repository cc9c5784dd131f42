"""edgenas.data: sources, bad input, splits, decoding and its cache, built-in datasets."""

from __future__ import annotations

import csv
import logging
import shutil
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgenas.data import AUGMENTATIONS, ImageDataset, Splits, load_dataset
from edgenas.errors import ConfigError, DataError

# ---------------------------------------------------------------------------------------------
# helpers


def _save(
    path: Path, size: tuple[int, int] = (40, 30), mode: str = "L", value: object = 128
) -> Path:
    """Write a uniform image of the given mode and colour; the format follows the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value).save(path)  # type: ignore[arg-type]
    return path


def _noise(path: Path, seed: int, size: tuple[int, int] = (40, 30), rgb: bool = False) -> Path:
    """Write a random image (distinct content and byte size per seed)."""
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0], 3) if rgb else (size[1], size[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)
    return path


def _class_folder(root: Path, counts: dict[str, int], rgb: bool = False) -> Path:
    for name, count in counts.items():
        for i in range(count):
            _noise(root / name / f"{i:03d}.png", seed=sum(map(ord, name)) * 1000 + i, rgb=rgb)
    return root


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "edgenas.data" and r.levelno == logging.WARNING
    ]


def _check_splits(data: ImageDataset) -> None:
    """Disjoint, covering, sorted int64 splits with every class in every split."""
    s = data.splits
    parts = [s.train, s.val, s.holdout]
    for part in parts:
        assert part.dtype == np.int64
        assert np.all(np.diff(part) > 0)
    every = np.concatenate(parts)
    assert len(every) == len(data) == len(np.unique(every))
    for part in parts:
        assert set(data.labels[part].tolist()) == set(range(data.num_classes))


# ---------------------------------------------------------------------------------------------
# class folders


def test_folder_of_mixed_formats_sizes_and_modes(tmp_path: Path) -> None:
    root = tmp_path / "parts"
    _save(root / "good" / "a.png", (40, 30), "L", 100)
    _save(root / "good" / "b.JPG", (64, 64), "L", 100)
    _save(root / "good" / "c.bmp", (17, 23), "L", 100)
    _save(root / "good" / "sub" / "d.tiff", (50, 50), "L", 100)
    _save(root / "bad" / "e.png", (30, 40), "RGB", (200, 10, 10))
    _save(root / "bad" / "f.jpeg", (90, 60), "RGB", (200, 10, 10))
    _save(root / "bad" / "g.TIF", (12, 12), "RGBA", (200, 10, 10, 255))
    _save(root / "bad" / "h.png", (33, 33), "L", 100)
    # Squashed, so that a uniform image of any shape fills the square (pad: test_augment_resize).
    data = load_dataset(root, resize="squash")

    assert data.name == "parts"
    assert data.class_names == ["bad", "good"]
    assert len(data) == 8 and data.num_classes == 2
    assert Counter(data.labels.tolist()) == {0: 4, 1: 4}
    assert data.labels.dtype == np.int64
    assert data.groups is None
    # One colour image makes the whole dataset RGB.
    assert data.channels == 3
    # Orientation is unknown for user data: no flips or rotations unless asked for.
    assert data.augment == ("shift", "brightness", "contrast") == data.default_augment

    images = data.images(24).float()
    assert data.images(24).dtype == torch.uint8 and images.shape == (8, 3, 24, 24)
    # Dataset order is class, then path: e, f, g (red), h (gray), then the gray "good" images.
    # Uniform images stay uniform through resizing; gray ones become R = G = B.
    red = torch.tensor([200.0, 10.0, 10.0])[:, None, None].expand(3, 24, 24)
    for i in range(3):
        assert torch.allclose(images[i], red, atol=4)
    assert torch.allclose(images[3:], torch.full_like(images[3:], 100), atol=2)


def test_grayscale_folder_has_one_channel_and_gray_palettes_count_as_gray(tmp_path: Path) -> None:
    root = _class_folder(tmp_path / "d", {"x": 3, "y": 2})
    palette = Image.new("P", (20, 20), 7)
    palette.putpalette([v for i in range(256) for v in (i, i, i)])
    palette.save(root / "y" / "palette.png")
    data = load_dataset(root)
    assert data.channels == 1
    assert data.images(16).shape == (6, 1, 16, 16)
    assert data.images(16)[data.labels == 1].float().mean() > 0  # decoded, not blank


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path: Path) -> None:
    root = _class_folder(tmp_path / "d", {"x": 3, "y": 3})
    wide = np.full((20, 20), 32896, dtype=np.uint16)  # mid-gray in 16 bits
    Image.fromarray(wide).save(root / "x" / "wide.png")
    data = load_dataset(root)
    index = [i for i in range(len(data)) if data.labels[i] == 0][-1]
    assert data.images(8)[index].float().mean() == pytest.approx(128, abs=1)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    root = _class_folder(tmp_path / "d", {"x": 3, "y": 3})
    pixels = np.zeros((20, 40), dtype=np.uint8)
    pixels[:, :20] = 255  # left half white as stored
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # viewer rotates 90° clockwise: the white half ends up on top
    image.save(root / "y" / "z_rotated.jpg", exif=exif, quality=95)
    data = load_dataset(root)
    shown = data.images(16)[len(data) - 1, 0].float()
    # Upright it is tall: padded to a square, the image fills columns 4 to 11.
    assert shown[:6, 4:12].mean() > 200 and shown[-6:, 4:12].mean() < 50


def test_augmentation_overrides(tmp_path: Path) -> None:
    root = _class_folder(tmp_path / "d", {"x": 3, "y": 3})
    data = load_dataset(root, augment="rot90,flip-h")
    assert data.augment == ("flip-h", "rot90")
    assert load_dataset("synthetic", augment=["shift"]).augment == ("shift",)
    assert load_dataset("synthetic", augment="none").augment == ()


def test_corrupt_files_are_skipped_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = _class_folder(tmp_path / "d", {"x": 4, "y": 4})
    (root / "x" / "random.png").write_bytes(np.random.default_rng(0).bytes(500))
    whole = _noise(tmp_path / "whole.png", seed=1, size=(64, 64)).read_bytes()
    (root / "x" / "truncated.png").write_bytes(whole[: len(whole) // 2])
    _noise(tmp_path / "whole.jpg", seed=2, size=(64, 64), rgb=True)
    jpeg = (tmp_path / "whole.jpg").read_bytes()
    (root / "y" / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (root / "y" / "notes.txt").write_text("not an image")
    with caplog.at_level(logging.WARNING, logger="edgenas.data"):
        data = load_dataset(root)
    assert len(data) == 8
    # The truncated colour JPEG was dropped, so it does not turn the dataset to RGB.
    assert data.channels == 1
    unreadable = [m for m in _warnings(caplog) if "unreadable" in m]
    assert len(unreadable) == 1
    for name in ("random.png", "truncated.png", "truncated.jpg"):
        assert name in unreadable[0]
    assert any(".txt" in m for m in _warnings(caplog))  # ignored, and said so
    # Everything left decodes.
    assert data.images(8).shape == (8, 1, 8, 8)


def test_many_corrupt_files_are_listed_ten_then_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = _class_folder(tmp_path / "d", {"x": 3, "y": 3})
    for i in range(13):
        (root / "x" / f"broken{i:02d}.png").write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING, logger="edgenas.data"):
        load_dataset(root)
    (message,) = [m for m in _warnings(caplog) if "unreadable" in m]
    assert "13 unreadable" in message and "and 3 more" in message
    assert "broken09.png" in message and "broken12.png" not in message


# ---------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize("source", ["no/such/folder", "imagenet"])
def test_unknown_source_lists_the_accepted_forms(source: str, tmp_path: Path) -> None:
    with pytest.raises(DataError) as error:
        load_dataset(tmp_path / source if "/" in source else source)
    message = str(error.value)
    assert "not found" in message
    for form in ("folder", "CSV", "elpv", "synthetic"):
        assert form in message


def test_file_that_is_not_a_manifest(tmp_path: Path) -> None:
    _save(tmp_path / "one.png")
    with pytest.raises(DataError, match=r"not a \.csv manifest"):
        load_dataset(tmp_path / "one.png")


def test_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no class subfolders"):
        load_dataset(tmp_path)


def test_class_folders_without_images(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "readme.txt").write_text("hi")
    with pytest.raises(DataError, match="no images found"):
        load_dataset(tmp_path)


def test_single_class(tmp_path: Path) -> None:
    _class_folder(tmp_path, {"only": 5})
    with pytest.raises(DataError, match="at least two classes"):
        load_dataset(tmp_path)


def test_class_with_too_few_images_is_named(tmp_path: Path) -> None:
    _class_folder(tmp_path / "d", {"many": 6, "rare": 2})
    with pytest.raises(DataError) as error:
        load_dataset(tmp_path / "d")
    message = str(error.value)
    assert "'rare'" in message and "2 image" in message and str(tmp_path / "d") in message


@pytest.mark.parametrize(("val", "holdout"), [(0.0, 0.2), (0.5, 0.5), (0.2, 1.5)])
def test_bad_fractions(val: float, holdout: float) -> None:
    with pytest.raises(ConfigError):
        load_dataset("synthetic", val_fraction=val, holdout_fraction=holdout)


# ---------------------------------------------------------------------------------------------
# CSV manifests


def _manifest(path: Path, rows: list[list[str]], header: tuple[str, ...]) -> Path:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_manifest_with_groups_keeps_each_group_in_one_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(3)
    rows = []
    for g in range(40):
        label = ["ok", "crack", "spot"][g % 3]
        for k in range(int(rng.integers(1, 5))):
            name = f"img/{label}_{g}_{k}.png"
            _noise(tmp_path / "set" / name, seed=g * 10 + k)
            rows.append([name, label, f"part{g}"])
    _manifest(tmp_path / "set" / "cells.csv", rows, ("path", "label", "group"))
    # Paths resolve against the manifest's folder, not the working directory.
    monkeypatch.chdir(tmp_path)
    data = load_dataset(Path("set/cells.csv"))

    assert data.name == "cells"
    assert data.class_names == ["crack", "ok", "spot"]
    assert len(data) == len(rows)
    assert data.groups is not None
    split_of_group: dict[str, set[int]] = {}
    for s, part in enumerate((data.splits.train, data.splits.val, data.splits.holdout)):
        for i in part:
            split_of_group.setdefault(str(data.groups[i]), set()).add(s)
    assert all(len(s) == 1 for s in split_of_group.values())
    _check_splits(data)
    assert len(data.splits.train) > len(data.splits.val)


def test_manifest_without_required_columns_names_the_columns_found(tmp_path: Path) -> None:
    _manifest(tmp_path / "m.csv", [["a.png", "x"]], ("file", "class"))
    with pytest.raises(DataError) as error:
        load_dataset(tmp_path / "m.csv")
    message = str(error.value)
    assert "'path'" in message and "'label'" in message
    assert "file" in message and "class" in message


def test_manifest_rows_with_missing_files_are_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [[f"{c}{i}.png", c] for c in "ab" for i in range(3)]
    for name, _ in rows:
        _noise(tmp_path / name, seed=len(name) + ord(name[0]) + int(name[1]))
    rows += [["gone.png", "a"], [str(tmp_path / "also_gone.jpg"), "b"]]
    _manifest(tmp_path / "m.csv", rows, ("path", "label"))
    with caplog.at_level(logging.WARNING, logger="edgenas.data"):
        data = load_dataset(tmp_path / "m.csv")
    assert len(data) == 6
    (message,) = [m for m in _warnings(caplog) if "does not exist" in m]
    assert "gone.png" in message and "also_gone.jpg" in message


def test_manifest_giving_one_file_two_labels(tmp_path: Path) -> None:
    rows = [[f"{c}{i}.png", c] for c in "ab" for i in range(3)] + [["a0.png", "b"]]
    for name, _ in rows[:6]:
        _noise(tmp_path / name, seed=ord(name[0]) * 10 + int(name[1]))
    _manifest(tmp_path / "m.csv", rows, ("path", "label"))
    with pytest.raises(DataError, match="two labels"):
        load_dataset(tmp_path / "m.csv")


# ---------------------------------------------------------------------------------------------
# splits


def test_splits_are_stratified_deterministic_and_seeded(tmp_path: Path) -> None:
    root = _class_folder(tmp_path / "d", {"a": 40, "b": 20, "c": 3})
    first = load_dataset(root, seed=7)
    again = load_dataset(root, seed=7)
    other = load_dataset(root, seed=8)
    _check_splits(first)
    for field in ("train", "val", "holdout"):
        assert np.array_equal(getattr(first.splits, field), getattr(again.splits, field))
    assert not np.array_equal(first.splits.holdout, other.splits.holdout)
    # About 15% of each class in validation and in holdout.
    in_val = Counter(first.labels[first.splits.val].tolist())
    in_holdout = Counter(first.labels[first.splits.holdout].tolist())
    assert 5 <= in_val[0] <= 7 and 5 <= in_holdout[0] <= 7
    assert in_val[2] == in_holdout[2] == 1


def test_fractions_are_honoured() -> None:
    data = load_dataset("synthetic", val_fraction=0.1, holdout_fraction=0.3)
    assert len(data.splits.val) == pytest.approx(0.1 * len(data), abs=4)
    assert len(data.splits.holdout) == pytest.approx(0.3 * len(data), abs=4)


def test_splits_record_is_frozen() -> None:
    splits = Splits(np.array([0, 2]), np.array([1]), np.array([3]))
    with pytest.raises(AttributeError):
        splits.train = np.array([1])
    assert splits.train.dtype == np.int64


# ---------------------------------------------------------------------------------------------
# decoding, cache, statistics, fingerprint


def test_images_are_cached_on_disk_and_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _class_folder(tmp_path / "d", {"a": 4, "b": 4}, rgb=True)
    cache = tmp_path / "cache"
    first = load_dataset(root, cache_dir=cache)
    decoded = first.images(20)
    assert decoded.shape == (8, 3, 20, 20)
    assert first.images(20) is decoded  # kept in memory
    path = first.cache_file(20)
    assert path is not None and path.is_file() and path.parent == cache
    assert "20px" in path.name and first.cache_file(21) != path

    second = load_dataset(root, cache_dir=cache)

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("images were decoded again instead of read from the cache")

    monkeypatch.setattr(Image, "open", no_decoding)
    assert torch.equal(second.images(20), decoded)


def test_changed_files_do_not_reuse_a_stale_cache(tmp_path: Path) -> None:
    root = _class_folder(tmp_path / "d", {"a": 3, "b": 3})
    cache = tmp_path / "cache"
    before = load_dataset(root, cache_dir=cache)
    before.images(8)
    _noise(root / "a" / "000.png", seed=99, size=(50, 50))
    after = load_dataset(root, cache_dir=cache)
    assert after.cache_file(8) != before.cache_file(8)
    assert after.fingerprint() != before.fingerprint()


def test_unreadable_cache_file_is_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = _class_folder(tmp_path / "d", {"a": 3, "b": 3})
    data = load_dataset(root, cache_dir=tmp_path / "cache")
    # A copy: the dataset's own tensor maps the file this test is about to overwrite in place.
    expected = data.images(8).clone()
    path = data.cache_file(8)
    assert path is not None
    path.write_bytes(b"half a file")
    with caplog.at_level(logging.WARNING, logger="edgenas.data"):
        assert torch.equal(load_dataset(root, cache_dir=tmp_path / "cache").images(8), expected)
    assert any("cache" in m for m in _warnings(caplog))


def test_bad_resolution() -> None:
    with pytest.raises(ConfigError):
        load_dataset("synthetic").images(0)


def test_mean_and_std_are_those_of_the_training_pixels(tmp_path: Path) -> None:
    root = _class_folder(tmp_path / "d", {"a": 5, "b": 5}, rgb=True)
    data = load_dataset(root)
    train = data.images(32)[torch.from_numpy(data.splits.train)].double() / 255
    assert len(data.mean) == len(data.std) == 3
    assert data.mean == pytest.approx(train.mean(dim=(0, 2, 3)).tolist(), abs=1e-6)
    assert data.std == pytest.approx(train.std(dim=(0, 2, 3), correction=0).tolist(), abs=1e-6)


def test_fingerprint_follows_the_data_not_its_location(tmp_path: Path) -> None:
    root = _class_folder(tmp_path / "d", {"a": 3, "b": 3})
    shutil.copytree(root, tmp_path / "copy" / "d")
    data = load_dataset(root)
    assert len(data.fingerprint()) == 16
    assert data.fingerprint() == load_dataset(tmp_path / "copy" / "d", seed=5).fingerprint()
    # Moving an image to the other class changes the labels, and so the fingerprint.
    shutil.move(root / "a" / "000.png", root / "b" / "moved.png")
    _noise(root / "a" / "new.png", seed=5)
    assert load_dataset(root).fingerprint() != data.fingerprint()


# ---------------------------------------------------------------------------------------------
# built-in datasets


def test_synthetic_dataset() -> None:
    data = load_dataset("synthetic")
    assert data.name == "synthetic"
    assert data.class_names == ["blob", "dots", "ring", "scratches"]
    assert len(data) == 960 and data.channels == 1
    assert Counter(data.labels.tolist()) == dict.fromkeys(range(4), 240)
    assert data.augment == AUGMENTATIONS
    _check_splits(data)
    images = data.images(32)
    assert images.shape == (960, 1, 32, 32) and images.dtype == torch.uint8
    assert images.float().std() > 10  # not blank
    # The images do not depend on the run seed; only the split does.
    other = load_dataset("synthetic", seed=1)
    assert torch.equal(other.images(32), images)
    assert other.fingerprint() == data.fingerprint()
    assert not np.array_equal(other.splits.val, data.splits.val)
    assert 0.2 < data.mean[0] < 0.8 and data.std[0] > 0.05


def test_synthetic_dataset_is_learnable() -> None:
    """A tiny CNN gets well above chance (25%) within three epochs."""
    data = load_dataset("synthetic")
    # One thread: for a network this small, thread hand-offs cost more than they save, and
    # far more on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        accuracy = _train_tiny_cnn(data)
    finally:
        torch.set_num_threads(threads)
    assert accuracy > 0.5


def _train_tiny_cnn(data: ImageDataset) -> float:
    torch.manual_seed(0)
    images = data.images(24).float() / 255
    x = (images - data.mean[0]) / data.std[0]
    y = torch.from_numpy(data.labels)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 32, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveMaxPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(32, 4),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    train = torch.from_numpy(data.splits.train)
    for _ in range(3):
        for batch in train[torch.randperm(len(train))].split(32):
            loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    val = torch.from_numpy(data.splits.val)
    with torch.no_grad():
        return (model(x[val]).argmax(1) == y[val]).float().mean().item()


def test_elpv_labels() -> None:
    data = load_dataset("elpv")
    assert len(data) == 2624 and data.channels == 1
    assert data.class_names == ["defective", "functional"]
    assert Counter(data.labels.tolist()) == {0: 821, 1: 1803}
    assert data.augment == AUGMENTATIONS
    _check_splits(data)
    # Decoding a few cells (all of them would be slow for a unit test).
    for i in (0, 1000, 2623):
        cell = data._pixels.read(i, 64, "L", resize="pad")
        assert cell.shape == (64, 64) and cell.dtype == np.uint8 and cell.std() > 1


def test_elpv4_labels() -> None:
    data = load_dataset("elpv4")
    assert data.class_names == ["p0.00", "p0.33", "p0.67", "p1.00"]
    assert Counter(data.labels.tolist()) == {0: 1508, 1: 295, 2: 106, 3: 715}
    assert data.fingerprint() != load_dataset("elpv").fingerprint()


def test_elpv_without_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "elpv_dataset", None)
    with pytest.raises(DataError, match="pip install elpv-dataset"):
        load_dataset("elpv")
