"""The assembled multi-task ranker: shapes, routing by task sentence, the masked per-use-case loss,
learning on planted data, baselines, unknown inputs, and mixed precision."""
import numpy as np
import pytest
import tensorflow as tf

import grec_tf  # noqa: F401
from grec_tf.data.dataset import make_dataset
from grec_tf.data.feature_arrays import IMPRESSION_KEY, frame_to_arrays
from grec_tf.data.feature_statistics import compute_feature_statistics
from grec_tf.metrics import roc_auc
from grec_tf.models.multi_task_ranker import MultiTaskRanker
from grec_tf.experiment import Experiment
from grec_tf.serving.signatures import export_model
from tests.tiny_experiment import tiny_config, tiny_frame


@pytest.fixture(scope="module")
def frame():
    return tiny_frame(768, seed=3)


def _batch(frame, config, rows=None):
    arrays = frame_to_arrays(frame if rows is None else frame.iloc[:rows], config)
    return {k: tf.constant(v.astype(str) if v.dtype == object else v) for k, v in arrays.items()}


def _build(config, frame):
    return Experiment(config, statistics=compute_feature_statistics(frame, config)).build_model()


def _model(frame, **model):
    config = tiny_config(**model)
    return config, _build(config, frame)


#: the model types the tiny experiment's use cases (CTR, CVR: no click -> conversion chain) can build; ESMM's
#: versions of the per-type tests are in test_baselines.py
MODEL_TYPES = ["grec", "mmoe", "shared_bottom", "ple", "aitm", "single_task"]


def _keys_of(model_type, **model):
    """The model keys of ``model_type`` on the tiny experiment (aitm's chain: its two use cases)."""
    aitm = {"aitm_chain": ["CTR", "CVR"]} if model_type == "aitm" else {}
    return {"type": model_type, **aitm, **model}


def test_outputs_and_task_sentence_routing(frame):
    config, model = _model(frame)
    batch = _batch(frame, config, 64)
    out = model(batch, training=False, every_tower=True)
    assert out["probability"].shape == [64] and out["logits"].shape == [64, len(config.data.use_cases) + 1]
    p = out["probability"].numpy()
    assert np.all((p > 0) & (p < 1))
    # The row's logit is the tower of its own use case.
    expected = out["logits"].numpy()[np.arange(64), out["use_case_id"].numpy()]
    np.testing.assert_allclose(out["logit"].numpy(), expected, rtol=1e-6)
    routing = out["routing"].numpy()
    assert routing.shape == (64, config.model.num_experts)
    keys = [f"{f}/{u}" for f, u in zip(batch["flow"].numpy(), batch["use_case"].numpy())]
    for key in set(keys):
        rows = routing[[k == key for k in keys]]
        np.testing.assert_allclose(rows, np.repeat(rows[:1], len(rows), axis=0), atol=1e-6)
        assert (rows[0] > 0).sum() == config.model.top_k


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_loss_is_mean_cross_entropy_per_use_case(frame, model_type):
    config, model = _model(frame, **_keys_of(model_type, loss_weights={"CTR": 1.0, "CVR": 3.0}))
    batch = _batch(frame, config, 128)
    loss = float(model.compute_loss(batch, training=False))
    out = model(batch, training=False)
    labels = batch["label"].numpy()
    logits = out["logit"].numpy().astype(np.float64)
    bce = np.maximum(logits, 0) - logits * labels + np.log1p(np.exp(-np.abs(logits)))
    use_case = batch["use_case"].numpy().astype(str)
    expected = bce[use_case == "CTR"].mean() + 3.0 * bce[use_case == "CVR"].mean()
    assert loss == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_learns_planted_signal(model_type):
    train = tiny_frame(1536, seed=3)
    test = tiny_frame(512, seed=11)
    labels = test["label"].to_numpy()
    oracle = roc_auc(labels, test["oracle_p"].to_numpy())
    tf.keras.utils.set_random_seed(0)
    config, untrained = _model(train, **_keys_of(model_type))
    before = untrained(_batch(test, config), training=False)["probability"].numpy()
    tf.keras.utils.set_random_seed(0)
    _, model = _model(train, **_keys_of(model_type))
    # fit on a model never called eagerly: every layer must build from symbolic shapes
    ds = make_dataset(frame_to_arrays(train, config), 64, shuffle=True, seed=0)
    history = model.fit(ds, epochs=4, verbose=0)
    after = model(_batch(test, config), training=False)["probability"].numpy()
    assert history.history["task_loss"][-1] < history.history["task_loss"][0]  # epoch means
    # single_task: each of the four networks learns from a quarter of the rows (the data sparsity GRec's
    # shared model is meant to overcome), so within 4 epochs it stays further from the oracle
    gap = 0.12 if model_type == "single_task" else 0.08
    assert roc_auc(labels, after) > 0.7 and roc_auc(labels, after) > oracle - gap
    assert roc_auc(labels, after) > roc_auc(labels, before) + 0.05


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_unknown_values_are_scored(frame, model_type):
    config, model = _model(frame, **_keys_of(model_type))
    odd = frame.iloc[:4].copy()
    odd["plan"] = "never-seen"
    odd["item_id"] = "unknown-item"
    odd["query"] = ["", "zzzz qqqq", "", "apple"]
    odd["viewed"] = [[], ["nope"], [], ["i1"] * 30]
    odd["flow"] = ["AAL", "MARS", "EUP", "AAL"]
    p = model(_batch(odd, config), training=False)["probability"].numpy()
    assert np.all(np.isfinite(p)) and p.shape == (4,)


