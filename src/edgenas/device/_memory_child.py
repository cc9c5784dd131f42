"""The process :func:`~edgenas.device.measure_onnx_memory` starts for each measurement.

It lives in a module of its own so that ``python -m`` runs it without importing it twice.
"""

from __future__ import annotations

from edgenas.device._memory import child_main

if __name__ == "__main__":
    child_main()
