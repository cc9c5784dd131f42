"""The decoded-image cache: one memory-mapped file per resolution, shared by every process,
never used when a decode did not finish, and training that reads large splits from it."""

from __future__ import annotations

import logging
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from edgenas.arch import build_model
from edgenas.data import ImageDataset, _dataset, load_dataset
from edgenas.errors import DataError
from edgenas.train import Fidelity, TrainConfig, evaluate_confusion, fit
from edgenas.train import _trainer as trainer

GENOTYPE = "r16-stem8-conv_k3_c8_s2-head16"


def _python(code: str, cache: Path, *, wait: bool = True) -> subprocess.Popen[str]:
    """Run ``code`` in a fresh Python process with ``data`` loaded with ``cache``."""
    prelude = textwrap.dedent(
        f"""
        import logging, os, sys, time
        from pathlib import Path
        logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
        from edgenas.data import load_dataset
        data = load_dataset("synthetic", cache_dir=Path({str(cache)!r}))
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    if wait:
        process.wait(timeout=120)
    return process


def test_processes_share_one_mapped_cache_file_and_decode_it_once(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    # Both start on an empty cache at once: one decodes, the other waits and maps its file.
    code = """
        images = data.images(24)
        maps = open("/proc/self/maps").read() if os.path.exists("/proc/self/maps") else ""
        print("MAPPED", str(data.cache_file(24)) in maps)
        print("SUM", int(images.sum()))
    """
    processes = [_python(code, cache, wait=False) for _ in range(2)]
    outputs = [p.communicate(timeout=120)[0] for p in processes]
    assert all(p.returncode == 0 for p in processes), outputs
    decoded = sum(o.count("decoded 960 images") for o in outputs)
    mapped = sum(o.count("mapped synthetic images at 24px") for o in outputs)
    assert (decoded, mapped) == (1, 1), outputs
    sums = {line for o in outputs for line in o.splitlines() if line.startswith("SUM")}
    assert len(sums) == 1  # the same pixels
    expected = int(load_dataset("synthetic").images(24).sum())
    assert sums == {f"SUM {expected}"}
    if sys.platform.startswith("linux"):
        # Each process maps the file rather than holding a copy of its own.
        assert all("MAPPED True" in o for o in outputs), outputs
    files = sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock"))
    assert len(files) == 1 and files[0].endswith("-24px.npy")


def test_a_decode_killed_midway_leaves_nothing_that_is_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "cache"
    # A decode slowed down, so it can be killed while it writes.
    slow = """
        from edgenas.data import _sources
        read = _sources.ArrayImages.read
        def slow_read(self, *args, **kwargs):
            time.sleep(0.02)
            return read(self, *args, **kwargs)
        _sources.ArrayImages.read = slow_read
        print("START", flush=True)
        data.images(24)
        print("FINISHED", flush=True)
    """
    process = _python(slow, cache, wait=False)
    path = load_dataset("synthetic", cache_dir=cache).cache_file(24)
    assert path is not None
    deadline = time.monotonic() + 60
    while not list(cache.glob("*.partial")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(cache.glob("*.partial")), "the decode never started writing"
    time.sleep(0.3)
    process.send_signal(signal.SIGKILL)
    output = process.communicate(timeout=60)[0]
    assert "FINISHED" not in output
    assert not path.exists()  # the half-written file never had the cache's name

    with caplog.at_level(logging.INFO, logger="edgenas.data"):
        images = load_dataset("synthetic", cache_dir=cache).images(24)
    messages = [r.getMessage() for r in caplog.records]
    assert any("did not finish" in m for m in messages), messages
    assert any("decoded 960 images" in m for m in messages), messages
    assert torch.equal(images, load_dataset("synthetic").images(24))
    assert not list(cache.glob("*.partial")) and path.is_file()


def test_a_truncated_cache_file_is_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "cache"
    expected = load_dataset("synthetic", cache_dir=cache).images(16).clone()
    path = load_dataset("synthetic", cache_dir=cache).cache_file(16)
    assert path is not None
    whole = path.read_bytes()
    path.unlink()  # a new file: the dataset above still maps the old one
    path.write_bytes(whole[: len(whole) // 2])
    with caplog.at_level(logging.INFO, logger="edgenas.data"):
        assert torch.equal(load_dataset("synthetic", cache_dir=cache).images(16), expected)
    messages = [r.getMessage() for r in caplog.records]
    assert any("incomplete or unreadable" in m for m in messages)
    assert any("decoded 960 images" in m for m in messages)
    assert path.stat().st_size == len(whole)


def test_too_little_disk_is_said_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = load_dataset("synthetic", cache_dir=tmp_path / "cache")

    class Usage:
        free = 100_000  # bytes: less than 960 images at 96 px (8.8 MB)

    def no_decoding(*args: object) -> None:
        raise AssertionError("decoded although the disk is too small")

    monkeypatch.setattr(_dataset.shutil, "disk_usage", lambda path: Usage)
    monkeypatch.setattr(_dataset.ImageDataset, "_decode_into", no_decoding)
    with pytest.raises(DataError) as caught:
        data.images(96)
    message = str(caught.value)
    assert "needs 8.9 MB" in message and "0.1 MB free" in message and "--out" in message
    assert not [p for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")]


def test_too_little_memory_without_a_cache_is_said_before_decoding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_dataset, "_available_memory", lambda: 1_000_000)
    with pytest.raises(DataError, match=r"needs 8\.8 MB of memory.*cache_dir"):
        load_dataset("synthetic").images(96)


def test_a_pickled_dataset_carries_no_pixels(tmp_path: Path) -> None:
    data = load_dataset("synthetic", cache_dir=tmp_path / "cache")
    before = len(pickle.dumps(data))
    data.images(64)
    assert len(pickle.dumps(data)) == before
    copy = pickle.loads(pickle.dumps(data))
    assert torch.equal(copy.images(64), data.images(64))  # maps the same file


def _mapped_from(path: Path, address: int) -> bool:
    """Whether ``address`` lies in a mapping of the file ``path`` in this process."""
    for line in Path("/proc/self/maps").read_text().splitlines():
        if line.endswith(str(path)):
            start, end = (int(x, 16) for x in line.split()[0].split("-"))
            if start <= address < end:
                return True
    return False


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads Linux's /proc")
def test_training_reads_batches_from_the_mapped_file_as_from_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = TrainConfig(batch_size=32, threads=1, device="cpu")
    read_from: list[int] = []
    original = trainer.StreamedImages.__getitem__

    def counted(self: trainer.StreamedImages, key: slice | torch.Tensor) -> torch.Tensor:
        read_from.append(self.images.data_ptr())
        return original(self, key)

    monkeypatch.setattr(trainer.StreamedImages, "__getitem__", counted)

    def train(data: ImageDataset) -> tuple[float, ...]:
        torch.manual_seed(0)
        model = build_model(GENOTYPE, data.channels, data.num_classes, data.mean, data.std)
        return fit(model, data, Fidelity(epochs=2), resolution=16, seed=3, config=config).history

    in_memory = train(load_dataset("synthetic"))
    read_from.clear()
    data = load_dataset("synthetic", cache_dir=tmp_path / "cache")
    mapped = train(data)
    cache_file = data.cache_file(16)
    assert cache_file is not None
    # Every batch, for training and validation, was read from the mapped cache file.
    assert read_from and all(_mapped_from(cache_file, address) for address in read_from)
    assert mapped == in_memory


def test_streamed_images_gather_the_rows_asked_for() -> None:
    images = torch.arange(10 * 1 * 2 * 2, dtype=torch.uint8).reshape(10, 1, 2, 2)
    rows = torch.tensor([7, 2, 9, 0])
    streamed = trainer.StreamedImages(images, rows, torch.device("cpu"))
    assert len(streamed) == 4 and tuple(streamed.shape) == (4, 1, 2, 2)
    assert torch.equal(streamed[1:3], images[torch.tensor([2, 9])])
    assert torch.equal(streamed[torch.tensor([3, 0, 2])], images[torch.tensor([0, 7, 9])])


def test_the_cache_file_is_a_plain_npy_array(tmp_path: Path) -> None:
    data = load_dataset("synthetic", cache_dir=tmp_path / "cache")
    images = data.images(12)
    path = data.cache_file(12)
    assert path is not None and path.suffix == ".npy"
    assert np.array_equal(np.load(path), images.numpy())


def test_a_split_is_scored_from_the_mapped_images_without_a_copy(tmp_path: Path) -> None:
    data = load_dataset("synthetic", cache_dir=tmp_path / "cache")
    images = data.images(16)
    model = build_model(GENOTYPE, data.channels, data.num_classes, data.mean, data.std).eval()
    rows = data.splits.holdout
    labels = torch.as_tensor(data.labels)[rows]
    by_rows = evaluate_confusion(model, images, labels, data.num_classes, rows=rows)
    copied = evaluate_confusion(model, images[torch.as_tensor(rows)], labels, data.num_classes)
    assert by_rows.sum() == len(rows)
    assert np.array_equal(by_rows, copied)


def test_a_second_load_does_not_open_unchanged_files_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The image checks are kept in the cache: a worker or a resumed search opens only the
    files that changed, and a file broken since is still found and skipped."""
    from PIL import Image

    from edgenas.data import _sources

    root = tmp_path / "parts"
    rng = np.random.default_rng(0)
    for label in ("good", "scratch"):
        (root / label).mkdir(parents=True)
        for i in range(6):
            pixels = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / label / f"{i}.png")
    opened: list[str] = []
    real_open = Image.open

    def counted(path: Path, *args: object, **kwargs: object) -> Image.Image:
        opened.append(Path(path).name)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(_sources.Image, "open", counted)
    cache = tmp_path / "cache"
    first = load_dataset(root, cache_dir=cache)
    assert len(opened) == 12 and len(list(cache.glob("probes-*.json"))) == 1
    opened.clear()
    again = load_dataset(root, cache_dir=cache)
    assert opened == [] and again.fingerprint() == first.fingerprint()
    assert again.channels == first.channels == 3
    # one file replaced by another image, one cut short: only those two are opened again
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(root / "good" / "0.png")
    broken = root / "scratch" / "5.png"
    broken.write_bytes(broken.read_bytes()[:100])
    with caplog.at_level(logging.WARNING, logger="edgenas.data"):
        third = load_dataset(root, cache_dir=cache)
    assert sorted(opened) == ["0.png", "5.png"]
    assert len(third) == 11 and "scratch/5.png" in caplog.text
    # an unreadable file is checked again each time (it may have been mended); others are not
    opened.clear()
    load_dataset(root, cache_dir=cache)
    assert opened == ["5.png"]
    # without a cache every file is checked, every time
    opened.clear()
    load_dataset(root)
    assert len(opened) == 12
