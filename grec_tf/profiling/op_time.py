"""Where a step's time goes: TensorFlow op time by op type, from a profiler trace of a few steps.

FLOPs (:mod:`grec_tf.profiling.flops`) say what a model must compute; op time says what the CPU spent on it. The
two differ most for element-wise ops (activations, layer norms, the MoE's gather/scatter), which have few FLOPs
and cost memory traffic, and for 16-bit dtypes, whose element-wise CPU kernels are not vectorized. This module
traces ``steps`` calls of a function with ``tf.profiler.experimental`` and sums the duration of every TensorFlow
op event of the host trace (XPlane), by op type. The times are thread-seconds: on 2 cores a step of 40 ms wall can
hold up to 80 ms of op time.
"""
import collections
import glob
import os
import tempfile
from typing import Callable, Dict

import tensorflow as tf
from tensorflow.python.framework import op_def_registry
from tensorflow.tsl.profiler.protobuf import xplane_pb2

#: op types that multiply matrices (oneDNN's ``_Mkl*`` kernels included)
MATMUL_TYPES = frozenset({"MatMul", "BatchMatMulV2", "BatchMatMulV3", "Einsum", "_MklMatMul", "_MklEinsum",
                          "_MklNativeFusedMatMul", "_MklNativeBatchMatMulV2", "_MklBatchMatMulV2", "_MklFusedMatMul"})


def op_milliseconds_by_type(step: Callable[[], object], steps: int) -> Dict[str, float]:
    """Thread-milliseconds per call of ``step`` spent in each TensorFlow op type.

    Args:
      step: runs one step and waits for it (e.g. a Keras train function on an iterator, then ``.numpy()``); it
        should already be traced, so the trace holds steady-state steps only.
      steps: how many calls to trace (the result is divided by it).

    Returns:
      ``{op type: ms per step}``, largest first (e.g. ``"_MklMatMul"``, ``"Erfc"``, ``"Mul"``).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    with tempfile.TemporaryDirectory(prefix="grec-op-time-") as logdir:
        tf.profiler.experimental.start(logdir)
        try:
            for _ in range(steps):
                step()
        finally:
            tf.profiler.experimental.stop()
        paths = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
        if not paths:
            raise RuntimeError(f"the profiler wrote no trace under {logdir}")
        space = xplane_pb2.XSpace()
        with open(paths[0], "rb") as f:
            space.ParseFromString(f.read())
    totals: Dict[str, float] = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name  # "scope/op_name:OpType"
                op_type = name.rsplit(":", 1)[-1] if ":" in name else None
                # other events (the executor, thread-pool work, whole functions) have no registered op type
                if op_type and op_def_registry.get(op_type) is not None:
                    totals[op_type] += event.duration_ps / 1e9 / steps
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def matmul_share(by_type: Dict[str, float]) -> float:
    """Fraction of the op time of :func:`op_milliseconds_by_type` spent multiplying matrices."""
    total = sum(by_type.values())
    return sum(ms for op, ms in by_type.items() if op in MATMUL_TYPES) / total if total else 0.0
