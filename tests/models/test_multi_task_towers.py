"""MultiTaskTowers: every tower for every row, or each row's own tower only (what training reads)."""
import numpy as np
import pytest
import tensorflow as tf

from grec_tf.models.multi_task_towers import MultiTaskTowers


@pytest.mark.parametrize("shared", [True, False])
def test_own_logits_equal_the_gathered_logits_of_every_tower_with_the_same_gradients(shared):
    rng = np.random.default_rng(0)
    towers, rows, width = 5, 37, 8
    layer = MultiTaskTowers(towers, [6, 4])
    x = tf.constant(rng.standard_normal((rows, width) if shared else (rows, towers, width)), tf.float32)
    tower = tf.constant(rng.integers(0, towers, rows), tf.int32)
    tower = tf.tensor_scatter_nd_update(tower, [[0]], [towers - 1])  # the last tower is used
    layer(x)
    results = []
    for own in (False, True):
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = layer(x, tower=tower) if own else tf.gather(layer(x), tower, batch_dims=1)
            loss = tf.reduce_sum(logits * tf.range(1.0, rows + 1.0))
        results.append((logits.numpy(), [tf.convert_to_tensor(g).numpy() for g in tape.gradient(loss, layer.trainable_variables + [x])]))
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-5, atol=1e-6)
    assert results[1][0].shape == (rows,) and results[1][0].dtype == np.float32
    for own_grad, all_grad in zip(results[1][1], results[0][1]):
        np.testing.assert_allclose(own_grad, all_grad, rtol=1e-4, atol=1e-5)


def test_own_logits_of_an_unused_tower_get_zero_gradient_and_an_empty_batch_works():
    layer = MultiTaskTowers(3, [4])
    x = tf.random.normal([6, 5])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x, tower=tf.constant([0, 0, 2, 2, 0, 2])))
    kernel_grad = tape.gradient(loss, layer.kernels[0]).numpy()
    assert np.all(kernel_grad[1] == 0) and np.abs(kernel_grad[0]).sum() > 0
    assert layer(tf.zeros([0, 5]), tower=tf.zeros([0], tf.int32)).shape == (0,)
