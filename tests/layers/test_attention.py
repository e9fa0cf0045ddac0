"""MultiQueryAttention and ParallelTransformerBlock against straightforward numpy references; masking."""
import grec_tf  # noqa: F401
import numpy as np
import pytest
import tensorflow as tf

from grec_tf.layers import MultiQueryAttention, ParallelTransformerBlock
from grec_tf.layers.shared_tokens import dense_tokens, shared_tokens

B, L, D, H, K = 4, 6, 16, 4, 8


def _softmax(z):
    z = z - z.max(-1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(-1, keepdims=True)


def _np_mqa(q_heads, k, v, mask):
    """Per-head loop: every head h attends with ITS query against the SAME key/value."""
    batch, lq, heads, depth = q_heads.shape
    out = np.zeros_like(q_heads)
    for b in range(batch):
        for h in range(heads):
            scores = q_heads[b, :, h, :] @ k[b].T / np.sqrt(depth)  # [Lq, Lk]
            valid = np.ones(k.shape[1], bool) if mask is None else mask[b]
            if not valid.any():
                continue
            weights = np.zeros_like(scores)
            weights[:, valid] = _softmax(scores[:, valid])
            out[b, :, h, :] = weights @ v[b]
    return out


def _np_mqa_layer(layer, query, value, mask):
    qk, qb = layer.query_kernel.numpy(), layer.query_bias.numpy()
    q = np.einsum("bld,dhk->blhk", query, qk) + qb
    k = value @ layer.key_kernel.numpy() + layer.key_bias.numpy()
    v = value @ layer.value_kernel.numpy() + layer.value_bias.numpy()
    heads = _np_mqa(q, k, v, mask)
    return np.einsum("blhk,hkd->bld", heads, layer.output_kernel.numpy()) + layer.output_bias.numpy()


def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, L, D)).astype(np.float32)
    lengths = np.array([L, 3, 1, 0])  # the last row has no valid key at all
    return x, np.arange(L)[None, :] < lengths[:, None]


def _randomize_biases(layer, seed=1):
    rng = np.random.default_rng(seed)
    for variable in layer.weights:
        if "bias" in variable.name:
            variable.assign(rng.standard_normal(variable.shape).astype(np.float32) * 0.1)


def test_mqa_has_one_shared_key_and_value_head():
    layer = MultiQueryAttention(H, K)
    layer(tf.zeros((1, L, D)))
    shapes = {v.name.split("/")[-1].split(":")[0]: tuple(v.shape) for v in layer.weights}
    assert shapes["query_kernel"] == (D, H, K)
    assert shapes["key_kernel"] == (D, K) and shapes["value_kernel"] == (D, K)
    assert shapes["output_kernel"] == (H, K, D)


def test_mqa_equals_per_head_reference_self_and_cross():
    x, mask = _data()
    layer = MultiQueryAttention(H, K)
    layer(x)
    _randomize_biases(layer)
    for key_mask in (None, mask):
        got = layer(x, key_mask=None if key_mask is None else tf.constant(key_mask)).numpy()
        np.testing.assert_allclose(got, _np_mqa_layer(layer, x, x, key_mask), atol=1e-5, rtol=1e-5)
    memory = np.random.default_rng(3).standard_normal((B, L + 2, D)).astype(np.float32)
    memory_mask = np.arange(L + 2)[None, :] < np.array([8, 5, 2, 1])[:, None]
    got = layer(x, memory, key_mask=tf.constant(memory_mask)).numpy()
    np.testing.assert_allclose(got, _np_mqa_layer(layer, x, memory, memory_mask), atol=1e-5, rtol=1e-5)


def test_mqa_padded_keys_do_not_matter_and_all_masked_row_is_zero():
    x, mask = _data()
    layer = MultiQueryAttention(H, K)
    base = layer(x, key_mask=tf.constant(mask)).numpy()
    noisy_value = np.where(mask[..., None], x, 1e4 * np.random.default_rng(2).standard_normal(x.shape))
    # Self-attention: queries unchanged, padded keys/values changed -> outputs unchanged.
    other = layer(x, noisy_value.astype(np.float32), key_mask=tf.constant(mask)).numpy()
    np.testing.assert_allclose(other, base, atol=1e-5)
    assert np.isfinite(base).all()
    np.testing.assert_allclose(base[3], np.zeros((L, D)), atol=1e-7)  # all keys masked -> zeros (bias is 0)


def _np_layer_norm(x, gamma, beta, eps=1e-6):
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def _np_gelu(x):
    from math import erf, sqrt
    return 0.5 * x * (1.0 + np.vectorize(erf)(x / sqrt(2.0)))


