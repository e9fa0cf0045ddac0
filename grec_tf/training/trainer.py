"""Training an experiment end to end: data -> statistics -> model.fit -> evaluation -> metrics.json.

Fault tolerance uses Keras' own ``BackupAndRestore``: the model, optimizer and the position in the
epoch are checkpointed every ``train.checkpoint_every`` steps under ``{out}/backup``, and a run
restarted on the same ``out`` folder continues from there.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Dict, List, Sequence

import numpy as np
import pandas as pd
import tensorflow as tf

from grec_tf.atomic_files import write_json_atomic
from grec_tf.config import ExperimentConfig
from grec_tf.data.dataset import make_dataset
from grec_tf.data.feature_arrays import frame_to_arrays
from grec_tf.data.feature_statistics import FeatureStatistics, compute_feature_statistics
from grec_tf.metrics import task_sentence_metrics
from grec_tf.models.multi_task_ranker import MultiTaskRanker
from grec_tf.serving.signatures import placeholder_batch
from grec_tf.training.expert_utilization import ExpertUtilizationLogger, expert_utilization
from grec_tf.training.run_folder import save_config


@dataclass
class TrainingRun:
    """What :func:`train` produced: the trained model and its report."""

    model: MultiTaskRanker
    statistics: FeatureStatistics
    metrics: Dict
    history: Dict[str, List[float]] = field(default_factory=dict)


class _StepCounter(tf.keras.callbacks.Callback):
    """Counts the training steps this process ran (a resumed run does not redo the restored ones)."""

    def __init__(self):
        super().__init__()
        self.steps = 0

    def on_train_batch_end(self, batch, logs=None) -> None:
        self.steps += 1


def build_model(config: ExperimentConfig, statistics: FeatureStatistics) -> MultiTaskRanker:
    """A compiled model; applies ``train.mixed_precision`` (e.g. ``mixed_bfloat16``) first."""
    policy = config.train.mixed_precision or "float32"
    tf.keras.mixed_precision.set_global_policy(policy)
    model = MultiTaskRanker(config, statistics)
    model.compile(optimizer=tf.keras.optimizers.Adam(config.train.learning_rate),
                  steps_per_execution=config.train.steps_per_execution)
    return model


def predict_probabilities(model: MultiTaskRanker, arrays: Dict[str, np.ndarray], batch_size: int) -> np.ndarray:
    """[N] probability of each row's own task sentence."""
    dataset = make_dataset({k: v for k, v in arrays.items() if k != "label"}, batch_size)
    predict = tf.function(lambda batch: model(batch, training=False)["probability"])
    return np.concatenate([predict(batch).numpy() for batch in dataset])


def evaluate_frame(model: MultiTaskRanker, frame: pd.DataFrame, config: ExperimentConfig) -> Dict:
    """Metrics of the model (and of ``oracle_p`` when the frame has it) on a long-format frame."""
    arrays = frame_to_arrays(frame, config)
    scored = frame[["flow", "use_case"]].copy()
    scored["label"] = frame[config.data.label_column].to_numpy()
    group = config.data.group_column if config.data.group_column in frame else None
    if group:
        scored[group] = frame[group].to_numpy()
    scored["score"] = predict_probabilities(model, arrays, max(config.data.batch_size, 1024))
    report = {"test": task_sentence_metrics(scored, "score", group)}
    if "oracle_p" in frame:
        scored["oracle_p"] = frame["oracle_p"].to_numpy()
        oracle = task_sentence_metrics(scored, "oracle_p", group)
        report["oracle"] = {k: {"auc": v["auc"], "ap": v["ap"]} for k, v in oracle.items()}
    return report


def count_params(model: tf.keras.Model) -> int:
    return int(sum(np.prod(v.shape) for v in model.trainable_variables))


def train(config: ExperimentConfig, out_dir: str, splits: Dict[str, pd.DataFrame],
          callbacks: Sequence[tf.keras.callbacks.Callback] = (), verbose: int = 1) -> TrainingRun:
    """Fits a model on ``splits["train"]`` (early stopping on ``splits["valid"]``), evaluates it on
    ``splits["test"]`` and writes ``{out_dir}/metrics.json`` atomically. ``callbacks`` are added to
    the standard ones (TensorBoard, BackupAndRestore, EarlyStopping, expert utilization)."""
    os.makedirs(out_dir, exist_ok=True)
    save_config(config, out_dir)
    statistics = compute_feature_statistics(splits["train"], config)
    write_json_atomic(os.path.join(out_dir, "statistics.json"), statistics.to_dict())
    model = build_model(config, statistics)
    model(placeholder_batch(config), training=False)  # BackupAndRestore needs a built model

    d = config.data
    train_ds = make_dataset(frame_to_arrays(splits["train"], config), d.batch_size, shuffle=True,
                            shuffle_buffer=d.shuffle_buffer, seed=d.seed)
    valid_ds = make_dataset(frame_to_arrays(splits["valid"], config), max(d.batch_size, 1024))
    log_dir = os.path.join(out_dir, "logs")
    utilization = ExpertUtilizationLogger(valid_ds, os.path.join(log_dir, "utilization"))
    standard = [
        tf.keras.callbacks.BackupAndRestore(os.path.join(out_dir, "backup"), save_freq=config.train.checkpoint_every),
        tf.keras.callbacks.TensorBoard(log_dir, update_freq=max(config.train.checkpoint_every // 4, 1)),
        tf.keras.callbacks.EarlyStopping(monitor="val_task_loss", patience=config.train.early_stopping_patience,
                                         restore_best_weights=True, verbose=verbose),
        utilization,
    ]
    counter = _StepCounter()
    started = time.perf_counter()
    history = model.fit(train_ds, validation_data=valid_ds, epochs=config.train.epochs,
                        callbacks=standard + [counter] + list(callbacks), verbose=verbose)
    seconds = time.perf_counter() - started
    model.save_weights(os.path.join(out_dir, "checkpoints", "final"))

    report = evaluate_frame(model, splits["test"], config)
    steps = int(model.optimizer.iterations.numpy())
    m = config.model
    report["model"] = {"type": m.type, "routing": m.routing if m.type == "grec" else None,
                       "experts": m.num_experts if m.type != "shared_bottom" else 0,
                       "top_k": m.top_k if m.type == "grec" else (m.num_experts if m.type == "mmoe" else 0),
                       "params": count_params(model)}
    # After a resume, `steps` counts the steps before the crash too; speed uses this process's only.
    report["train"] = {"steps": steps, "seconds": round(seconds, 2),
                       "steps_this_run": counter.steps,
                       "examples_per_second": round(counter.steps * d.batch_size / max(seconds, 1e-9), 1),
                       "epochs_run": len(history.history.get("loss", []))}
    report["utilization"] = utilization.latest or expert_utilization(model, valid_ds, 8)
    write_json_atomic(os.path.join(out_dir, "metrics.json"), report)
    return TrainingRun(model=model, statistics=statistics, metrics=report, history=history.history)
