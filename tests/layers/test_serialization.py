"""get_config round trips and SavedModel save/load of a small model that uses every layer."""
import grec_tf  # noqa: F401
import numpy as np
import pytest
import tensorflow as tf

from grec_tf.layers import (ROUTERS, FeedForwardExperts, MultiQueryAttention, ParallelTransformerBlock, SparseMoE,
                            TaskSentenceRouter, make_router)

S, D = 5, 16


def _layers():
    moe_ts = SparseMoE(FeedForwardExperts(6, 24, activation="relu"),
                       TaskSentenceRouter(6, 2, num_flows=3, num_use_cases=2, route_embedding_dim=8,
                                          load_balance_weight=0.02, z_loss_weight=0.003, jitter=0.1),
                       capacity_factor=0.0, name="moe_ts")
    return [MultiQueryAttention(4, 8, dropout=0.1, name="mqa"),
            ParallelTransformerBlock(4, 8, 32, activation="swiglu", dropout=0.1, name="block"), moe_ts] + [
            SparseMoE(FeedForwardExperts(6, 24), make_router(routing, num_experts=6, top_k=2, num_flows=3,
                                                             num_use_cases=2),
                      capacity_factor=1.5 if ROUTERS[routing].supports_capacity else 0.0, name=f"moe_{routing}")
            for routing in ("token", "sentence", "task")]


def _inputs(batch=7):
    rng = np.random.default_rng(0)
    return (tf.constant(rng.standard_normal((batch, S, D)), tf.float32),
            tf.constant(rng.integers(0, 3, batch), tf.int32), tf.constant(rng.integers(0, 2, batch), tf.int32))


def _call(layer, x, flow, use_case):
    if isinstance(layer, SparseMoE):
        return layer(x, flow, use_case)
    if isinstance(layer, MultiQueryAttention):
        return layer(x, key_mask=tf.sequence_mask(tf.fill([tf.shape(x)[0]], 3), S))
    return layer(x, mask=tf.sequence_mask(tf.fill([tf.shape(x)[0]], 3), S))


@pytest.mark.parametrize("index", range(6))
def test_get_config_round_trip(index):
    layer = _layers()[index]
    x, flow, use_case = _inputs()
    expected = _call(layer, x, flow, use_case)
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    _call(clone, x, flow, use_case)
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(_call(clone, x, flow, use_case).numpy(), expected.numpy())
    # Registered: deserializable by name.
    rebuilt = tf.keras.layers.deserialize(tf.keras.layers.serialize(layer))
    assert type(rebuilt) is type(layer) and rebuilt.get_config() == config
    assert tf.keras.utils.get_registered_name(type(layer)) == f"grec_tf>{type(layer).__name__}"
    if isinstance(layer, SparseMoE):  # the injected experts and router come back as themselves
        for name in ("experts", "router"):
            original, restored = getattr(layer, name), getattr(clone, name)
            assert type(restored) is type(original) and restored.get_config() == original.get_config()
        assert clone.capacity_factor == layer.capacity_factor


def _model():
    x_in = tf.keras.Input((S, D), name="x")
    flow_in = tf.keras.Input((), dtype=tf.int32, name="flow_id")
    use_case_in = tf.keras.Input((), dtype=tf.int32, name="use_case_id")
    lengths_in = tf.keras.Input((), dtype=tf.int32, name="length")
    mask = tf.keras.layers.Lambda(lambda t: tf.sequence_mask(t, S))(lengths_in)
    mqa, block, moe_ts, moe_token, moe_sentence, moe_task = _layers()
    h = block(x_in, mask=mask)
    h = h + mqa(h, key_mask=mask)
    h = moe_token(h)
    h = moe_sentence(h)
    h = moe_task(h, flow_in, use_case_in)
    h = moe_ts(h, flow_in, use_case_in)
    out = tf.keras.layers.Dense(1, name="head")(tf.keras.layers.GlobalAveragePooling1D()(h))
    return tf.keras.Model([x_in, flow_in, use_case_in, lengths_in], out)


def test_saved_model_round_trip(tmp_path):
    model = _model()
    x, flow, use_case = _inputs()
    lengths = tf.constant([5, 3, 1, 2, 5, 4, 0], tf.int32)
    inputs = [x, flow, use_case, lengths]
    expected = model(inputs).numpy()
    assert len(model.losses) == 8  # 2 aux losses per MoE
    model.compile(optimizer="adam", loss="mse")
    model.fit(inputs, tf.zeros((7, 1)), epochs=1, verbose=0)  # trains through every layer in graph mode
    expected = model(inputs).numpy()
    path = str(tmp_path / "model")
    model.save(path)
    restored = tf.keras.models.load_model(path)
    np.testing.assert_array_equal(restored(inputs).numpy(), expected)
    assert [type(layer).__name__ for layer in restored.layers if "grec_tf" in type(layer).__module__]
    loaded = tf.saved_model.load(path)
    serving = loaded.signatures["serving_default"]
    outputs = serving(x=x, flow_id=flow, use_case_id=use_case, length=lengths)
    np.testing.assert_allclose(list(outputs.values())[0].numpy(), expected, atol=1e-6)
    # A batch with a (flow, use case) pair the batch above never had, and a different batch size.
    x2, _, _ = _inputs(batch=3)
    outputs = serving(x=x2, flow_id=tf.constant([2, 2, 0]), use_case_id=tf.constant([1, 1, 0]),
                      length=tf.constant([5, 1, 2]))
    np.testing.assert_allclose(list(outputs.values())[0].numpy(),
                               model([x2, tf.constant([2, 2, 0]), tf.constant([1, 1, 0]),
                                      tf.constant([5, 1, 2])]).numpy(), atol=1e-6)