@pytest.mark.parametrize("encoder_options", [{}, {"numerical_embedding": "periodic", "cross_layers": 1}])
def test_mixed_bfloat16(frame, encoder_options):
    config = tiny_config(**encoder_options)
    config.train.mixed_precision = "mixed_bfloat16"
    try:
        model = _build(config, frame)
        batch = _batch(frame, config, 32)
        out = model(batch, training=True, every_tower=True)
        assert out["logits"].dtype == tf.float32 and out["routing"].dtype == tf.float32
        assert model(batch, training=True)["logit"].dtype == tf.float32  # each row's own tower only
        assert model.bottom.moe.compute_dtype == "bfloat16"
        with tf.GradientTape() as tape:
            loss = model.compute_loss(batch, training=True) + tf.add_n(model.losses)
        grads = tape.gradient(loss, model.trainable_variables)
        assert np.isfinite(float(loss))
        assert sum(g is not None for g in grads) > 0.9 * len(grads)
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")


def test_grec_config_with_local_hub_text_encoder_trains(frame, tmp_path):
    """The config names a local SavedModel as the query encoder: it loads through hub.KerasLayer inside
    GRec and a training step updates the model but not the frozen encoder."""
    from tests.text.test_hub_text_encoder import export_tiny_text_encoder

    vocab_dir = tmp_path / "vocab"
    vocab_dir.mkdir()
    handle = tmp_path / "encoder"
    export_tiny_text_encoder(handle, vocab_dir)
    config = tiny_config(text_encoder={"type": "hub", "handle": str(handle), "trainable": False})
    statistics = compute_feature_statistics(frame, config)
    assert statistics.text_vocabularies == {}  # no WordPiece vocabulary learned for a hub encoder
    model = Experiment(config, statistics=statistics).build_model()
    encoder = model.text_encoders["query"]
    assert type(encoder).__name__ == "HubTextEncoder"
    batch = _batch(frame, config, 64)
    model(batch)
    frozen = [v.numpy().copy() for v in encoder.encoder.variables]
    assert frozen and not encoder.encoder.trainable_weights
    projection_before = [w.numpy().copy() for w in encoder.trainable_weights]
    history = model.fit(make_dataset(frame_to_arrays(frame.iloc[:128], config), 64), epochs=1, verbose=0)
    assert np.isfinite(history.history["total_loss"][0])
    assert any(not np.allclose(a, b.numpy()) for a, b in zip(projection_before, encoder.trainable_weights))
    assert all(np.allclose(a, b.numpy()) for a, b in zip(frozen, encoder.encoder.variables))


