"""Dense all-experts Mixture-of-Experts computation: the test reference and the benchmark baseline.

Runs EVERY expert on EVERY token (``einsum`` over the expert axis), then combines them with gate weights that
are either the full softmax (dense MoE, the benchmark's "run all experts" baseline) or the softmax masked to
the top-k experts and renormalized (what :class:`~grec_tf.layers.SparseMoE` must equal when capacity does not
bind). Never used by the sparse layer itself.

Shapes: x [B, S, D] -> y [B, S, D] (including the residual x).
"""
import tensorflow as tf


def dense_moe_reference(layer, x, flow_id=None, use_case_id=None, mask_to_top_k: bool = True) -> tf.Tensor:
    """All-experts MoE with ``layer``'s weights and router.

    Args:
      layer: a built :class:`~grec_tf.layers.SparseMoE`.
      x: [B, S, D].
      flow_id, use_case_id: [B] ints for task routings.
      mask_to_top_k: True -> weights are the top-k softmax entries renormalized (sparse reference);
        False -> the full softmax over all E experts (dense MoE baseline).

    Returns:
      [B, S, D] = x + sum_e w_e * expert_e(x).
    """
    x = tf.convert_to_tensor(x)
    dtype = x.dtype
    xf = tf.cast(x, tf.float32)
    if layer.routing == "token":
        logits = layer.router(xf)  # [B, S, E]
    elif layer.routing == "sentence":
        logits = layer.router(tf.reduce_mean(xf, axis=1))[:, tf.newaxis, :]  # [B, 1, E]
    else:
        flows = tf.cast(flow_id, tf.int32)
        use_cases = tf.cast(use_case_id, tf.int32)
        if layer.routing == "task":
            gate_input = layer.task_embedding(flows * layer.num_use_cases + use_cases)
        else:
            gate_input = 0.5 * (layer.flow_embedding(flows) + layer.use_case_embedding(use_cases))
        logits = layer.router(gate_input)[:, tf.newaxis, :]
    probs = tf.nn.softmax(logits, axis=-1)
    if mask_to_top_k:
        kth = tf.math.top_k(probs, k=layer.top_k).values[..., -1:]
        probs = tf.where(probs >= kth, probs, 0.0)
        probs = probs / tf.reduce_sum(probs, axis=-1, keepdims=True)
    # All experts as one wide feed-forward: [N, D] x [D, E*F] -> gate-weighted hidden -> [E*F, D].
    num_experts, hidden_dim = layer.num_experts, layer.hidden_dim
    width = tf.shape(x)[-1]
    w_in = tf.reshape(tf.transpose(tf.cast(layer.kernel_in, dtype), [1, 0, 2]), [width, num_experts * hidden_dim])
    b_in = tf.reshape(tf.cast(layer.bias_in, dtype), [num_experts * hidden_dim])
    w_out = tf.reshape(tf.cast(layer.kernel_out, dtype), [num_experts * hidden_dim, width])
    b_out = tf.cast(layer.bias_out, dtype)
    activation = tf.keras.activations.get(layer.activation)
    weights = tf.cast(tf.reshape(tf.broadcast_to(probs, tf.concat([tf.shape(x)[:2], [num_experts]], 0)),
                                 [-1, num_experts, 1]), dtype)  # [N, E, 1]
    rows = tf.reshape(x, [-1, width])
    hidden = activation(tf.matmul(rows, w_in) + b_in)  # [N, E*F]
    hidden = tf.reshape(tf.reshape(hidden, [-1, num_experts, hidden_dim]) * weights, [-1, num_experts * hidden_dim])
    out = tf.matmul(hidden, w_out) + tf.matmul(weights[..., 0], b_out)
    return x + tf.reshape(out, tf.shape(x))
