"""``--augment`` and ``--resize``: what the data allows training to do to an image, and how an
image of another aspect ratio becomes the square input, from the option to the pixels.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _cli import run_cli
from PIL import Image
from torch import nn

from edgenas.data import AUGMENTATIONS, RESIZE_POLICIES, load_dataset
from edgenas.errors import ConfigError
from edgenas.study import SearchConfig
from edgenas.train import Fidelity, TrainConfig, augment_batch, fit

# A wide image, 60×30, on a mid-gray background (so black padding stands out): a white stripe
# at the left end, a light one in the middle, a dark one at the right end.
WIDE = (60, 30)
BACKGROUND, LEFT, MIDDLE, RIGHT = 100, 255, 200, 40


def _wide_image() -> np.ndarray:
    pixels = np.full((WIDE[1], WIDE[0]), BACKGROUND, dtype=np.uint8)
    pixels[:, 0:6] = LEFT
    pixels[:, 26:34] = MIDDLE
    pixels[:, 54:60] = RIGHT
    return pixels


def _folder(root: Path, pixels: np.ndarray) -> Path:
    """Two classes of three copies of ``pixels`` each (the second class a little brighter)."""
    for name, offset in (("a", 0), ("b", 10)):
        (root / name).mkdir(parents=True)
        for i in range(3):
            shifted = np.clip(pixels.astype(np.int16) + offset, 0, 255).astype(np.uint8)
            Image.fromarray(shifted).save(root / name / f"{i}.png")
    return root


@pytest.fixture
def wide_folder(tmp_path: Path) -> Path:
    return _folder(tmp_path / "wide", _wide_image())


def _first(data: Any, resolution: int = 30) -> np.ndarray:
    """The first image (class a: no brightness offset) as the network's input sees it."""
    return data.images(resolution)[0, 0].numpy().astype(np.float64)


# ------------------------------------------------------------------------------------- resize


def test_squash_stretches_the_whole_image_into_the_square(wide_folder: Path) -> None:
    image = _first(load_dataset(wide_folder, resize="squash"))
    assert image.shape == (30, 30)
    # Every row is the whole image at half its width: all three stripes, no border.
    assert np.allclose(image, image[:1], atol=1)
    row = image[15]
    assert row[:2].min() > 220 and row[14:16].min() > 170 and row[28:].max() < 70
    assert image.min() > 30


def test_crop_keeps_the_middle_and_drops_the_ends(wide_folder: Path) -> None:
    image = _first(load_dataset(wide_folder, resize="crop"))
    # Height 30 is kept at scale 1; the middle 30 columns (15 to 44) remain.
    assert image.shape == (30, 30)
    assert np.allclose(image[:, 11:19], MIDDLE, atol=1)  # columns 26-33, now 11-18
    assert np.allclose(image[:, :9], BACKGROUND, atol=1)
    assert image.max() < LEFT - 20 and image.min() > RIGHT + 20  # both ends are gone


def test_pad_keeps_everything_on_black_borders(wide_folder: Path) -> None:
    image = _first(load_dataset(wide_folder, resize="pad"))
    # Scaled to 30×15 and centred: rows 7-21 hold the image, the rest is black.
    assert (image[:7] == 0).all() and (image[22:] == 0).all()
    inside = image[7:22]
    assert inside.min() > 30  # no black inside
    assert inside[:, :2].min() > 220  # the left end is still there...
    assert inside[:, 14:16].min() > 170  # ...the middle...
    assert inside[:, 28:].max() < 70  # ...and the right end


def test_pad_puts_a_tall_image_between_black_columns(tmp_path: Path) -> None:
    tall = np.ascontiguousarray(_wide_image().T)  # 30 wide, 60 high
    image = _first(load_dataset(_folder(tmp_path / "tall", tall), resize="pad"))
    assert (image[:, :7] == 0).all() and (image[:, 22:] == 0).all()
    assert image[:2, 7:22].min() > 220 and image[28:, 7:22].max() < 70


