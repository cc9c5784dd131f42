"""The holdout split is never used to choose: relabelling every holdout image changes the
holdout figures a search and ``finalize`` report, and no choice either of them makes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import edgenas
from edgenas.data import ImageDataset
from edgenas.finalize import CompressOptions, finalize


def _wrong_holdout(load: Callable[..., ImageDataset]) -> Callable[..., ImageDataset]:
    """``load_dataset`` whose holdout images each carry the next class's label (so every one
    is wrong), while training and validation images keep theirs."""

    def load_with_wrong_holdout(*args: Any, **kwargs: Any) -> ImageDataset:
        data = load(*args, **kwargs)
        labels = data.labels.copy()
        holdout = data.splits.holdout
        labels[holdout] = (labels[holdout] + 1) % data.num_classes
        data.labels = labels
        return data

    return load_with_wrong_holdout


def _search_and_finalize(out: Path) -> tuple[edgenas.SearchResult, Any]:
    # Accuracy objective with a limit every candidate meets: latency, which is measured and
    # noisy, takes no part in any choice, so two runs can be compared choice for choice.
    result = edgenas.search(
        "synthetic", out=out, objective="accuracy", trials=5, epochs=2, strategy="tpe",
        space=edgenas.edge_space(resolutions="32", max_depth=1), seed=0, max_latency="1s",
    )  # fmt: skip
    final = finalize(out, top=2, epochs=1, options=CompressOptions(quantize="none"))
    return result, final


def _choices(result: edgenas.SearchResult, final: Any) -> dict[str, Any]:
    return {
        "trials": [(t.number, t.genotype, t.state, t.accuracy, t.epochs) for t in result.trials],
        "best": result.best.number if result.best else None,
        "finalists": [(c.trial, c.genotype, c.val_accuracy) for c in final.candidates],
        "exported": final.best.trial,
    }


@pytest.mark.slow  # two searches and two finalize runs: about two minutes
def test_wrong_holdout_labels_change_no_choice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edgenas.data

    honest, honest_final = _search_and_finalize(tmp_path / "honest")

    # The search and finalize import load_dataset from edgenas.data when they load the data.
    monkeypatch.setattr(edgenas.data, "load_dataset", _wrong_holdout(edgenas.data.load_dataset))
    wrong, wrong_final = _search_and_finalize(tmp_path / "wrong")

    # The relabelling reached the holdout figures...
    assert honest.results["best_holdout_accuracy"] != wrong.results["best_holdout_accuracy"]
    assert [c.holdout_accuracy for c in honest_final.candidates] != [
        c.holdout_accuracy for c in wrong_final.candidates
    ]
    # ...and nothing that was chosen.
    assert _choices(honest, honest_final) == _choices(wrong, wrong_final)
