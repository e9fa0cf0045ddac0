"""GELU with a written-out gradient: Keras's forward values, a derivative equal to autodiff's, used by every layer."""
import numpy as np
import pytest
import tensorflow as tf
from scipy import special

from grec_tf.layers import FeedForwardExperts
from grec_tf.layers.activations import activation_fn, gelu_exact


def test_gelu_forward_is_kerass_bit_for_bit_eager_and_traced():
    x = tf.constant(np.random.default_rng(0).standard_normal((64, 32)) * 4.0, tf.float32)
    np.testing.assert_array_equal(gelu_exact(x).numpy(), tf.keras.activations.gelu(x).numpy())
    traced = tf.function(gelu_exact)(x).numpy()
    np.testing.assert_array_equal(traced, tf.function(tf.keras.activations.gelu)(x).numpy())


@pytest.mark.parametrize("dtype", [tf.bfloat16, tf.float16])
def test_gelu_of_16_bit_values_is_the_float32_result_rounded_once(dtype):
    x = tf.cast(tf.constant(np.random.default_rng(0).standard_normal((64, 32)) * 4.0, tf.float32), dtype)
    y = gelu_exact(x)
    assert y.dtype == dtype
    expected = tf.cast(tf.keras.activations.gelu(tf.cast(x, tf.float32)), dtype).numpy()
    np.testing.assert_array_equal(y.numpy(), expected)
    np.testing.assert_array_equal(tf.function(gelu_exact)(x).numpy(), expected)
    # accurate to one unit in the last place of the 16-bit type against GELU in float64, including far left where
    # GELU is tiny (a chain of 16-bit ops, Keras's, is off there by tens of units)
    x64 = x.numpy().astype(np.float64)
    exact = 0.5 * x64 * special.erfc(-x64 / np.sqrt(2.0))
    mantissa_bits, smallest_subnormal = (7, 2.0 ** -133) if dtype == tf.bfloat16 else (10, 2.0 ** -24)
    ulp = np.maximum(2.0 ** (np.floor(np.log2(np.maximum(np.abs(exact), 1e-300))) - mantissa_bits), smallest_subnormal)
    assert np.all(np.abs(expected.astype(np.float64) - exact) <= ulp)


def test_gelu_gradient_of_16_bit_values_is_the_float32_gradient_rounded():
    x = tf.cast(tf.constant(np.random.default_rng(3).standard_normal((64, 32)) * 4.0, tf.float32), tf.bfloat16)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = gelu_exact(x)
    grad = tape.gradient(y, x)
    assert grad.dtype == tf.bfloat16
    x32 = tf.cast(x, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x32)
        y32 = tf.keras.activations.gelu(x32)
    np.testing.assert_allclose(grad.numpy().astype(np.float32), tape.gradient(y32, x32).numpy(), atol=1e-2,
                               rtol=1e-2)


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
