"""Expert dispatch under a 16-bit compute dtype: rows padded to bucketed counts give the unpadded results."""
import numpy as np
import pytest
import tensorflow as tf

from grec_tf.layers.expert_dispatch import bucketed_row_count, dispatch_by_expert, dispatch_fused_routes

U, S, D, F, E, K = 300, 2, 8, 16, 4, 2


def test_bucketed_counts_pad_at_most_an_eighth_and_take_few_sizes():
    counts = np.arange(0, 5000)
    padded = np.array([int(bucketed_row_count(tf.constant(n, tf.int32))) for n in counts])
    assert np.all(padded >= counts) and np.all(padded - counts <= counts / 8)
    np.testing.assert_array_equal(padded[:16], counts[:16])  # exact below 16
    assert set(padded[512:1024]) == {512 + 64 * i for i in range(9)}  # 8 steps of 1/8 from one power of 2
    assert set(padded[2048:4096]) == {2048 + 256 * i for i in range(9)}
    assert padded[1000] == 1024 and padded[700] == 704


def _weights(rng):
    return [tf.constant(rng.standard_normal(shape) * 0.3, tf.float32)
            for shape in ((E, D, F), (E, F), (E, F, D), (E, D))]


def _as(dtype, *tensors):
    return [tf.cast(t, dtype) for t in tensors]


def _value_and_grads(fn, dtype, units, weights, target):
    units, *weights = _as(dtype, units, *weights)
    with tf.GradientTape() as tape:
        tape.watch([units] + weights)
        y = fn(units, weights)
        loss = tf.reduce_sum(tf.cast(y, tf.float32) * target)
    grads = tape.gradient(loss, [units] + weights)
    return [tf.cast(t, tf.float32).numpy() for t in [y] + grads]


def _check(fn, units, weights, target):
    # the same (bfloat16-representable) values: padded in bfloat16, unpadded in float32
    units, *weights = _as(tf.float32, *_as(tf.bfloat16, units, *weights))
    padded = _value_and_grads(fn, tf.bfloat16, units, weights, target)
    exact = _value_and_grads(fn, tf.float32, units, weights, target)
    for name, got, want in zip(["y", "units", "kernel_in", "bias_in", "kernel_out", "bias_out"], padded, exact):
        scale = np.abs(want).max()
        assert scale > 0, name
        np.testing.assert_allclose(got, want, atol=0.03 * scale, rtol=0.03, err_msg=name)
    # unit 0 is what the padding gathers: its output and gradient must hold nothing of the padded rows
    np.testing.assert_allclose(padded[0][0], exact[0][0], atol=0.03 * np.abs(exact[0]).max(), rtol=0.03)
    np.testing.assert_allclose(padded[1][0], exact[1][0], atol=0.03 * np.abs(exact[1]).max(), rtol=0.03)


def test_dispatch_by_expert_padded_in_bfloat16_equals_float32():
    rng = np.random.default_rng(1)  # expert counts 150, 151, 154, 145: none a multiple of 16
    units = tf.constant(rng.standard_normal((U, S, D)), tf.float32)
    experts = tf.constant(np.stack([rng.permutation(E)[:K] for _ in range(U)]), tf.int32)
    gates = tf.constant(rng.dirichlet(np.ones(K), U), tf.float32)
    counts = np.bincount(experts.numpy().ravel(), minlength=E)
    assert all(int(bucketed_row_count(tf.constant(c))) > c for c in counts)  # every expert really is padded
    target = tf.constant(rng.standard_normal((U, S, D)), tf.float32)

    def fn(x, weights):
        return dispatch_by_expert(x, experts, gates, *weights, activation=tf.nn.gelu, num_experts=E)[0]

    _check(fn, units, _weights(rng), target)


def test_fused_routes_padded_in_bfloat16_equal_float32():
    rng = np.random.default_rng(1)
    routes = 3
    units = tf.constant(rng.standard_normal((U, S, D)), tf.float32)
    route_index = tf.constant(rng.integers(0, routes, U), tf.int32)
    route_experts = tf.constant(np.stack([rng.permutation(E)[:K] for _ in range(routes)]), tf.int32)
    route_gates = tf.constant(rng.dirichlet(np.ones(K), routes), tf.float32)
    target = tf.constant(rng.standard_normal((U, S, D)), tf.float32)

    def fn(x, weights):
        return dispatch_fused_routes(x, route_index, route_experts, route_gates, *weights, activation=tf.nn.gelu,
                                     num_routes=routes)

    _check(fn, units, _weights(rng), target)


@pytest.mark.parametrize("dtype", [tf.float32, tf.bfloat16])
def test_only_16_bit_rows_are_padded(dtype, monkeypatch):
    """The expert matmuls see the bucketed row count in bfloat16 and the exact one in float32 (eager, so the
    shapes are concrete)."""
    rng = np.random.default_rng(2)
    units = tf.cast(tf.constant(rng.standard_normal((U, S, D)), tf.float32), dtype)
    seen, matmul = [], tf.matmul

    def recording_matmul(a, b, *args, **kwargs):
        seen.append(int(a.shape[0]))
        return matmul(a, b, *args, **kwargs)

    monkeypatch.setattr(tf, "matmul", recording_matmul)
    out = dispatch_fused_routes(units, tf.zeros([U], tf.int32), tf.constant([[0, 1]]), tf.constant([[0.5, 0.5]]),
                                *_as(dtype, *_weights(rng)), activation=tf.nn.relu, num_routes=1)
    assert out.shape == (U, S, D) and out.dtype == dtype
    rows = 320 * S if dtype == tf.bfloat16 else U * S  # one route holds all 300 units: bucketed to 320
    assert seen == [rows, rows]
