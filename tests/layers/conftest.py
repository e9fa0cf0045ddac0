import grec_tf  # noqa: F401  (Keras 2 before TensorFlow)
import pytest
import tensorflow as tf


@pytest.fixture
def mixed_bfloat16():
    previous = tf.keras.mixed_precision.global_policy()
    tf.keras.mixed_precision.set_global_policy("mixed_bfloat16")
    yield
    tf.keras.mixed_precision.set_global_policy(previous)