@pytest.mark.parametrize("activation", ["gelu", "swiglu"])
def test_parallel_block_equals_reference(activation):
    x, mask = _data()
    block = ParallelTransformerBlock(H, K, 32, activation=activation)
    block(x)
    _randomize_biases(block)
    block.layer_norm.gamma.assign(np.linspace(0.5, 1.5, D).astype(np.float32))
    got = block(x, mask=tf.constant(mask)).numpy()
    normed = _np_layer_norm(x, block.layer_norm.gamma.numpy(), block.layer_norm.beta.numpy())
    proj = normed @ block.fused_input_kernel.numpy() + block.fused_input_bias.numpy()
    q, k, v, mlp = np.split(proj, np.cumsum([H * K, K, K]), axis=-1)
    heads = _np_mqa(q.reshape(B, L, H, K), k, v, mask).reshape(B, L, H * K)
    if activation == "gelu":
        hidden = _np_gelu(mlp)
    else:
        gate, value = np.split(mlp, 2, axis=-1)
        hidden = gate / (1.0 + np.exp(-gate)) * value
    w_out, b_out = block.fused_output_kernel.numpy(), block.fused_output_bias.numpy()
    # y = x + Attn(LN(x)) + MLP(LN(x)): the fused output projection is the sum of the two branch projections.
    attn = heads @ w_out[:H * K]
    mlp_out = hidden @ w_out[H * K:]
    np.testing.assert_allclose(got, x + attn + mlp_out + b_out, atol=1e-4, rtol=1e-4)
    assert block.fused_input_kernel.shape == (D, H * K + 2 * K + (64 if activation == "swiglu" else 32))


def test_parallel_block_mask_excludes_padded_positions():
    x, mask = _data()
    block = ParallelTransformerBlock(H, K, 32)
    base = block(x, mask=tf.constant(mask)).numpy()
    noisy = np.where(mask[..., None], x, 50.0 * np.random.default_rng(4).standard_normal(x.shape)).astype(np.float32)
    other = block(noisy, mask=tf.constant(mask)).numpy()
    np.testing.assert_allclose(other[mask], base[mask], atol=1e-4)
    assert np.isfinite(base).all()
    with pytest.raises(ValueError, match="activation"):
        ParallelTransformerBlock(H, K, 32, activation="relu6")


def test_dropout_only_in_training():
    x, mask = _data()
    block = ParallelTransformerBlock(H, K, 32, dropout=0.5)
    np.testing.assert_array_equal(block(x, mask=mask).numpy(), block(x, mask=mask, training=False).numpy())
    assert not np.allclose(block(x, training=True).numpy(), block(x, training=True).numpy())


def test_attention_layers_mixed_bfloat16(mixed_bfloat16):
    x, mask = _data()
    for layer, kwargs in ((MultiQueryAttention(H, K), {"key_mask": tf.constant(mask)}),
                          (ParallelTransformerBlock(H, K, 32, activation="swiglu"), {"mask": tf.constant(mask)})):
        y = layer(x, **kwargs)
        assert y.dtype == tf.bfloat16 and layer.weights[0].dtype == tf.float32
        assert np.isfinite(tf.cast(y, tf.float32).numpy()).all()
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.cast(layer(x, training=True, **kwargs), tf.float32))
        assert all(g is not None for g in tape.gradient(loss, layer.trainable_variables))


def _factored(rng, shared_rows=3, rows=(0, 2, 2, 1, 0)):
    """A factored stack of len(rows) rows: L - 1 tokens shared by ``shared_rows`` rows, then one own token."""
    shared = rng.standard_normal((shared_rows, L - 1, D)).astype(np.float32)
    own = rng.standard_normal((len(rows), 1, D)).astype(np.float32)
    return shared_tokens(tf.constant(shared), tf.constant(rows), tf.constant(own))


@pytest.mark.parametrize("activation", ["gelu", "swiglu"])
def test_parallel_block_on_a_factored_stack_equals_the_dense_stack(activation):
    tokens = _factored(np.random.default_rng(5))
    dense = dense_tokens(tokens)
    assert dense.shape == (5, L, D)
    block = ParallelTransformerBlock(H, K, 32, activation=activation)
    block(dense)
    _randomize_biases(block)
    mask = tf.constant(np.arange(L)[None, :] < np.array([L, 3, L, 2, 4])[:, None])  # rows sharing tokens differ
    for kwargs in ({}, {"mask": mask}):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch([tokens["shared"], dense])
            got, expected = block(tokens, **kwargs), block(dense, **kwargs)
            # a loss that weighs every output feature differently, so no gradient cancels by symmetry
            loss, dense_loss = (tf.reduce_sum(y * tf.range(1.0, D + 1.0)) for y in (got, expected))
        assert got.shape[1:] == (L, D)
        np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-5)
        for a, b in zip(tape.gradient(loss, block.trainable_variables),
                        tape.gradient(dense_loss, block.trainable_variables)):
            np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-4, rtol=1e-5)
        # the shared tokens' gradient sums over the rows that share them
        grad = tape.gradient(loss, tokens["shared"]).numpy()
        dense_grad = tape.gradient(dense_loss, dense).numpy()[:, :L - 1]
        rows = tokens["rows"].numpy()
        summed = np.stack([dense_grad[rows == n].sum(0) for n in range(len(grad))])
        np.testing.assert_allclose(grad, summed, atol=1e-4)


def test_parallel_block_does_the_shared_tokens_work_once_per_shared_row():
    tokens = _factored(np.random.default_rng(6), shared_rows=1, rows=(0,) * 8)
    block = ParallelTransformerBlock(H, K, 32)
    block(tokens)
    projected_rows = []
    norm = block.layer_norm.call
    block.layer_norm.call = lambda x: projected_rows.append(int(x.shape[0]) * int(x.shape[1])) or norm(x)
    block(tokens)
    assert sorted(projected_rows) == [L - 1, 8]  # 5 shared tokens once, the 8 rows' own token each
    projected_rows.clear()
    block(dense_tokens(tokens))
    assert projected_rows == [8 * L]
