"""``final/MODEL_CARD.md``: what the model is, what it was trained and checked on, what it
costs, how it was compressed, and how to run it with ONNX Runtime on the device."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgenas._io import write_text
from edgenas.finalize._scores import per_class_rows

if TYPE_CHECKING:
    from edgenas.finalize._result import FinalResult

__all__ = ["write_model_card"]

_LIMIT_NAMES = {
    "max_latency_ms": ("latency", "ms"),
    "max_memory_mb": ("peak memory", "MB"),
    "max_size_mb": ("size", "MB"),
    "max_macs": ("MACs", ""),
    "max_params": ("parameters", ""),
    "max_energy_mj": ("energy (estimated)", "mJ"),
}


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _num(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}g}"


def _holds(entry: dict[str, Any], label: str) -> str:
    holds = entry.get(f"{label}_holds")
    if label not in entry:
        return ""
    if holds is None:
        return "not measured"
    value = entry[label]
    return f"{'✓' if holds else '✗'} {value:.4g}"


def write_model_card(path: Path, result: FinalResult, spec: dict[str, Any], data: Any) -> None:
    """Write the model card for ``result`` (a `FinalResult`) to ``path``."""
    best = result.best
    steps = result.steps
    last = next((s for s in reversed(steps) if s.kept), None)
    fp32 = next((s for s in reversed(steps) if s.kept and s.name != "int8"), None)
    g = best.genotype
    resolution = int(g.split("-", 1)[0].removeprefix("r"))
    classes = list(getattr(data, "class_names", []) or spec.get("classes") or [])
    metric = result.metric
    other = metric.kind != "accuracy"  # the steps' table gets the metric's columns too
    resize = str(getattr(data, "resize", "squash"))
    lines: list[str] = [
        f"# Model card: {Path(result.run_dir).name}",
        "",
        f"Written by `edgenas finalize` on {_dt.date.today().isoformat()}. Every figure below "
        "was measured on the machine that ran it, unless it says *predicted*.",
        "",
        "## Model",
        "",
        f"- Architecture (genotype): `{g}`",
        f"- Chosen from the search as trial {best.trial} (validation {metric.label} during "
        f"the search: {_pct(best.search_accuracy)}); retrained from scratch for {best.epochs} "
        "epoch(s) on the training split.",
        f"- Input: `image`, float32, shape (N, {data.channels}, {resolution}, {resolution}), "
        "pixels scaled to [0, 1]; the model normalises them itself.",
        f"- Output: `logits`, shape (N, {len(classes) or data.num_classes}); classes in order: "
        + ", ".join(f"{i} = {c}" for i, c in enumerate(classes))
        + ".",
        "",
        "## Data",
        "",
        f"- Dataset: `{spec.get('data')}` (fingerprint `{spec.get('data_fingerprint')}`), "
        f"{len(data.labels)} images in {data.num_classes} classes.",
        f"- Split (seed {spec.get('seed')}, per class): {len(data.splits.train)} training, "
        f"{best.val_images} validation, {best.holdout_images} holdout images. The search saw "
        "only the training and validation splits; the holdout split was used for the figures "
        "below and for nothing else.",
        "",
        "## Accuracy and costs after each step",
        "",
        "Accuracy is that of the step's ONNX file run with ONNX Runtime; the holdout interval "
        "is a Wilson 95% interval. Latency: batch 1, ONNX Runtime CPU, "
        f"{(spec.get('latency') or {}).get('threads', 1)} thread(s), every step's model timed "
        "side by side in interleaved rounds (median). Peak memory: what loading and running "
        "the model adds to a process with ONNX Runtime imported (a fresh process). Size: the "
        "ONNX file, and deflated.",
        "",
        "| step | kept | validation | holdout [95%] | "
        + (f"validation {metric.label} | holdout {metric.label} | " if other else "")
        + "latency ms | peak memory MB | size MB | deflated MB | params | MACs |",
        "|" + " --- |" * (12 if other else 10),
    ]
    for s in steps:
        lo, hi = s.holdout_interval
        lines.append(
            f"| {s.name} | {'yes' if s.kept else 'no'} | {_pct(s.val_accuracy)} | "
            f"{_pct(s.holdout_accuracy)} [{100 * lo:.1f}, {100 * hi:.1f}] | "
            + (f"{_pct(s.val_score)} | {_pct(s.holdout_score)} | " if other else "")
            + f"{s.latency_ms:.3f} | {_num(s.peak_memory_mb)} | {s.size_mb:.3f} | "
            f"{s.compressed_size_mb:.3f} | {s.params:,} | {s.macs:,} |"
        )
    lines += _per_class(result, last)
    lines += ["", "## Constraints", ""]
    if not result.constraints:
        lines.append("The run had no constraints.")
    else:
        header = "| step | " + " | ".join(
            f"{_LIMIT_NAMES.get(k, (k, ''))[0]} ≤ {v:g} {_LIMIT_NAMES.get(k, (k, ''))[1]}"
            for k, v in result.constraints.items()
        )
        lines += [header + " |", "|" + " --- |" * (len(result.constraints) + 1)]
        for s in steps:
            cells = []
            for k in result.constraints:
                entry = s.constraints.get(k, {})
                cell = _holds(entry, "measured")
                if "predicted" in entry:
                    cell += f" (predicted {_holds(entry, 'predicted')})"
                cells.append(cell)
            lines.append(f"| {s.name} | " + " | ".join(cells) + " |")
        lines += ["", "✓ holds, ✗ broken; measured here unless marked predicted."]
    if any(s.predicted for s in steps):
        lines += [
            "",
            "Predicted figures are for the device profile given with `--device`: its "
            "prediction of the architecture, scaled by the ratio each step changed the cost "
            "by here.",
        ]
    lines += ["", "## Compression steps", ""]
    for s in steps:
        lines.append(f"- **{s.name}** ({s.seconds:.0f} s): " + _describe(s))
    lines += [
        "",
        "## Files",
        "",
        "- `model.onnx`: the last fp32 model"
        + (f" ({fp32.name})" if fp32 else "")
        + "; `model.int8.onnx`: the INT8 model, when quantized; `model.pt`: the fp32 "
        "weights (`torch.load(..., weights_only=True)`); `genotype.txt`; `steps/`: every "
        "step's ONNX file; `final.json`: all figures.",
        "",
        "## Running it on the device",
        "",
        "Only `onnxruntime`, `numpy` and an image library are needed (no PyTorch):",
        "",
        "```python",
        "import numpy as np",
        "import onnxruntime as ort",
        "from PIL import Image",
        "",
        f'session = ort.InferenceSession("{"model.int8.onnx" if result.int8 else "model.onnx"}",'
        ' providers=["CPUExecutionProvider"])',
        f'image = Image.open("part.png").convert("{"L" if data.channels == 1 else "RGB"}")',
        *_square_code(resize, resolution),
        "x = np.asarray(image, dtype=np.float32) / 255.0",
        "x = x[None, None] if x.ndim == 2 else x.transpose(2, 0, 1)[None]",
        'logits = session.run(["logits"], {"image": x})[0]',
        f"classes = {classes!r}",
        "print(classes[int(logits.argmax())])",
        "```",
        "",
        "Set `SessionOptions.intra_op_num_threads` to the thread count the figures were measured "
        "with. Images must be prepared the way the training images were: "
        f"{_SQUARE_WORDS[resize]} to {resolution}×{resolution} with PIL's bilinear resize, "
        "as above.",
    ]
    if last is not None:
        lines += [
            "",
            f"The model to deploy is the last kept step, **{last.name}**: "
            f"{_pct(last.holdout_accuracy)} on the holdout"
            + (f" ({metric.label} {_pct(last.holdout_score)})" if other else "")
            + f", {last.latency_ms:.3f} ms here.",
        ]
    warnings = [c.gap_warning for c in result.candidates if c.gap_warning]
    if warnings:
        lines += ["", "## Warnings", "", *(f"- {w}" for w in warnings)]
    write_text(path, "\n".join(lines) + "\n")


_SQUARE_WORDS = {
    "squash": "the whole image squashed (no crop, no padding)",
    "crop": "the short side scaled and the long side centre-cropped",
    "pad": "the long side scaled and the image centred on black borders (nothing cut)",
}


def _square_code(resize: str, r: int) -> list[str]:
    """How the card's example makes an image square, as the training images were
    (edgenas.data's resize policies, written out with PIL alone)."""
    bilinear = "Image.Resampling.BILINEAR"
    if resize == "crop":
        return [
            "w, h = image.size",
            "side = min(w, h)",
            "box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)",
            f"image = image.resize(({r}, {r}), {bilinear}, box=box, reducing_gap=3.0)",
        ]
    if resize == "pad":
        return [
            "w, h = image.size",
            f"size = (max(1, round(w * {r} / max(w, h))), max(1, round(h * {r} / max(w, h))))",
            f"fitted = image.resize(size, {bilinear}, reducing_gap=3.0)",
            f"image = Image.new(fitted.mode, ({r}, {r}))",
            f"image.paste(fitted, (({r} - size[0]) // 2, ({r} - size[1]) // 2))",
        ]
    return [f"image = image.resize(({r}, {r}), {bilinear}, reducing_gap=3.0)"]


def _per_class(result: FinalResult, last: Any) -> list[str]:
    """The metric, the majority-class baseline, and the deployed model class by class on the
    holdout: precision, recall, F1, support and the confusion matrix."""
    metric, baselines = result.metric, result.baselines
    lines = ["", "## Class by class", ""]
    lines.append(
        f"- Metric: **{metric.label}** (`--metric {metric.name}`): the search ranked "
        "candidates by it on validation, and finalize chose between models by it."
    )
    described = [
        f"on the {'holdout' if split == 'holdout' else 'validation split'}, "
        f"{baselines[split].describe(metric)}"
        for split in ("holdout", "validation")
        if split in baselines
    ]
    if described:
        lines.append(
            "- Majority-class baseline (what always answering the most frequent class "
            f"scores): {'; '.join(described)}. A model worth deploying beats it clearly."
        )
    report = result.reports().get("holdout")
    if not report:
        return lines
    which = f"the last kept step, {last.name}" if last is not None else "the retrained model"
    lines += [
        "",
        f"The model to deploy ({which}) on the {report['images']} holdout images: "
        f"accuracy {_pct(report.get('accuracy'))}, balanced accuracy "
        f"{_pct(report.get('balanced_accuracy'))}, macro F1 {_pct(report.get('macro_f1'))}.",
        "",
        "| class | precision | recall | F1 | support |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, precision, recall, f1, support in per_class_rows(report):
        lines.append(f"| {name} | {_pct(precision)} | {_pct(recall)} | {_pct(f1)} | {support} |")
    classes = [str(c) for c in report.get("classes") or []]
    matrix = report.get("confusion_matrix") or []
    lines += [
        "",
        "Confusion matrix on the holdout (rows: true class, columns: predicted class):",
        "",
        "| true ↓ predicted → | " + " | ".join(classes) + " |",
        "|" + " --- |" * (len(classes) + 1),
    ]
    for name, row in zip(classes, matrix, strict=False):
        lines.append(f"| {name} | " + " | ".join(str(int(n)) for n in row) + " |")
    return lines


def _describe(step: Any) -> str:
    d = step.detail
    if step.name == "full training":
        return f"trained from scratch for {d.get('epochs')} epoch(s)."
    if step.name == "distillation":
        teacher = d.get("teacher", {})
        without = d.get("without", {})
        return (
            f"a fresh student trained with {teacher.get('source')} (`{teacher.get('genotype')}`) "
            f"as teacher (alpha {d.get('alpha')}, temperature {d.get('temperature')}); "
            f"validation {step.metric} {_pct(step.score)} against "
            f"{_pct(without.get('val_score') or without.get('val_accuracy'))} without a "
            f"teacher, so it was {'kept' if step.kept else 'not kept'}."
        )
    if step.name == "structured pruning":
        t = d.get("target", {})
        return (
            f"channels removed (torch-pruning, L1 magnitude) with per-layer ratios from a "
            f"sensitivity analysis, aimed at {t.get('cost')} ≤ {_num(t.get('value'))} "
            f"{t.get('unit')} (given as {t.get('given')}); validation "
            f"{d.get('metric') or 'accuracy'} "
            f"{_pct(d.get('val_score_before_finetune', d.get('val_accuracy_before_finetune')))} "
            f"before and {_pct(step.score)} after {d.get('finetune_epochs')} epoch(s) of "
            "fine-tuning."
        )
    if step.name in ("magnitude pruning", "movement pruning"):
        overall = (d.get("sparsity") or {}).get("overall")
        return (
            f"{d.get('method')} pruning to {_pct(d.get('sparsity_target'))} weight sparsity "
            f"with a cubic schedule over {d.get('finetune_epochs')} epoch(s), first and last "
            f"layers dense; measured sparsity {_pct(overall)}. {d.get('note', '')}."
        )
    if step.name == "int8":
        check = step.onnx_check
        return (
            f"{d.get('method')}, calibrated on {d.get('calibration_images')} training images; "
            f"validation {_pct(step.val_accuracy)} against {_pct(d.get('fp32_val_accuracy'))} "
            f"in fp32; top-1 agreement with the fp32 model "
            f"{_pct(check.get('top1_agreement'))} on {check.get('images')} holdout images."
        )
    return ""
