"""Op time by op type from a profiler trace: the ops a step runs are found, in proportion to their work."""
import pytest
import tensorflow as tf

from grec_tf.profiling import matmul_share, op_milliseconds_by_type


def test_a_matmul_step_is_mostly_matmul_and_an_elementwise_step_is_not():
    a = tf.random.normal([512, 512])

    @tf.function
    def matmuls():
        return tf.matmul(tf.matmul(a, a), a)

    @tf.function
    def elementwise():
        return tf.math.erfc(a) * a + a

    matmuls(), elementwise()  # traced before the profile
    by_matmul = op_milliseconds_by_type(lambda: matmuls().numpy(), steps=3)
    by_elementwise = op_milliseconds_by_type(lambda: elementwise().numpy(), steps=3)
    assert matmul_share(by_matmul) > 0.5
    assert matmul_share(by_elementwise) == 0.0
    assert {"Erfc", "Mul"} <= set(by_elementwise)
    assert all(ms > 0 for ms in by_elementwise.values())
    assert list(by_matmul.values()) == sorted(by_matmul.values(), reverse=True)


def test_more_steps_do_not_inflate_the_per_step_time():
    a = tf.random.normal([256, 256])
    step = tf.function(lambda: tf.math.erfc(a))
    step()
    one = sum(op_milliseconds_by_type(lambda: step().numpy(), steps=2).values())
    many = sum(op_milliseconds_by_type(lambda: step().numpy(), steps=20).values())
    assert many < 5 * one  # per step, not summed: 20 steps summed would be ~10x the 2-step figure


def test_steps_must_be_positive():
    with pytest.raises(ValueError, match="steps must be >= 1"):
        op_milliseconds_by_type(lambda: None, steps=0)
    assert matmul_share({}) == 0.0