def assert_round_trips_and_serves(model, config, batch, tmp_path) -> None:
    """``model`` rebuilt from its config with its weights, and its SavedModel's ``serving_default``, give its
    probabilities on ``batch``."""
    expected = model(batch, training=False)["probability"].numpy()
    clone = MultiTaskRanker.from_config(model.get_config())
    clone(batch, training=False)
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone(batch, training=False)["probability"].numpy(), expected, atol=1e-6)
    loaded = tf.saved_model.load(export_model(model, config, str(tmp_path)))
    inputs = {k: v for k, v in batch.items() if k not in ("label", IMPRESSION_KEY)}
    np.testing.assert_allclose(loaded.signatures["serving_default"](**inputs)["probability"].numpy(), expected,
                               atol=1e-5)


@pytest.mark.parametrize("encoder_options", [{}, {"numerical_embedding": "periodic"}, {"cross_layers": 2},
                                             {"numerical_embedding": "piecewise_linear"}])
def test_get_config_round_trip_rebuilds_the_same_model(frame, encoder_options, tmp_path):
    config, model = _model(frame, **encoder_options)
    batch = _batch(frame, config, 32)
    expected = model(batch, training=False)["probability"].numpy()
    clone = MultiTaskRanker.from_config(model.get_config())
    clone(batch, training=False)
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone(batch, training=False)["probability"].numpy(), expected, atol=1e-6)
    assert clone.context_encoder.categorical == model.context_encoder.categorical  # vocabularies travel
    assert clone.sequence_encoder.sequences == model.sequence_encoder.sequences
    assert type(clone.bottom.moe.router) is type(model.bottom.moe.router)
    for encoder in (clone.context_encoder, clone.item_encoder):
        assert {k: encoder.get_config()[k] for k in encoder_options} == encoder_options
    if encoder_options:  # the SavedModel serves the same probabilities
        loaded = tf.saved_model.load(export_model(model, config, str(tmp_path)))
        inputs = {k: v for k, v in batch.items() if k not in ("label", IMPRESSION_KEY)}
        np.testing.assert_allclose(loaded.signatures["serving_default"](**inputs)["probability"].numpy(), expected,
                                   atol=1e-5)


def test_task_loss_metric_is_the_row_weighted_epoch_mean(frame):
    config, model = _model(frame)
    batches = [_batch(frame.iloc[i * 64:(i + 1) * 64], config) for i in range(3)]
    losses = [float(model.compute_loss(b, training=False)) for b in batches]
    assert float(model.task_loss.result()) == pytest.approx(np.mean(losses), rel=1e-5)


def test_most_recent_keeps_the_last_ids_for_any_input_length():
    from grec_tf.models.sequence_encoder import most_recent

    rows = [["a", "b", "c", "d", ""], ["x", "", "", "", ""], ["", "", "", "", ""]]
    dynamic = tf.function(lambda s: most_recent(s, 3), input_signature=[tf.TensorSpec([None, None], tf.string)])
    assert dynamic(tf.constant(rows)).numpy().astype(str).tolist() == [["b", "c", "d"], ["x", "", ""], ["", "", ""]]
    short = most_recent(tf.constant([["a", "b"], ["c", ""]]), 3)  # static width below max: padded
    assert short.shape == (2, 3) and short.numpy().astype(str).tolist() == [["a", "b", ""], ["c", "", ""]]


@pytest.mark.parametrize("target_attention", [True, False])
def test_sequence_token_reads_the_candidate_only_with_target_attention(frame, target_attention):
    config, model = _model(frame, target_attention=target_attention)
    batch = _batch(frame, config, 64)
    other = dict(batch)
    other["item_id"] = tf.roll(batch["item_id"], 1, axis=0)
    other["brand"] = tf.roll(batch["brand"], 1, axis=0)
    other["item_vec"] = tf.roll(batch["item_vec"], 1, axis=0)
    sequence = model.tokens(batch)["tokens"][:, 0].numpy()
    moved = model.tokens(other)["tokens"][:, 0].numpy()
    changed = np.abs(sequence - moved).max(axis=1) > 1e-6
    positions = (batch["viewed"].numpy() != b"").sum(axis=1)
    assert (positions >= 2).sum() > 10 and (positions == 0).sum() > 0
    if target_attention:
        # The candidate attends over the history, so the token moves with the candidate wherever there
        # are two or more positions to weigh (one position gets all the weight whatever the query).
        assert changed[positions >= 2].all()
        # An empty history has nothing to attend to: there the token cannot depend on the candidate.
        assert not changed[positions == 0].any()
    else:
        assert not changed.any()
