"""Scoring a long-format split and measuring it per task sentence (next to the oracle when the data has one)."""
from __future__ import annotations

from typing import Dict

import numpy as np
import pandas as pd
import tensorflow as tf

from grec_tf.config import ExperimentConfig
from grec_tf.metrics import task_sentence_metrics


def predict_probabilities(model: tf.keras.Model, dataset: tf.data.Dataset) -> np.ndarray:
    """[N] probability of each row's own task sentence, over a batched dataset of feature dicts."""
    predict = tf.function(lambda batch: model(batch, training=False)["probability"])
    return np.concatenate([predict({k: v for k, v in batch.items() if k != "label"}).numpy() for batch in dataset])


def evaluate_scores(frame: pd.DataFrame, scores: np.ndarray, config: ExperimentConfig) -> Dict:
    """``{"test": metrics per task sentence and per use case}`` of ``scores`` [N] on ``frame``'s labels, plus
    ``"oracle"`` (AUC/AP of the ``oracle_p`` column) when the frame carries the true probabilities."""
    scored = frame[["flow", "use_case"]].copy()
    scored["label"] = frame[config.data.label_column].to_numpy()
    group = config.data.group_column if config.data.group_column in frame else None
    if group:
        scored[group] = frame[group].to_numpy()
    scored["score"] = scores
    report = {"test": task_sentence_metrics(scored, "score", group)}
    if "oracle_p" in frame:
        scored["oracle_p"] = frame["oracle_p"].to_numpy()
        oracle = task_sentence_metrics(scored, "oracle_p", group)
        report["oracle"] = {k: {"auc": v["auc"], "ap": v["ap"]} for k, v in oracle.items()}
    return report
