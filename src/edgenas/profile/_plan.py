"""The host half of profiling: the ONNX models a device must time, deduplicated, in one zip.

A network's latency is predicted from the latencies of its convolutions, each timed on its own,
plus calibration terms fitted on whole reference networks (see ``edgenas.cost.LatencyPredictor``).
The plan holds one ONNX model per distinct convolution of the sampled architectures and the
reference networks.
"""

from __future__ import annotations

import datetime as dt
import json
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from edgenas.arch import ConvOp, Genotype, Network, build_model, export_onnx
from edgenas.cost import conv_key, network_ops
from edgenas.device import PLAN_FORMAT
from edgenas.space import SearchSpace

__all__ = ["conv_model", "network_key", "write_plan"]


#: Random architectures (not planned) whose convolutions measure the plan's coverage.
COVERAGE_PROBE = 200


def network_key(genotype: Genotype, in_channels: int, num_classes: int) -> str:
    return f"{genotype}|in{in_channels}_n{num_classes}"


def conv_model(op: ConvOp) -> bytes:
    """One convolution as ONNX Runtime runs it inside a network: batch norm folded into a bias,
    ReLU fused. Weights are zeros: CPU arithmetic costs the same on any value, and zeros
    compress, so a plan of thousands of models stays small enough to copy to a device."""
    kh, kw = op.kernel
    weight = np.zeros((op.out_channels, op.in_channels // op.groups, kh, kw), np.float32)
    conv = helper.make_node(
        "Conv",
        ["x", "w", "b"],
        ["y"],
        kernel_shape=[kh, kw],
        strides=[op.stride, op.stride],
        pads=[kh // 2, kw // 2, kh // 2, kw // 2],
        group=op.groups,
    )
    x = helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, op.in_channels, op.in_size, op.in_size]
    )
    out = helper.make_tensor_value_info(
        "out", TensorProto.FLOAT, [1, op.out_channels, op.out_size, op.out_size]
    )
    weights = [
        numpy_helper.from_array(weight, "w"),
        numpy_helper.from_array(np.zeros(op.out_channels, np.float32), "b"),
    ]
    relu = helper.make_node("Relu", ["y"], ["out"])
    graph = helper.make_graph([conv, relu], "conv", [x], [out], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def write_plan(
    space: SearchSpace,
    out: Path,
    *,
    architectures: int = 2000,
    references: int = 200,
    in_channels: int = 3,
    num_classes: int = 10,
    seed: int = 0,
    extra: Iterable[Genotype] = (),
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, int]:
    """Write a plan: the distinct convolutions of ``architectures`` sampled genotypes (plus
    ``extra``) and the first ``references`` of them whole. Returns counts by kind.

    The default 2000 architectures of the ``edge`` space give about 8,000 convolutions, which
    cover about 98% of the convolutions of further random architectures; the rest are
    predicted by the fallback model. The 200 references calibrate the predictor."""
    rng = np.random.default_rng(seed)
    genotypes = list(extra) + [space.sample(rng) for _ in range(architectures)]
    convs: dict[str, ConvOp] = {}
    for g in genotypes:
        for op in network_ops(g, in_channels, num_classes).convs:
            convs.setdefault(conv_key(op), op)
    networks = genotypes[:references]
    # How much of the space the table covers: the share of the convolutions of other random
    # architectures that the plan holds (the rest the predictor models).
    probe_rng = np.random.default_rng([seed, 1])
    probe = [
        conv_key(op)
        for _ in range(COVERAGE_PROBE)
        for op in network_ops(space.sample(probe_rng), in_channels, num_classes).convs
    ]
    coverage = sum(k in convs for k in probe) / max(len(probe), 1)
    total = len(convs) + len(networks)
    models = []
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    # Reference networks are spread evenly among the convolutions, so that a machine whose
    # speed drifts during the hours of timing drifts alike for the table and the calibration.
    conv_items = list(convs.items())
    slots: dict[int, list[int]] = {}
    for j in range(len(networks)):
        slots.setdefault(round((j + 1) * len(conv_items) / (len(networks) + 1)), []).append(j)
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        done = 0
        for i in range(len(conv_items) + 1):
            for j in slots.get(i, []):
                g = networks[j]
                name = f"networks/{j:05d}.onnx"
                z.writestr(name, export_onnx(_zeroed(build_model(g, in_channels, num_classes))))
                models.append({"key": network_key(g, in_channels, num_classes),
                               "kind": "network", "file": name, "genotype": str(g)})  # fmt: skip
                done += 1
                if progress:
                    progress(done, total)
            if i == len(conv_items):
                break
            key, op = conv_items[i]
            name = f"models/{i:05d}.onnx"
            z.writestr(name, conv_model(op))
            models.append({"key": key, "kind": "conv", "file": name})
            done += 1
            if progress and (done % 100 == 0 or done == total):
                progress(done, total)
        header = {
            "format": PLAN_FORMAT,
            "version": 2,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "space": space.name,
            "in_channels": in_channels,
            "num_classes": num_classes,
            "coverage": {
                "convolutions": round(coverage, 4),
                "probed_architectures": COVERAGE_PROBE,
                "modelled": "convolutions not in the plan are predicted by a linear model per "
                "kind (dense, pointwise, depthwise) fitted on the timed ones",
            },
            "models": models,
        }
        z.writestr("plan.json", json.dumps(header, indent=1))
    tmp.replace(out)
    counts: dict[str, int] = {}
    for m in models:
        counts[m["kind"]] = counts.get(m["kind"], 0) + 1
    return counts


def _zeroed(module: Network) -> Network:
    """Zero the weights: CPU arithmetic costs the same on any value, and zeros compress, so a
    plan of thousands of models stays small enough to copy to a device."""
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()
    return module
