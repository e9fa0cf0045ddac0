"""FeedForwardExperts' GELU: Keras's forward values, a written-out derivative equal to autodiff's."""
import numpy as np
import pytest
import tensorflow as tf

from grec_tf.layers import FeedForwardExperts
from grec_tf.layers.feed_forward_experts import gelu_exact


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
