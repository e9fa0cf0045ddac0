"""Evaluation metrics: ranking metrics (AUC, AP and logloss from scikit-learn, GAUC) per task sentence."""
from grec_tf.metrics.ranking import (
    METRIC_KEYS,
    average_precision,
    group_auc,
    log_loss,
    roc_auc,
    task_sentence_metrics,
)

__all__ = [
    "METRIC_KEYS",
    "average_precision",
    "group_auc",
    "log_loss",
    "roc_auc",
    "task_sentence_metrics",
]
