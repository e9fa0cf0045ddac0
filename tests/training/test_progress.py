"""The training progress bar shows the total loss and the mean AUC, not every per-use-case value."""
import pytest

import grec_tf  # noqa: F401
from grec_tf.training.progress import concise_logs


def test_concise_logs_keep_loss_and_average_the_use_case_aucs():
    logs = {"loss": 1.5, "total_loss": 1.5, "task_loss": 1.4, "regularization_loss": 0.1, "CTR_loss": 0.6,
            "CTR_auc": 0.7, "CVR_auc": 0.5, "val_loss": 1.6, "val_CTR_auc": 0.6, "val_CVR_auc": 0.8,
            "val_task_loss": 1.5}
    out = concise_logs(logs)
    assert out == {"total_loss": 1.5, "val_task_loss": 1.5, "mean_auc": pytest.approx(0.6),
                   "val_mean_auc": pytest.approx(0.7)}
    assert "CTR_auc" in logs  # the caller's logs (History, TensorBoard) are left whole


def test_concise_logs_without_aucs_or_logs():
    assert concise_logs({"loss": 2.0, "total_loss": 2.1}) == {"total_loss": 2.1}
    assert concise_logs(None) == {}
