"""Fitting a compiled model with the standard callbacks, and what a training run reports.

Fault tolerance uses Keras' own ``BackupAndRestore``: the model, optimizer and the position in the epoch
are checkpointed every ``train.checkpoint_every`` steps under ``{out}/backup``, and a run restarted on the
same ``out`` folder continues from there. Under a multi-worker strategy every worker backs up (Keras writes the
chief's backup to ``{out}/backup``, the others' to temporary folders it removes) and every worker restores from
the chief's, so a killed worker and a restarted cluster resume where the last backup was taken; the logs and the
final weights go to ``write_dir``, the run folder on the chief and a temporary folder elsewhere (see
:func:`grec_tf.training.distribution.writable_dir`). Early stopping watches ``val_task_loss``, the epoch mean of the
weighted per-use-case losses without the MoE auxiliary losses (the quantity the towers are judged by).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from grec_tf.config import TrainConfig
from grec_tf.data.feature_statistics import FeatureStatistics
from grec_tf.training.expert_utilization import ExpertUtilizationLogger
from grec_tf.training.progress import ConciseProgress


@dataclass
class TrainingRun:
    """What a training run produced: the trained model, the statistics it was built from, its report
    (``metrics.json``), the Keras history, and whether this process is the chief (the one that wrote the run
    folder; always, outside a multi-worker cluster)."""

    model: tf.keras.Model
    statistics: FeatureStatistics
    metrics: Dict
    history: Dict[str, List[float]] = field(default_factory=dict)
    chief: bool = True


class StepCounter(tf.keras.callbacks.Callback):
    """Counts the optimizer steps, long rows and impressions this process trained: a resumed run does not
    count the restored ones, and with ``steps_per_execution > 1`` one batch callback stands for several steps,
    so each count is a counter of the graph (the optimizer's iterations, the model's
    :class:`~grec_tf.models.multi_task_ranker.TrainedExamples`) at the end minus its value once training (and
    any restore) began."""

    def __init__(self):
        super().__init__()
        self.start: Dict[str, int] = {}
        self.counts: Dict[str, int] = {"steps": 0, "rows": 0, "impressions": 0}

    def _now(self) -> Dict[str, int]:
        return {"steps": int(self.model.optimizer.iterations.numpy()), **self.model.trained_examples.numpy()}

    def on_train_begin(self, logs=None) -> None:
        self.start = self._now()

    def on_train_end(self, logs=None) -> None:
        self.counts = {name: value - self.start[name] for name, value in self._now().items()}

    @property
    def steps(self) -> int:
        return self.counts["steps"]


def standard_callbacks(out_dir: str, train: TrainConfig, valid: tf.data.Dataset, verbose: int,
                       write_dir: Optional[str] = None) -> List[tf.keras.callbacks.Callback]:
    """BackupAndRestore under ``{out_dir}/backup`` (first, so later callbacks see the restored state),
    TensorBoard, EarlyStopping on ``val_task_loss`` and the expert-utilization logger, both logging under
    ``{write_dir}/logs`` (``write_dir`` defaults to ``out_dir``)."""
    log_dir = os.path.join(write_dir or out_dir, "logs")
    return [
        tf.keras.callbacks.BackupAndRestore(os.path.join(out_dir, "backup"), save_freq=train.checkpoint_every),
        tf.keras.callbacks.TensorBoard(log_dir, update_freq=max(train.checkpoint_every // 4, 1)),
        tf.keras.callbacks.EarlyStopping(monitor="val_task_loss", patience=train.early_stopping_patience,
                                         restore_best_weights=True, verbose=verbose),
        ExpertUtilizationLogger(valid, os.path.join(log_dir, "utilization")),
    ]


@dataclass
class FitResult:
    """Keras ``history``, the ``train`` section of ``metrics.json`` and the last expert utilization."""

    history: Dict[str, List[float]]
    report: Dict
    utilization: Dict[str, List[float]]


def fit(model: tf.keras.Model, train_data: tf.data.Dataset, valid_data: tf.data.Dataset, out_dir: str,
        train: TrainConfig, callbacks: Sequence[tf.keras.callbacks.Callback] = (), verbose: int = 1,
        write_dir: Optional[str] = None) -> FitResult:
    """``model.fit`` (a :class:`~grec_tf.models.multi_task_ranker.MultiTaskRanker`) with the standard callbacks
    (backup under ``out_dir``, logs under ``write_dir``, default ``out_dir``), then saves
    ``{write_dir}/checkpoints/final``.

    The report holds the optimizer steps in total and in this process, seconds, epochs run, and what the run
    trained per second over every replica and worker: ``examples_per_second`` (long rows) and
    ``impressions_per_second`` (impressions as the model encoded them, see ``TrainedExamples``).
    """
    write_dir = write_dir or out_dir
    standard = standard_callbacks(out_dir, train, valid_data, verbose, write_dir)
    if verbose:
        standard.append(ConciseProgress())  # replaces Keras' own bar (one ProgbarLogger per fit)
    counter = StepCounter()
    started = time.perf_counter()
    history = model.fit(train_data, validation_data=valid_data, epochs=train.epochs,
                        callbacks=standard + [counter] + list(callbacks), verbose=verbose)
    seconds = time.perf_counter() - started
    model.save_weights(os.path.join(write_dir, "checkpoints", "final"))
    counts = counter.counts
    report = {"steps": int(model.optimizer.iterations.numpy()), "steps_this_run": counts["steps"],
              "rows_this_run": counts["rows"], "impressions_this_run": counts["impressions"],
              "seconds": round(seconds, 2), "epochs_run": len(history.history.get("loss", [])),
              "examples_per_second": round(counts["rows"] / max(seconds, 1e-9), 1),
              "impressions_per_second": round(counts["impressions"] / max(seconds, 1e-9), 1)}
    utilization = next(c for c in standard if isinstance(c, ExpertUtilizationLogger)).latest
    return FitResult(history.history, report, utilization)


def count_params(model: tf.keras.Model) -> int:
    """Trainable parameters."""
    return int(sum(np.prod(v.shape) for v in model.trainable_variables))
