"""GELU with a written-out gradient: Keras's forward values, a derivative equal to autodiff's, used by every layer."""
import numpy as np
import pytest
import tensorflow as tf

from grec_tf.layers import FeedForwardExperts
from grec_tf.layers.activations import activation_fn, gelu_exact


@pytest.mark.parametrize("dtype", [tf.float32, tf.bfloat16])
def test_gelu_forward_is_kerass_bit_for_bit_eager_and_traced(dtype):
    x = tf.cast(tf.constant(np.random.default_rng(0).standard_normal((64, 32)) * 4.0, tf.float32), dtype)
    np.testing.assert_array_equal(gelu_exact(x).numpy(), tf.keras.activations.gelu(x).numpy())
    traced = tf.function(gelu_exact)(x).numpy()
    np.testing.assert_array_equal(traced, tf.function(tf.keras.activations.gelu)(x).numpy())


def test_gelu_gradient_equals_autodiff():
    x = tf.constant(np.random.default_rng(1).standard_normal((64, 32)) * 4.0, tf.float32)
    upstream = tf.sin(3.0 * x)  # a non-constant incoming gradient
    grads = []
    for fn in (gelu_exact, tf.keras.activations.gelu):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(fn(x) * upstream)
        grads.append(tape.gradient(loss, x).numpy())
    np.testing.assert_allclose(grads[0], grads[1], atol=1e-6, rtol=1e-6)
    assert np.abs(grads[0]).max() > 0.5


def test_experts_use_it_for_gelu_only():
    assert FeedForwardExperts(2, 4, activation="gelu").activation_fn is gelu_exact
    assert FeedForwardExperts(2, 4, activation="relu").activation_fn is tf.keras.activations.relu


def test_activation_fn_names():
    assert activation_fn("gelu") is gelu_exact
    assert activation_fn("relu") is tf.keras.activations.relu
    with pytest.raises(ValueError):
        activation_fn("gelu_new")


def test_dense_layers_with_it_round_trip_through_their_config():
    dense = tf.keras.layers.Dense(3, activation=gelu_exact)
    x = tf.constant(np.random.default_rng(2).standard_normal((4, 5)), tf.float32)
    y = dense(x)
    clone = tf.keras.layers.Dense.from_config(dense.get_config())
    clone.build(x.shape)
    clone.set_weights(dense.get_weights())
    assert clone.activation is gelu_exact
    np.testing.assert_array_equal(clone(x).numpy(), y.numpy())


def test_no_layer_differentiates_keras_gelu():
    """Every GELU of GRec-TF's own layers is gelu_exact: the forward pass of a tiny GRec never runs the
    autodiff-expensive ``tf.nn.gelu``."""
    from grec_tf.models.factory import build_ranker
    from grec_tf.data.feature_statistics import compute_feature_statistics
    from grec_tf.data.input_specs import placeholder_batch
    from tests.tiny_experiment import tiny_config, tiny_frame

    config = tiny_config()
    model = build_ranker(config, compute_feature_statistics(tiny_frame(64), config))
    graph = tf.function(lambda batch: model(batch, training=True)).get_concrete_function(
        placeholder_batch(config)).graph
    names = [op.name for op in graph.get_operations()]
    assert not [n for n in names if "/Gelu/" in n], [n for n in names if "/Gelu/" in n][:5]
    assert any(op.type == "Erfc" for op in graph.get_operations())
