"""``edgenas search --one-shot``: a supernet, subnets judged by inherited weights, the best
trained again; and a saved supernet reused for another limit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from _cli import EDGENAS, run_cli

# One stage deep, 32 px: a supernet epoch and a few judged subnets take seconds.
SMALL = ["--resolution", "32", "--max-depth", "1", "--epochs", "1", "--seed", "3"]


def model_file(run: Path, trial: dict[str, object]) -> Path:
    """Where a trial's weights are saved."""
    return run / "trials" / f"{trial['number']:05d}" / "model.pt"


@pytest.fixture(scope="module")
def one_shot_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("oneshot") / "syn"
    proc = run_cli(
        "search", "synthetic", "--one-shot", "--supernet-epochs", "2", "--subnets", "12",
        "--finetune", "2", "--out", str(out), *SMALL,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "training the supernet" in proc.stderr and "supernet epoch 2/2" in proc.stderr
    return out


def test_one_shot_search_judges_subnets_and_trains_the_best_again(one_shot_run: Path) -> None:
    results = json.loads((one_shot_run / "results.json").read_text())
    trials = results["trials"]
    judged = [t for t in trials if t.get("one_shot")]
    assert len(judged) == 12 and results["summary"]["one_shot"] == 12
    # judged by inherited weights: an accuracy, costs, no training and no weights on disk
    assert all(t["accuracy"] is not None and not t["trained"] for t in judged)
    assert not any(model_file(one_shot_run, t).exists() for t in judged)
    again = [t for t in trials if t.get("start")]
    assert sorted(t["start"] for t in again) == sorted(["judged", "inherited", "scratch"] * 2)
    # as judged: no training, the weights it was judged with, on disk and scoring the same
    for t in (t for t in again if t["start"] == "judged"):
        source = next(j for j in judged if j["number"] == t["finetune_of"])
        assert t["epochs"] == 0 and t["accuracy"] == source["accuracy"]
        assert model_file(one_shot_run, t).is_file()
    # only the fine-tuned and from-scratch models count as trained
    assert results["summary"]["trained"] == 4
    info = results["one_shot"]
    assert info["subnets_judged"] == 12 and info["subnets_per_hour"] > 0
    assert info["epochs"] == 2 and info["seconds"] > 0 and not info["reused"]
    assert sorted({t["finetune_of"] for t in again}) == sorted(info["trained_again"])
    # the fine-tunings ran at a tenth of the learning rate, distilled from the largest subnet
    recipe = info["finetune_recipe"]
    assert recipe["distilled_from"] == info["teacher"] and recipe["lr"] == pytest.approx(3e-4)
    # the two trained again are the two best judged (by validation accuracy)
    best_judged = sorted(judged, key=lambda t: -t["accuracy"])[:2]
    assert {t["accuracy"] for t in best_judged} == {
        next(j["accuracy"] for j in judged if j["number"] == n) for n in info["trained_again"]
    }
    # the best is one of the trainings, exported, with its holdout accuracy
    assert results["best"] in {t["number"] for t in again}
    assert results["best_holdout_accuracy"] is not None
    assert (one_shot_run / "best.onnx").is_file() and (one_shot_run / "supernet.pt").is_file()
    # show says what the supernet did and how many subnets it judged
    shown = run_cli("show", str(one_shot_run))
    assert shown.returncode == 0, shown.stderr
    text = " ".join(shown.stdout.split())
    assert "12 judged by inherited weights" in text and "12 subnets judged" in text
    assert json.loads(run_cli("show", str(one_shot_run), "--json").stdout)["one_shot"] == info


def test_a_saved_supernet_is_reused_without_training(one_shot_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "again"
    proc = run_cli(
        "search", "synthetic", "--one-shot", "--supernet", str(one_shot_run / "supernet.pt"),
        "--subnets", "5", "--finetune", "1", "--max-latency", "5ms", "--out", str(out), *SMALL,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "training the supernet" not in proc.stderr
    assert not (out / "supernet.pt").exists()
    info = json.loads((out / "results.json").read_text())["one_shot"]
    assert info["reused"] and info["supernet"] == str(one_shot_run / "supernet.pt")
    assert info["subnets_judged"] == 5


def test_one_shot_options_are_checked_before_any_work(tmp_path: Path) -> None:
    proc = run_cli("search", "synthetic", "--supernet", "x.pt", "--out", str(tmp_path / "a"))
    assert proc.returncode == 2 and "add --one-shot" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "a").exists()
    proc = run_cli(
        "search", "synthetic", "--one-shot", "--supernet", str(tmp_path / "none.pt"),
        "--out", str(tmp_path / "b"), *SMALL,
    )  # fmt: skip
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_cli("search", "synthetic", "--one-shot", "--fidelity-schedule", "sh",
                   "--out", str(tmp_path / "c"))  # fmt: skip
    assert proc.returncode == 2 and "drop --fidelity-schedule" in proc.stderr


@pytest.mark.slow
def test_a_killed_one_shot_search_resumes_its_supernet(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["search", "synthetic", "--one-shot", "--supernet-epochs", "4", "--subnets", "4",
            "--finetune", "1", "--out", str(out), *SMALL]  # fmt: skip
    proc = subprocess.Popen([*EDGENAS, *args], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "160"})  # fmt: skip
    assert proc.stderr is not None
    for line in proc.stderr:
        if "supernet epoch 2/4" in line:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.5)
    proc2 = subprocess.run([*EDGENAS, *args], capture_output=True, text=True, timeout=600,
                           env={**os.environ, "COLUMNS": "160"})  # fmt: skip
    assert proc2.returncode == 0, proc2.stderr
    # the epochs done before the kill are not trained again
    assert "supernet epoch 2/4" not in proc2.stderr and "supernet epoch 4/4" in proc2.stderr
    info = json.loads((out / "results.json").read_text())["one_shot"]
    assert info["epochs"] == 4 and [h["epoch"] for h in info["history"]] == [1, 2, 3, 4]


def test_a_narrower_space_fits_a_supernet_and_a_wider_one_is_named() -> None:
    from edgenas.space import edge_space
    from edgenas.study._oneshot import space_within

    full = edge_space()
    assert space_within(edge_space(blocks="ir,ds", max_depth=2, resolutions="64"), full) is None
    assert space_within(full, edge_space(blocks="ir,ds")) == (
        "block types ['bneck', 'conv', 'res'] are not the supernet's"
    )
    assert "stage 0 depths [3, 4]" in (space_within(full, edge_space(max_depth=2)) or "")
