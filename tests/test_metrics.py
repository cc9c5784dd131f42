"""Scores for imbalanced classes: the metric arithmetic, the trainer's score and class weights,
and a search that ranks, records and checks its best by another metric than accuracy."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _cli import run_cli
from torch import nn

from edgenas.data import Splits
from edgenas.errors import ConfigError
from edgenas.study import SearchConfig
from edgenas.study._study import RunDir, check_spec
from edgenas.train import (
    Fidelity,
    Metric,
    TrainConfig,
    class_report,
    evaluate,
    evaluate_confusion,
    fit,
    loss_class_weights,
    majority_baseline,
)

# Rows: true class a, b, c; columns: predicted a, b, c.
CONFUSION = np.array([[5, 1, 0], [2, 3, 1], [0, 0, 4]])
NAMES = ["a", "b", "c"]


# -- the arithmetic, against a matrix worked out by hand ---------------------------------------
def test_per_class_figures_match_the_hand_computed_matrix() -> None:
    report = class_report(CONFUSION, NAMES)
    # a: 5 of its 6 images found; 7 predicted a, 5 of them right. F1 = 2TP / (2TP + FP + FN).
    # b: 3 of 6 found, 4 predicted b. c: all 4 found, 5 predicted c.
    by_hand = {
        "a": (5 / 7, 5 / 6, 10 / 13, 6),
        "b": (3 / 4, 3 / 6, 6 / 10, 6),
        "c": (4 / 5, 4 / 4, 8 / 9, 4),
    }
    for name, (precision, recall, f1, support) in by_hand.items():
        figures = report["per_class"][name]
        assert figures["precision"] == pytest.approx(precision)
        assert figures["recall"] == pytest.approx(recall)
        assert figures["f1"] == pytest.approx(f1)
        assert figures["support"] == support
    assert report["images"] == 16
    assert report["accuracy"] == pytest.approx(12 / 16)
    assert report["balanced_accuracy"] == pytest.approx((5 / 6 + 3 / 6 + 1) / 3)
    assert report["macro_f1"] == pytest.approx((10 / 13 + 6 / 10 + 8 / 9) / 3)
    assert report["confusion_matrix"] == CONFUSION.tolist()
    json.dumps(report)  # JSON-ready as it is


def test_each_metric_scores_the_hand_computed_matrix() -> None:
    scores = {
        "accuracy": 12 / 16,
        "balanced-accuracy": (5 / 6 + 3 / 6 + 1) / 3,
        "macro-f1": (10 / 13 + 6 / 10 + 8 / 9) / 3,
        "recall:b": 3 / 6,
        "recall:c": 1.0,
    }
    for text, expected in scores.items():
        metric = Metric.parse(text)
        assert metric.name == text
        assert metric.score(CONFUSION, NAMES) == pytest.approx(expected), text


def test_majority_baseline_on_elpv_like_labels() -> None:
    # 69% of the cells are functional: answering "functional" always looks good on accuracy
    # and finds no defect at all.
    labels = np.array([0] * 69 + [1] * 31)
    names = ["functional", "defective"]
    recall = majority_baseline(labels, names, "recall:defective")
    assert recall["class"] == "functional" and recall["metric"] == "recall:defective"
    assert recall["score"] == 0.0
    assert recall["accuracy"] == pytest.approx(0.69)
    assert recall["balanced_accuracy"] == pytest.approx(0.5)
    # F1 of functional: 2·69 / (2·69 + 31); of defective: 0.
    assert recall["macro_f1"] == pytest.approx((138 / 169 + 0) / 2)
    assert majority_baseline(labels, names)["score"] == pytest.approx(0.69)


def test_balanced_class_weights_are_scikit_learns() -> None:
    labels = np.array([0] * 69 + [1] * 31)
    weights = loss_class_weights(labels, 2, "balanced")
    assert weights is not None
    assert weights.tolist() == pytest.approx([100 / (2 * 69), 100 / (2 * 31)])
    assert loss_class_weights(labels, 2, "none") is None
    # A class without training images never is a target: weight 1.
    assert loss_class_weights(labels, 3, "balanced").tolist()[2] == 1.0  # type: ignore[union-attr]


def test_bad_metric_and_class_weights_name_the_choices() -> None:
    with pytest.raises(ConfigError, match="balanced-accuracy, macro-f1, recall:CLASS"):
        Metric.parse("f2")
    with pytest.raises(ConfigError, match="needs a class name"):
        Metric.parse("recall:")
    with pytest.raises(ConfigError, match="its classes are a, b, c"):
        Metric.parse("recall:cracked").check_classes(NAMES)
    with pytest.raises(ConfigError, match="--metric 'f2'"):
        SearchConfig(data="synthetic", metric="f2")
    with pytest.raises(ConfigError, match=r"--class-weights 'inverse'.*none, balanced"):
        SearchConfig(data="synthetic", class_weights="inverse")
    with pytest.raises(ConfigError, match="class_weights"):
        TrainConfig(class_weights="inverse")


# -- the trainer -------------------------------------------------------------------------------
SIDE = 8


@dataclass(frozen=True)
class Imbalanced:
    """Nine "ok" images to one "defect", told apart by a faint, noisy brightness difference:
    a short training favours the common class, so balanced accuracy is not top-1 accuracy."""

    labels: np.ndarray
    splits: Splits
    pixels: torch.Tensor = field(repr=False)
    num_classes: int = 2
    channels: int = 1
    class_names: tuple[str, ...] = ("ok", "defect")
    augment: tuple[str, ...] = ()
    allow_rot90: bool = False
    allow_flips: bool = False

    def images(self, resolution: int) -> torch.Tensor:
        assert resolution == SIDE
        return self.pixels


def imbalanced(count: int = 600, seed: int = 0) -> Imbalanced:
    rng = np.random.default_rng(seed)
    labels = (rng.random(count) < 0.1).astype(np.int64)
    level = np.where(labels == 1, 0.56, 0.44)[:, None, None, None]
    noise = rng.uniform(-0.25, 0.25, size=(count, 1, SIDE, SIDE))
    pixels = torch.from_numpy(np.round(np.clip(level + noise, 0, 1) * 255).astype(np.uint8))
    order = rng.permutation(count)
    splits = Splits(
        train=np.sort(order[:400]), val=np.sort(order[400:500]), holdout=np.sort(order[500:])
    )
    return Imbalanced(labels=labels, splits=splits, pixels=pixels)


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2),
    )  # fmt: skip


def train(data: Imbalanced, **settings: Any) -> Any:
    config = TrainConfig(batch_size=32, lr=1e-2, augment=False, device="cpu", **settings)
    return fit(small_model(), data, Fidelity(epochs=2), resolution=SIDE, seed=0, config=config)


@pytest.fixture(scope="module")
def data() -> Imbalanced:
    return imbalanced()


def test_fit_reports_the_metric_of_its_own_confusion_matrix(data: Imbalanced) -> None:
    reported: list[float] = []
    config = TrainConfig(batch_size=32, lr=1e-2, augment=False, device="cpu",
                         metric="balanced-accuracy")  # fmt: skip
    result = fit(small_model(), data, Fidelity(epochs=2), resolution=SIDE, seed=0, config=config,
                 report=lambda epoch, score: reported.append(score) or True)  # fmt: skip
    assert result.confusion is not None and result.top1 is not None
    confusion = np.array(result.confusion)
    assert confusion.shape == (2, 2) and confusion.sum() == len(data.splits.val)
    assert result.accuracy == pytest.approx(
        Metric.parse("balanced-accuracy").score(confusion, ["ok", "defect"])
    )
    assert result.top1 == pytest.approx(np.trace(confusion) / confusion.sum())
    assert result.accuracy != pytest.approx(result.top1)  # the imbalance tells them apart
    assert list(result.history) == reported and reported[-1] == result.accuracy


def test_evaluate_confusion_counts_each_prediction(data: Imbalanced) -> None:
    model = small_model().eval()
    val = torch.from_numpy(data.splits.val)
    images, labels = data.pixels[val], torch.from_numpy(data.labels)[val]
    confusion = evaluate_confusion(model, images, labels, 2, batch_size=7)
    with torch.no_grad():
        predicted = model(images.float() / 255).argmax(dim=1).numpy()
    expected = np.zeros((2, 2), dtype=np.int64)
    np.add.at(expected, (labels.numpy(), predicted), 1)
    assert confusion.tolist() == expected.tolist()
    assert evaluate(model, images, labels) == pytest.approx(np.trace(confusion) / len(val))
    with pytest.raises(ValueError, match="labels must lie in"):
        evaluate_confusion(model, images, labels + 1, 2)


def test_balanced_class_weights_find_more_of_the_rare_class(data: Imbalanced) -> None:
    plain = train(data, metric="recall:defect")
    weighted = train(data, metric="recall:defect", class_weights="balanced")
    assert plain.confusion != weighted.confusion  # the weights changed the training
    # Recall of "defect": the rare class weighs 4.5x as much as the other in the loss.
    assert weighted.accuracy is not None and plain.accuracy is not None
    assert weighted.accuracy > plain.accuracy


def test_fit_names_the_classes_of_a_recall_of_a_class_it_lacks(data: Imbalanced) -> None:
    with pytest.raises(ConfigError, match="its classes are ok, defect"):
        train(data, metric="recall:cracked")


# -- a search ----------------------------------------------------------------------------------
QUICK = ["--resolution", "32", "--max-depth", "1", "--epochs", "1", "--strategy", "random"]


def test_a_search_by_recall_of_a_class_records_what_it_scored(tmp_path: Path, invoke: Any) -> None:
    out = tmp_path / "run"
    # In a process of its own: the printed front is the command's, whatever ran before here.
    result = run_cli("search", "synthetic", "--metric", "recall:ring", "--class-weights",
                     "balanced", "--trials", "2", "--out", str(out), *QUICK)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "val recall" in result.stdout  # the front's column names the score
    results = json.loads((out / "results.json").read_text())
    assert results["metric"] == "recall:ring" and results["metric_label"] == "recall of ring"
    assert results["class_weights"] == "balanced"
    # Synthetic's classes are equal in number: always answering the first finds no ring.
    baseline = results["majority_baseline"]
    assert baseline["validation"]["metric"] == "recall:ring"
    assert baseline["validation"]["score"] == 0.0 and baseline["holdout"]["score"] == 0.0
    trained = [t for t in results["trials"] if t["trained"]]
    assert len(trained) == 2
    for t in trained:
        confusion = np.array(t["confusion_matrix"])
        assert confusion.shape == (4, 4)
        # The trial's accuracy is the recall of ring (row 2), its top-1 accuracy beside it.
        ring = confusion[2]
        assert t["accuracy"] == pytest.approx(ring[2] / ring.sum())
        assert t["top1_accuracy"] == pytest.approx(np.trace(confusion) / confusion.sum())
    details = results["best_details"]
    assert details["metric"] == "recall:ring"
    holdout = details["holdout_report"]
    assert holdout["classes"] == ["blob", "dots", "ring", "scratches"]
    assert details["holdout_accuracy"] == pytest.approx(holdout["per_class"]["ring"]["recall"])
    assert results["best_holdout_accuracy"] == details["holdout_accuracy"]
    assert sum(map(sum, holdout["confusion_matrix"])) == details["holdout_images"]
    assert details["validation_report"]["images"] == details["validation_images"]

    # Resuming under another metric would compare recall with F1: refused, in one line.
    again = invoke("search", "synthetic", "--metric", "macro-f1", "--trials", "2",
                   "--out", str(out), *QUICK)  # fmt: skip
    assert again.exit_code == 2, again.output
    assert "--metric recall:ring there, macro-f1 now" in again.output
    assert "Traceback" not in again.output


def test_a_recall_of_a_class_the_data_lacks_is_refused_in_one_line(
    tmp_path: Path, invoke: Any
) -> None:
    result = invoke("search", "synthetic", "--metric", "recall:cracked",
                    "--out", str(tmp_path / "run"), *QUICK)  # fmt: skip
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    assert "'cracked'" in errors[0] and "blob, dots, ring, scratches" in errors[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "run" / "spec.json").exists()


def test_a_run_from_before_the_metric_was_recorded_resumes_as_accuracy(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "old")
    run.root.mkdir()
    older = {"data_fingerprint": "f", "epochs": 1}  # no metric, no class_weights
    run.spec.write_text(json.dumps(older))
    check_spec(run, {**older, "metric": "accuracy", "class_weights": "none"})  # resumes
    with pytest.raises(ConfigError, match="--metric accuracy there, balanced-accuracy now"):
        check_spec(run, {**older, "metric": "balanced-accuracy", "class_weights": "none"})
    with pytest.raises(ConfigError, match="--class-weights none there, balanced now"):
        check_spec(run, {**older, "metric": "accuracy", "class_weights": "balanced"})