def test_square_images_come_out_the_same_under_every_policy() -> None:
    images = [load_dataset("synthetic", resize=policy).images(32) for policy in RESIZE_POLICIES]
    assert all(torch.equal(images[0], other) for other in images[1:])


def test_each_policy_has_its_own_decode_cache(wide_folder: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    padded = load_dataset(wide_folder, cache_dir=cache, resize="pad")
    expected_pad = padded.images(30).clone()
    cropped = load_dataset(wide_folder, cache_dir=cache, resize="crop")
    assert cropped.cache_file(30) != padded.cache_file(30)
    # The crop is decoded, not read from the pad's cache file: it has no black border.
    assert cropped.images(30)[:, :, :7].float().mean() > 90
    # And each reads back its own.
    assert torch.equal(load_dataset(wide_folder, cache_dir=cache, resize="pad").images(30),
                       expected_pad)  # fmt: skip


def test_the_model_card_prepares_images_as_training_did() -> None:
    """The card's example code (PIL alone) gives the pixels the network was trained on."""
    from edgenas.data._transforms import resize_image
    from edgenas.finalize._card import _square_code

    source = Image.fromarray(_wide_image())
    for policy in RESIZE_POLICIES:
        scope: dict[str, Any] = {"Image": Image, "image": source}
        exec("\n".join(_square_code(policy, 24)), scope)
        assert np.array_equal(np.asarray(scope["image"]), resize_image(source, 24, policy))


# ------------------------------------------------------------------------------------ augment

# An image that every flip and turn changes: a bar along the top of its left half.
SIDE = 16


def _bar() -> np.ndarray:
    pixels = np.zeros((SIDE, SIDE), dtype=np.uint8)
    pixels[0:4, 0:8] = 255
    return pixels


def _mirrored(images: torch.Tensor) -> torch.Tensor:
    """Which images have the bar in their right half (a left-right mirror image, or a turn)."""
    half = images.shape[-1] // 2
    return images[..., :half].sum(dim=(-3, -2, -1)) < images[..., half:].sum(dim=(-3, -2, -1))


def test_flip_h_mirrors_and_flip_v_never_does() -> None:
    x = torch.from_numpy(_bar()).float().div(255)[None, None].expand(512, 1, -1, -1)
    g = torch.Generator().manual_seed(0)
    flipped = augment_batch(x, g, ops=("flip-h",), strength=1.0)
    assert _mirrored(flipped).any() and not _mirrored(flipped).all()
    assert any(torch.equal(image, x[0].flip(-1)) for image in flipped)
    upside_down = augment_batch(x, g, ops=("flip-v", "shift", "brightness", "contrast"),
                                strength=1.0)  # fmt: skip
    assert not _mirrored(upside_down).any()
    assert torch.equal(augment_batch(x, g, ops=(), strength=1.0), x)


class _Recorder(nn.Module):
    """Keeps every batch the network is trained on."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.seen.append(x.detach().clone())
        return x


def _trained_on(data: Any) -> torch.Tensor:
    """Every training input ``fit`` gives a small network on ``data`` over 24 epochs."""
    recorder = _Recorder()
    torch.manual_seed(0)
    model = nn.Sequential(recorder, nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))  # fmt: skip
    config = TrainConfig(batch_size=4, device="cpu", threads=1)
    fit(model, data, Fidelity(epochs=24), resolution=SIDE, seed=0, config=config)
    return torch.cat(recorder.seen)


@pytest.mark.parametrize(
    ("augment", "mirrors"),
    [("flip-h", True), ("rot90", True), ("flip-v,shift,brightness,contrast", False)],
)
def test_training_draws_only_the_augmentations_the_option_allows(
    tmp_path: Path, augment: str, mirrors: bool
) -> None:
    data = load_dataset(_folder(tmp_path / "bars", _bar()), augment=augment)
    seen = _trained_on(data)
    assert bool(_mirrored(seen).any()) is mirrors


def test_augment_none_trains_on_the_images_as_they_are(tmp_path: Path) -> None:
    data = load_dataset(_folder(tmp_path / "bars", _bar()), augment="none")
    assert data.augment == ()
    originals = data.images(SIDE).float().div(255)
    seen = _trained_on(data)
    assert all(any(torch.equal(image, o) for o in originals) for image in seen)


def test_defaults_and_canonical_order(wide_folder: Path) -> None:
    assert load_dataset("synthetic").augment == AUGMENTATIONS
    assert load_dataset(wide_folder).augment == ("shift", "brightness", "contrast")
    assert load_dataset(wide_folder, augment=" Rot90,flip-h ").augment == ("flip-h", "rot90")


# ------------------------------------------------------------------------------- bad values


@pytest.mark.parametrize(
    ("augment", "words"),
    [
        ("flip-x", ["flip-x", "flip-h, flip-v, rot90, shift, brightness, contrast", "none"]),
        ("none,flip-h", ["none", "alone"]),
        ("", ["empty"]),
    ],
)
def test_a_bad_augment_names_the_word_and_the_choices(augment: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as raised:
        load_dataset("synthetic", augment=augment)
    assert "augment" in str(raised.value)
    assert all(word in str(raised.value) for word in words)
    with pytest.raises(ConfigError, match="--augment"):
        SearchConfig(data="synthetic", augment=augment)


def test_a_bad_resize_names_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"resize 'stretch'.*squash, crop or pad"):
        load_dataset("synthetic", resize="stretch")
    with pytest.raises(ConfigError, match="--resize 'stretch'"):
        SearchConfig(data="synthetic", resize="stretch")


@pytest.mark.parametrize(
    ("args", "named"),
    [(["--augment", "flip-h,twirl"], "'twirl'"), (["--resize", "stretch"], "--resize")],
)
def test_the_command_refuses_a_bad_value_in_one_line(
    tmp_path: Path, invoke: Any, args: list[str], named: str
) -> None:
    out = tmp_path / "run"
    result = invoke("search", "synthetic", "--out", str(out), *args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and named in result.output
    assert [line for line in result.output.splitlines() if line.startswith("error:")]
    assert not out.exists()


# ---------------------------------------------------------------- through the search's layers


def test_workers_and_finalize_load_the_data_as_the_run_did(tmp_path: Path) -> None:
    from edgenas.finalize._finalize import load_run_data
    from edgenas.study._workers import WorkerSetup, load_setup_data

    data = load_dataset("synthetic", augment="flip-h", resize="crop")
    setup = WorkerSetup(data="synthetic", cache_dir=None, seed=0, val_fraction=0.15,
                        holdout_fraction=0.15, fingerprint=data.fingerprint(), epochs=1,
                        data_fraction=1.0, augment=data.augment, resize=data.resize)  # fmt: skip
    worker_data, _ = load_setup_data(setup)
    assert (worker_data.augment, worker_data.resize) == (("flip-h",), "crop")
    spec = {"data": "synthetic", "seed": 0, "augment": ["flip-h"], "resize": "crop"}
    final_data = load_run_data(tmp_path, spec, None)
    assert (final_data.augment, final_data.resize) == (("flip-h",), "crop")
    # A run from before they were recorded: the data's default, squashed as it was then.
    older = load_run_data(tmp_path, {"data": "synthetic", "seed": 0}, None)
    assert (older.augment, older.resize) == (AUGMENTATIONS, "squash")


def test_search_shows_and_records_what_was_in_effect(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = run_cli(
        "search", "synthetic", "--trials", "1", "--max-depth", "1", "--strategy", "random",
        "--resolution", "32", "--epochs", "1", "--augment", "flip-h", "--resize", "crop",
        "--out", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "\n  augment flip-h (set by --augment)\n  resize crop (" in proc.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["run"]["augment"] == ["flip-h"] and results["run"]["resize"] == "crop"
    spec = json.loads((out / "spec.json").read_text())
    assert spec["augment"] == ["flip-h"] and spec["resize"] == "crop"
