"""Fault injection: the device profiler's --out (not a profile, the plan itself, a damaged
profile, an interrupted run) and images over PIL's decompression-bomb limits."""

from __future__ import annotations

import errno
import json
import logging
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgenas.data import load_dataset
from edgenas.device import PlanError, main, profile_plan, read_plan
from edgenas.device import _profiler as profiler_module
from edgenas.profile import write_plan
from edgenas.space import edge_space

# ---------------------------------------------------------------------------------------------
# edgenas-device --out


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("plan") / "plan.zip"
    space = edge_space(resolutions="64", max_depth=1)
    write_plan(space, path, architectures=2, references=1, in_channels=1, num_classes=2)
    assert len(read_plan(path)[1]) >= 3
    return path


@pytest.fixture(scope="module")
def profile(plan: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished profile of ``plan``, to copy."""
    out = tmp_path_factory.mktemp("profile") / "profile.json"
    profile_plan(plan, out, max_seconds=0.02, memory=False)
    return out


def _device(plan: Path, out: Path | str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run ``edgenas-device PLAN --out OUT``; its exit status and what it printed."""
    code = main([str(plan), "--out", str(out), "--max-seconds", "0.02", "--no-memory"])
    return code, capsys.readouterr().err


def _one_line_error(code: int, err: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err and err.startswith("error: --out ")
    assert len(err.strip().splitlines()) == 1, err
    return err


def _listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


@pytest.mark.parametrize("kind", ["readme", "json", "zip"])
def test_out_that_is_not_a_profile_is_never_overwritten(
    plan: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    out = tmp_path / {"readme": "README.md", "json": "settings.json", "zip": "other.zip"}[kind]
    if kind == "readme":
        out.write_text("# My board\n\nNotes I do not want to lose.\n")
    elif kind == "json":
        out.write_text(json.dumps({"threads": 1, "measurements": {"mine": 1}}))
    else:
        shutil.copy(plan, out)
    before = _listing(tmp_path)
    err = _one_line_error(*_device(plan, out, capsys))
    assert "not a profile written by edgenas-device" in err
    assert f"give another --out, or move {out} away" in err
    assert _listing(tmp_path) == before  # untouched, and no file beside it


def test_out_that_is_the_plan_is_refused_however_it_is_spelled(
    plan: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mine = tmp_path / "plan.zip"
    shutil.copy(plan, mine)
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.zip").symlink_to(mine)
    before = _listing(tmp_path)
    for out in (mine, tmp_path / "sub" / ".." / "plan.zip", tmp_path / "link.zip"):
        err = _one_line_error(*_device(mine, out, capsys))
        assert "is the plan itself; give another --out" in err
        assert _listing(tmp_path) == before


def test_damaged_profile_is_refused_not_silently_timed_again(
    plan: Path, profile: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "pi4.json"
    whole = profile.read_bytes()
    out.write_bytes(whole[: len(whole) // 2])  # a copy that stopped half way
    before = _listing(tmp_path)
    err = _one_line_error(*_device(plan, out, capsys))
    assert "is a damaged profile" in err and f"move {out} away" in err
    assert _listing(tmp_path) == before
    with pytest.raises(PlanError, match="damaged profile"):
        profile_plan(plan, out, max_seconds=0.02, memory=False)
    assert _listing(tmp_path) == before


def test_interrupted_profile_keeps_its_measurements_when_run_again(
    plan: Path, tmp_path: Path
) -> None:
    out = tmp_path / "pi4.json"

    def stop_after_two(done: int, total: int, entry: object, ms: float) -> None:
        if done == 2:
            raise KeyboardInterrupt  # Ctrl-C after the second model

    with pytest.raises(KeyboardInterrupt):
        profile_plan(plan, out, max_seconds=0.02, progress=stop_after_two, memory=False)
    partial = json.loads(out.read_text())  # whole JSON, not half of one
    assert not partial["complete"] and len(partial["measurements"]) == 2

    calls: list[int] = []
    resumed = profile_plan(plan, out, max_seconds=0.02, memory=False,
                           progress=lambda done, total, entry, ms: calls.append(done))  # fmt: skip
    _, entries, _ = read_plan(plan)
    assert resumed["complete"] and len(resumed["measurements"]) == len(entries)
    assert calls and min(calls) > 2  # the first two models were not timed again
    for key, measured in partial["measurements"].items():
        kept = resumed["measurements"][key]
        assert {name: kept[name] for name in measured} == measured, key


def test_profile_that_cannot_be_written_is_a_one_line_error(
    plan: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(path: Path, payload: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(profiler_module, "write_json", disk_full)
    code, err = _device(plan, tmp_path / "pi4.json", capsys)
    assert code == 2 and "Traceback" not in err
    last = err.strip().splitlines()[-1]  # after the lines of progress
    assert last.startswith("error: cannot write --out") and "No space left on device" in last


# ---------------------------------------------------------------------------------------------
# images over PIL's decompression-bomb limits


def _folder_with(tmp_path: Path, name: str, side: int) -> Path:
    """Two classes of small images, and one ``side``×``side`` grayscale PNG (zeros compress
    to a small file, however many pixels)."""
    root = tmp_path / "data"
    for label in ("good", "defect"):
        (root / label).mkdir(parents=True)
        for i in range(4):
            Image.new("L", (16, 16), 40 * i).save(root / label / f"{i}.png")
    Image.fromarray(np.zeros((side, side), np.uint8)).save(root / "good" / name)
    return root


def _bomb_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [
        str(w.message) for w in caught if issubclass(w.category, Image.DecompressionBombWarning)
    ]


def test_image_over_the_pixel_limit_is_skipped_with_its_size(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = _folder_with(tmp_path, "huge.png", 14_000)  # 196 megapixels
    with (
        caplog.at_level(logging.WARNING, logger="edgenas.data"),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        data = load_dataset(root)
    assert len(data) == 8
    (message,) = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert message.startswith("skipped 1 unreadable image file(s)")
    assert "good/huge.png (196 megapixels, over the 179-megapixel limit for one image: " in message
    assert "downscale it" in message and "DOS attack" not in message
    assert _bomb_warnings(caught) == []


def test_image_between_pil_warning_and_limit_loads_without_pil_warning(tmp_path: Path) -> None:
    root = _folder_with(tmp_path, "large.png", 10_000)  # 100 megapixels: PIL warns, then reads
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_dataset(root)
        assert len(data) == 9
        assert data.images(8).shape == (9, 1, 8, 8)
    assert _bomb_warnings(caught) == []
