"""Each row runs only its own tower: the loss, every gradient and the serving outputs are what running every
tower and gathering the row's own column gave (``every_tower=True``), for plain and chained towers."""
import numpy as np
import pytest
import tensorflow as tf

import grec_tf  # noqa: F401
from grec_tf.data.dataset import as_tensors
from grec_tf.data.feature_arrays import IMPRESSION_KEY, frame_to_arrays
from grec_tf.data.feature_statistics import compute_feature_statistics
from grec_tf.experiment import Experiment
from grec_tf.serving.signatures import ServingModule
from tests.models.test_baselines import funnel_config, funnel_frame
from tests.tiny_experiment import tiny_config, tiny_frame

#: model keys -> the towers layer they build: MultiTaskTowers over [B, H] (grec, shared_bottom, per task sentence
#: too) and over [B, T, H] (mmoe), AITM's chained towers with their calibrator, ESMM's product column
VARIANTS = {
    "grec": {"type": "grec"},
    "grec_task_sentence_towers": {"type": "grec", "towers": "task_sentence"},
    "mmoe": {"type": "mmoe"},
    "shared_bottom": {"type": "shared_bottom"},
    "aitm": {"type": "aitm", "aitm_chain": ["CTR", "CVR"], "aitm_calibration_weight": 0.5},
    "esmm": {"type": "esmm"},
}


def _model_and_batch(variant):
    keys = {**VARIANTS[variant], "dropout": 0.0}
    config = funnel_config(**keys) if keys["type"] == "esmm" else tiny_config(**keys)
    frame = funnel_frame(96, seed=5) if keys["type"] == "esmm" else tiny_frame(96, seed=5)
    tf.keras.utils.set_random_seed(0)
    model = Experiment(config, statistics=compute_feature_statistics(frame, config)).build_model()
    return config, model, as_tensors(frame_to_arrays(frame, config))


def _every_tower(model, monkeypatch):
    """Makes ``model`` run every tower and gather each row's own column (what it did before own towers)."""
    score = model.score

    def every_tower_score(tokens, training=None, every_tower=False):
        return score(tokens, training=training, every_tower=True)
    monkeypatch.setattr(model, "score", every_tower_score)


def _loss_and_gradients(model, batch):
    with tf.GradientTape() as tape:
        loss = model.compute_loss(batch, training=True)
        if model.losses:
            loss += tf.add_n(model.losses)
    return float(loss), [tf.convert_to_tensor(g).numpy() if g is not None else None
                         for g in tape.gradient(loss, model.trainable_variables)]


def _served(model, config, batch):
    signatures = ServingModule(model, config).signatures()
    features = {name: value for name, value in batch.items() if name not in ("label", IMPRESSION_KEY)}
    without_use_case = {name: value for name, value in features.items() if name != "use_case"}
    return {"probability": signatures["serving_default"](**features)["probability"].numpy(),
            "probabilities": signatures["score_all"](**without_use_case)["probabilities"].numpy()}


@pytest.mark.parametrize("variant", VARIANTS)
def test_loss_gradients_and_serving_outputs_equal_the_every_tower_path(variant, monkeypatch):
    config, model, batch = _model_and_batch(variant)
    loss, grads = _loss_and_gradients(model, batch)
    served = _served(model, config, batch)
    out = model(batch, training=False)
    assert "logits" not in out
    with monkeypatch.context() as patch:
        _every_tower(model, patch)
        assert "logits" in model(batch, training=False)  # the patch took: every tower runs
        every_loss, every_grads = _loss_and_gradients(model, batch)
        every_served = _served(model, config, batch)
    assert loss == pytest.approx(every_loss, abs=1e-5, rel=1e-5)
    assert sum(g is not None for g in grads) > 0.9 * len(grads)
    for variable, grad, every_grad in zip(model.trainable_variables, grads, every_grads):
        assert (grad is None) == (every_grad is None), variable.name
        if grad is not None:
            np.testing.assert_allclose(grad, every_grad, atol=1e-5, rtol=1e-5, err_msg=variable.name)
    for name, value in served.items():
        assert value.shape == every_served[name].shape
        np.testing.assert_allclose(value, every_served[name], atol=1e-5, rtol=0, err_msg=name)


def test_every_tower_returns_every_logit_and_the_row_s_own_is_the_default_logit():
    config, model, batch = _model_and_batch("mmoe")
    own, every = model(batch, training=False), model(batch, training=False, every_tower=True)
    rows = int(batch["flow"].shape[0])
    assert every["logits"].shape == (rows, model.towers.num_towers) and every["logits"].dtype == tf.float32
    gathered = every["logits"].numpy()[np.arange(rows), model.tower_index(own["flow_id"], own["use_case_id"]).numpy()]
    np.testing.assert_allclose(own["logit"].numpy(), gathered, atol=1e-6, rtol=1e-6)
    np.testing.assert_allclose(own["routing"].numpy(), every["routing"].numpy(), atol=1e-6)
