"""What a training step costs, for the ``throughput`` benchmark (and the op-time table of ``scaling``): forward
FLOPs per example and the step's op time by op type. They split a speed ratio between two models into how much each
must compute and how fast it computes:

    speed ratio (examples/s) = flop-rate ratio / FLOPs ratio,

where a model's flop rate is its training examples/s times its forward FLOPs per example (a backward pass costs
about twice the forward in both models, so the factor cancels in the ratio). A model that trains slower because it
computes more is a design trade; one that runs its FLOPs slower is an implementation gap.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Mapping

import numpy as np
import tensorflow as tf

from grec_tf.benchmarks.forward_flops import FLOPS_BATCH, model_flops
from grec_tf.profiling import count_flops, matmul_share, op_milliseconds_by_type

PROFILE_WARMUP, PROFILE_STEPS, PROFILE_TOP = 3, 10, 10


def grec_forward_flops_per_row(model: tf.keras.Model, dataset: tf.data.Dataset) -> float:
    """Forward FLOPs per long row of a GRec-TF ranker's bottom and towers on the first batch of ``dataset``
    (feature dicts; a ``label`` entry is dropped), as training computes them: the token mixer's shared work once
    per impression of the batch (``model_flops(..., shared=True)``). The encoders are left out."""
    batch = next(iter(dataset))
    return float(model_flops(model, {k: v for k, v in batch.items() if k != "label"}, shared=True)["total"])


def peer_forward_flops_per_example(model: tf.keras.Model, features: Mapping[str, np.ndarray]) -> float:
    """Forward FLOPs per example of a Keras model taking a dict of [N, ...] arrays (a DeepCTR model), priced on
    its first ``FLOPS_BATCH`` examples."""
    names = sorted(features)
    inputs = [tf.constant(np.asarray(features[name])[:FLOPS_BATCH]) for name in names]

    @tf.function
    def forward(*tensors):
        return model(dict(zip(names, tensors)), training=False)

    return count_flops(forward, *inputs) / int(inputs[0].shape[0])


def train_step_profile(model: tf.keras.Model, dataset: tf.data.Dataset) -> Dict:
    """:func:`step_profile` of the model's Keras train step (after ``fit``: its train function is traced) on
    ``dataset``."""
    train = model.make_train_function()
    iterator = iter(dataset.repeat())
    return step_profile(lambda: tf.nest.map_structure(lambda value: value.numpy(), train(iterator)))


def step_profile(step: Callable[[], object]) -> Dict:
    """Op time of ``step`` (runs one step and waits for it) by op type: ``PROFILE_STEPS`` steps after
    ``PROFILE_WARMUP``. Returns the total thread-ms per step, the matmul share, and the ``PROFILE_TOP`` largest op
    types (the rest summed under ``other``)."""
    for _ in range(PROFILE_WARMUP):
        step()
    by_type = op_milliseconds_by_type(step, PROFILE_STEPS)
    top = dict(list(by_type.items())[:PROFILE_TOP])
    top["other"] = sum(by_type.values()) - sum(top.values())
    return {"steps": PROFILE_STEPS, "op_ms_per_step": sum(by_type.values()), "matmul_share": matmul_share(by_type),
            "op_ms_by_type": {op: round(ms, 3) for op, ms in top.items()}}


def flop_rate_split(rows: Mapping[str, Dict], unit: str, reference: str) -> Dict[str, Dict[str, float]]:
    """For every row with forward FLOPs: its FLOPs per ``unit``, the training flop rate (GFLOP/s, forward FLOPs
    times training ``unit``/s) and, against ``reference``, the FLOPs ratio, the flop-rate ratio and the speed
    ratio (= flop-rate ratio / FLOPs ratio)."""
    def rate(row: Dict) -> float:
        return row[f"train_{unit}_per_second"] * row[f"forward_flops_per_{unit}"] / 1e9

    ref = rows.get(reference)
    out = {}
    for key, row in rows.items():
        if row.get(f"forward_flops_per_{unit}") is None:
            continue
        entry = {f"forward_flops_per_{unit}": row[f"forward_flops_per_{unit}"], "train_gflops_per_second": rate(row)}
        if ref is not None and ref.get(f"forward_flops_per_{unit}"):
            entry.update(flops_ratio=row[f"forward_flops_per_{unit}"] / ref[f"forward_flops_per_{unit}"],
                         flop_rate_ratio=rate(row) / rate(ref),
                         speed_ratio=row[f"train_{unit}_per_second"] / ref[f"train_{unit}_per_second"])
        out[key] = entry
    return out


def profile_markdown(profiles: Mapping[str, Dict]) -> List[str]:
    """A table of op ms per step by op type, one column per profiled model (e.g. ``grec/fp32``, ``grec/bf16``)."""
    if not profiles:
        return []
    keys = list(profiles)
    ops = [op for op in dict.fromkeys(op for p in profiles.values() for op in p["op_ms_by_type"]) if op != "other"]
    lines = ["| op type | " + " | ".join(f"{key} ms/step" for key in keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for op in ops + ["other"]:
        cells = [profiles[key]["op_ms_by_type"].get(op) for key in keys]
        lines.append(f"| {op} | " + " | ".join("-" if c is None else f"{c:.2f}" for c in cells) + " |")
    lines.append("| **all ops** | " + " | ".join(f"{profiles[k]['op_ms_per_step']:.2f}" for k in keys) + " |")
    lines.append("| matmul share | " + " | ".join(f"{profiles[k]['matmul_share']:.0%}" for k in keys) + " |")
    return lines
