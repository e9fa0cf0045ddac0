"""GRec trained through ``Experiment.train`` under ``mixed_bfloat16``: the experts compute in bfloat16 while
router logits, losses and metrics stay float32, and training still lowers the loss."""
import math

import numpy as np
import pytest
import tensorflow as tf

import grec_tf  # noqa: F401
from grec_tf.experiment import Experiment
from grec_tf.layers.routers import Router
from tests.tiny_experiment import tiny_config, tiny_frame


@pytest.fixture()
def router_logit_dtypes(monkeypatch):
    """Dtypes of every router logits tensor computed while the fixture is active (graph tensors included)."""
    seen = []
    original = Router.logits

    def recording(self, gate_input):
        logits = original(self, gate_input)
        seen.append(logits.dtype)
        return logits

    monkeypatch.setattr(Router, "logits", recording)
    return seen


@pytest.mark.parametrize("routing", ["task_sentence", "token"])
def test_training_under_mixed_bfloat16(tmp_path, router_logit_dtypes, routing):
    config = tiny_config(routing=routing)
    config.train.mixed_precision = "mixed_bfloat16"
    config.train.epochs = 4
    frame = tiny_frame(1024, seed=3)
    splits = {"train": frame.iloc[:768], "valid": frame.iloc[768:896], "test": frame.iloc[896:]}
    try:
        run = Experiment(config, splits=splits).train(str(tmp_path / "run"), verbose=0)
        model = run.model
        assert model.bottom.moe.compute_dtype == "bfloat16"  # the experts really ran in bfloat16
        assert router_logit_dtypes and all(dtype == tf.float32 for dtype in router_logit_dtypes)
        assert model.bottom.moe.router.compute_dtype == "float32"
        assert all(v.dtype == tf.float32 for v in model.trainable_variables)  # float32 master weights

        batch = next(iter(Experiment(config, splits=splits).dataset("valid", batch_size=64)))
        out = model(batch, training=True)
        assert out["logit"].dtype == tf.float32 and out["probability"].dtype == tf.float32
        assert model.losses and all(loss.dtype == tf.float32 for loss in model.losses)  # router aux losses
        assert model.compute_loss(batch, training=False).dtype == tf.float32
        for metric in model.metrics:
            assert metric.dtype == "float32", metric.name
            assert all(tf.nest.flatten(tf.nest.map_structure(lambda r: r.dtype == tf.float32, metric.result())))
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")

    history = run.history
    losses = history["task_loss"]
    assert len(losses) >= 2 and all(np.isfinite(history["val_task_loss"]))
    assert losses[-1] < losses[0]  # it learned under bfloat16
    assert run.metrics["train"]["steps_this_run"] > 0 and run.metrics["train"]["examples_per_second"] > 0
    test_auc = [m["auc"] for m in run.metrics["test"].values() if not math.isnan(m["auc"])]
    assert test_auc and all(0.0 <= auc <= 1.0 for auc in test_auc)
