"""Expert utilization per task sentence, computed from the model's routing output and logged."""
from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf


def expert_utilization(model: tf.keras.Model, dataset: tf.data.Dataset,
                       max_batches: Optional[int] = None) -> Dict[str, List[float]]:
    """Mean routing weight of each expert over the rows of each task sentence.

    For GRec the per-row routing is the fraction of the row's tokens each expert processed, so a
    value is the fraction of that task sentence's rows (tokens) an expert served; for MMoE it is the
    mean softmax gate. Returns ``{"FLOW/USE_CASE": [E floats]}`` for every task sentence present
    (an unknown flow or use case is reported under ``"[UNK]"``); empty when the model has no routing.
    """
    flows = ["[UNK]"] + list(model.flows)
    use_cases = ["[UNK]"] + list(model.use_cases)
    sums: Dict[str, np.ndarray] = {}
    counts: Dict[str, int] = {}
    for i, batch in enumerate(dataset):
        if max_batches is not None and i >= max_batches:
            break
        out = model(batch, training=False)
        if "routing" not in out:
            return {}
        routing = out["routing"].numpy()
        keys = np.array([f"{flows[f]}/{use_cases[u]}" for f, u in zip(out["flow_id"].numpy(),
                                                                        out["use_case_id"].numpy())])
        for key in np.unique(keys):
            rows = keys == key
            sums[key] = sums.get(key, 0) + routing[rows].sum(axis=0)
            counts[key] = counts.get(key, 0) + int(rows.sum())
    return {key: (sums[key] / counts[key]).round(6).tolist() for key in sorted(sums)}


class ExpertUtilizationLogger(tf.keras.callbacks.Callback):
    """Writes expert utilization per task sentence to TensorBoard at the end of every epoch
    (scalars ``utilization/FLOW_USE_CASE/expert_E``) and keeps the latest in ``self.latest``."""

    def __init__(self, dataset: tf.data.Dataset, log_dir: str, max_batches: int = 8):
        super().__init__()
        self.dataset, self.max_batches = dataset, max_batches
        self.writer = tf.summary.create_file_writer(log_dir)
        self.latest: Dict[str, List[float]] = {}

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        self.latest = expert_utilization(self.model, self.dataset, self.max_batches)
        with self.writer.as_default(step=epoch):
            for key, values in self.latest.items():
                for expert, value in enumerate(values):
                    tf.summary.scalar(f"utilization/{key.replace('/', '_')}/expert_{expert}", value)
        self.writer.flush()
