"""A progress bar a person can read: the total loss and the mean AUC over use cases, for train and validation.

TFRS and the ranker log a loss and an AUC per use case plus four loss variants (13 values for four use cases,
twice with validation), which wrap the Keras progress bar over several lines. The full set still reaches the
History, TensorBoard and ``metrics.json``; only what is printed while training is reduced.
"""
from __future__ import annotations

import re
from typing import Dict, Optional

import numpy as np
import tensorflow as tf

_AUC = re.compile(r"^(val_)?(.+)_auc$")


def concise_logs(logs: Optional[Dict]) -> Dict:
    """``total_loss`` (task loss + the MoE auxiliary losses: what the optimizer minimizes), ``mean_auc`` (the
    mean of the use cases' AUCs) and, on validation, ``val_task_loss`` (what early stopping watches) and
    ``val_mean_auc``."""
    logs = logs or {}
    out = {key: logs[key] for key in ("total_loss", "val_task_loss") if key in logs}
    for prefix in ("", "val_"):
        aucs = [float(v) for k, v in logs.items() if (m := _AUC.match(k)) and (m.group(1) or "") == prefix]
        if aucs:
            out[f"{prefix}mean_auc"] = float(np.mean(aucs))
    return out


class ConciseProgress(tf.keras.callbacks.ProgbarLogger):
    """Keras' progress bar showing :func:`concise_logs` of the logs instead of all of them."""

    def __init__(self):
        super().__init__(count_mode="steps")

    def on_train_batch_end(self, batch, logs=None) -> None:
        super().on_train_batch_end(batch, concise_logs(logs))

    def on_test_batch_end(self, batch, logs=None) -> None:
        super().on_test_batch_end(batch, concise_logs(logs))

    def on_epoch_end(self, epoch, logs=None) -> None:
        super().on_epoch_end(epoch, concise_logs(logs))

    def on_test_end(self, logs=None) -> None:
        super().on_test_end(concise_logs(logs))
