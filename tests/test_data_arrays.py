"""Data from Python: images and labels as arrays or a torch Dataset, searched end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import edgenas
from edgenas.data import load_dataset, save_arrays
from edgenas.errors import ConfigError, DataError

SPACE = {"resolutions": "32", "max_depth": 1}


def _images(count: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two classes anyone can tell apart: dark and bright RGB squares, 40×40."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 2
    base = np.where(labels[:, None, None, None] == 1, 190, 60)
    noise = rng.integers(-40, 40, size=(count, 40, 40, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8), labels


class PairDataset(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """What a user's torch Dataset gives: (C, H, W) float tensors in [0, 1] and int labels."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = torch.from_numpy(self.images[index]).permute(2, 0, 1).float() / 255
        return image, int(self.labels[index])


def _search(data: object, out: Path, **options: object) -> edgenas.SearchResult:
    settings: dict[str, object] = {"trials": 1, "epochs": 1, "strategy": "random"}
    return edgenas.search(
        data, out=out, space=edgenas.edge_space(**SPACE), **{**settings, **options}
    )


def test_arrays_are_searched_end_to_end_and_resume_from_the_same_folder(tmp_path: Path) -> None:
    images, labels = _images()
    names = ["dark", "bright"]
    result = _search((images, labels), tmp_path / "run", class_names=names)
    assert result.best is not None and result.best_onnx is not None
    spec = json.loads((tmp_path / "run" / "spec.json").read_text())
    folder = Path(spec["data"])
    assert folder.parent == tmp_path / "run" / "cache" and folder.name.startswith("arrays-")
    assert spec["classes"] == names
    data = load_dataset(folder)
    assert len(data) == 120 and data.channels == 3 and data.class_names == names
    # The pixels are the arrays' own (40×40 kept at 40×40).
    assert np.array_equal(data.images(40).numpy().transpose(0, 2, 3, 1), images)
    # The same arrays again resume the run: its trials are kept, none is lost or redone.
    again = _search((images, labels), tmp_path / "run", class_names=names, trials=2)
    assert sum(t.trained for t in again.trials) == 2
    saved = [p.name for p in (tmp_path / "run" / "cache").glob("arrays-*") if p.is_dir()]
    assert saved == [folder.name]


def test_a_torch_dataset_is_searched_end_to_end(tmp_path: Path) -> None:
    images, labels = _images(seed=1)
    result = _search(PairDataset(images, labels), tmp_path / "ds")
    assert result.best is not None
    spec = json.loads((tmp_path / "ds" / "spec.json").read_text())
    data = load_dataset(spec["data"])
    assert data.name == "PairDataset" and data.class_names == ["0", "1"]
    assert np.array_equal(data.labels, labels)
    # Floats in [0, 1] are stored as the uint8 pixels they came from.
    assert np.array_equal(data.images(40).numpy().transpose(0, 2, 3, 1), images)


def test_string_labels_and_channels_first_grayscale(tmp_path: Path) -> None:
    images = np.zeros((6, 1, 8, 8), dtype=np.uint8)
    images[3:] = 200
    labels = np.array(["ok", "ok", "ok", "scratch", "scratch", "scratch"])
    folder = save_arrays((images, labels), tmp_path)
    data = load_dataset(folder)
    assert data.class_names == ["ok", "scratch"] and data.channels == 1
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert int(data.images(8)[4].min()) == 200


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ((np.zeros((4, 8, 8, 5), np.uint8), np.arange(4) % 2), "1 or 3 channels"),
        ((np.zeros((4, 8, 8), np.uint8), np.arange(3) % 2), "one per image"),
        ((np.full((4, 8, 8), 2.0), np.arange(4) % 2), r"floats outside \[0, 1\]"),
        ((np.zeros((4, 8, 8), np.uint8), np.zeros(4, int)), "single class"),
        ("not data", "neither a path"),
    ],
)
def test_bad_arrays_are_named(data: object, message: str, tmp_path: Path) -> None:
    if isinstance(data, str):
        with pytest.raises(DataError, match=message):
            save_arrays(data, tmp_path)
        return
    with pytest.raises(DataError, match=message):
        save_arrays(data, tmp_path)


def test_a_dataset_of_mixed_sizes_is_named(tmp_path: Path) -> None:
    class Mixed(torch.utils.data.Dataset):  # type: ignore[type-arg]
        def __len__(self) -> int:
            return 3

        def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
            return np.zeros((8 + index, 8), np.uint8), index % 2

    with pytest.raises(DataError, match=r"item 0 is 8x8, item 1 is 9x8"):
        save_arrays(Mixed(), tmp_path)
    assert not list(tmp_path.iterdir())  # nothing half-written is left


def test_class_names_with_a_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="class_names"):
        edgenas.search("synthetic", out=tmp_path, class_names=["a", "b"])
