"""Whether an exported ONNX model computes what the PyTorch network does."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["onnx_max_abs_diff"]


def onnx_max_abs_diff(
    model: torch.nn.Module, onnx_bytes: bytes, images_uint8: torch.Tensor
) -> float:
    """Largest absolute difference between the logits of ``model`` and of its ONNX export
    ``onnx_bytes`` (run by ONNX Runtime on the CPU), on uint8 images in NCHW.

    ``model`` must be in eval mode and on the CPU.
    """
    import onnxruntime as ort

    x = images_uint8.float() / 255.0
    with torch.inference_mode():
        expected = model(x).numpy()
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    return float(np.abs(got - expected).max())
