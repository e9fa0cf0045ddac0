"""Impression-major computation: with ``impression_key`` the task-independent encoders run once per impression,
and the loss, every gradient and every output stay what the row-by-row computation gives."""
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import grec_tf  # noqa: F401
from grec_tf.data.dataset import as_tensors
from grec_tf.data.feature_arrays import IMPRESSION_KEY, frame_to_arrays
from grec_tf.data.feature_statistics import compute_feature_statistics
from grec_tf.experiment import Experiment
from grec_tf.serving.signatures import ServingModule
from tests.tiny_experiment import tiny_config, tiny_impression_frame

#: name -> model keys; grec_feature_tokens: one token per context and item feature (a longer shared stack)
MODELS = {"grec": {"type": "grec"}, "mmoe": {"type": "mmoe"}, "shared_bottom": {"type": "shared_bottom"},
          "grec_feature_tokens": {"type": "grec", "feature_tokens": "feature"}}


@pytest.fixture(scope="module")
def frame():
    return tiny_impression_frame(96, seed=4)


def _model(frame, **model):
    config = tiny_config(**model)
    tf.keras.utils.set_random_seed(0)
    return config, Experiment(config, statistics=compute_feature_statistics(frame, config)).build_model()


def _batch(frame, config):
    return as_tensors(frame_to_arrays(frame, config))


def _without_key(batch):
    return {name: value for name, value in batch.items() if name != IMPRESSION_KEY}


def _loss_and_gradients(model, batch, training):
    with tf.GradientTape() as tape:
        loss = model.compute_loss(batch, training=training)
        if model.losses:
            loss += tf.add_n(model.losses)
    return float(loss), tape.gradient(loss, model.trainable_variables)


def test_the_tiny_frame_repeats_impressions_and_the_key_numbers_them(frame):
    keys = frame_to_arrays(frame, tiny_config())[IMPRESSION_KEY]
    assert keys.dtype == np.int64 and len(np.unique(keys)) == frame["impression"].nunique() < len(frame)
    # one key per impression, and the key is exactly the impression (no two impressions share one)
    assert (frame.groupby(keys)["impression"].nunique() == 1).all()
    assert (frame.groupby("impression").apply(lambda g: len(set(keys[g.index]))) == 1).all()


def test_changing_any_feature_value_changes_the_key():
    config = tiny_config()
    frame = tiny_impression_frame(8, seed=1)
    twin = frame[frame["use_case"] == "CTR"].iloc[:1]
    pairs = {"plan": "other", "tenure": 1e6, "query": "zzz", "viewed": ["i1", "i2", "i3"], "item_id": "other",
             "brand": "other", "price": -1.0, "item_vec": np.full(4, 9.0, np.float32)}
    for column, value in pairs.items():
        changed = twin.copy()
        changed[column] = [value]
        rows = pd.concat([twin, twin.assign(use_case="CVR", flow="EUP"), changed]).reset_index(drop=True)
        keys = frame_to_arrays(rows, config)[IMPRESSION_KEY]
        assert keys[0] == keys[1] and keys[2] != keys[0], column  # route columns do not count, features do


@pytest.mark.parametrize("variant", MODELS)
@pytest.mark.parametrize("training", [True, False])
def test_loss_and_every_gradient_equal_with_and_without_the_key(frame, variant, training):
    config, model = _model(frame, **MODELS[variant], dropout=0.0)
    batch = _batch(frame, config)
    loss, grads = _loss_and_gradients(model, batch, training)
    row_loss, row_grads = _loss_and_gradients(model, _without_key(batch), training)
    assert loss == pytest.approx(row_loss, abs=1e-5, rel=1e-5)
    assert len(grads) == len(row_grads) and sum(g is not None for g in grads) > 0.9 * len(grads)
    for variable, grad, row_grad in zip(model.trainable_variables, grads, row_grads):
        assert (grad is None) == (row_grad is None), variable.name
        if grad is not None:
            np.testing.assert_allclose(tf.convert_to_tensor(grad).numpy(), tf.convert_to_tensor(row_grad).numpy(),
                                       atol=1e-5, rtol=1e-5, err_msg=variable.name)


def test_encoders_run_once_per_impression_of_the_batch(frame, monkeypatch):
    config, model = _model(frame)
    batch = _batch(frame, config)
    expected = model(_without_key(batch), training=False, every_tower=True)
    encoded_rows = []
    encode = model.encode

    def spy(features, training=None):
        encoded_rows.append(int(tf.shape(features["flow"])[0]))
        return encode(features, training=training)

    monkeypatch.setattr(model, "encode", spy)
    out = model(batch, training=False, every_tower=True)
    impressions = len(np.unique(batch[IMPRESSION_KEY].numpy()))
    assert encoded_rows == [impressions] and impressions < len(frame)
    for name in ("logit", "logits", "routing"):
        np.testing.assert_allclose(out[name].numpy(), expected[name].numpy(), atol=1e-6, err_msg=name)
    encoded_rows.clear()
    model(_without_key(batch), training=False)
    assert encoded_rows == [len(frame)]  # without the key (serving) every row is encoded


@pytest.mark.parametrize("variant", MODELS)
def test_score_all_equals_scoring_every_raw_row_once_per_use_case(frame, variant):
    config, model = _model(frame, **MODELS[variant])
    features = {name: value for name, value in _batch(frame, config).items()
                if name not in ("use_case", "label", IMPRESSION_KEY)}
    use_cases = tf.constant(list(config.data.use_cases))
    served = ServingModule(model, config).signatures()["score_all"](**features)
    # the computation score_all did before: every raw feature repeated once per use case
    rows, num = len(frame), len(config.data.use_cases)
    tiled = {name: tf.repeat(value, num, axis=0) for name, value in features.items()}
    tiled["use_case"] = tf.tile(use_cases, [rows])
    old = tf.reshape(model(tiled, training=False)["probability"], [rows, num]).numpy()
    np.testing.assert_allclose(served["probabilities"].numpy(), old, atol=1e-6, rtol=0)
    assert served["use_cases"].numpy().astype(str).tolist() == [list(config.data.use_cases)] * rows


def test_trained_examples_count_rows_and_distinct_impressions_per_batch(frame):
    config, model = _model(frame)
    batch = _batch(frame, config)
    model.train_step(batch)
    model.train_step(_without_key(batch))
    impressions = len(np.unique(batch[IMPRESSION_KEY].numpy()))
    assert model.trained_examples.numpy() == {"rows": 2 * len(frame), "impressions": impressions + len(frame)}
    assert not any("trained" in w.name for w in model.weights)  # counters are no weights, not checkpointed
