"""Dense all-experts Mixture-of-Experts computation: the test reference and the benchmark baseline.

Runs EVERY expert on EVERY token (``einsum`` over the expert axis), then combines them with gate weights that
are either the full softmax (dense MoE, the benchmark's "run all experts" baseline) or the softmax masked to
the top-k experts and renormalized (what :class:`~grec_tf.layers.SparseMoE` must equal when capacity does not
bind). Never used by the sparse layer itself.

Shapes: x [B, S, D] -> y [B, S, D] (including the residual x).
"""
from typing import TYPE_CHECKING, Optional

import tensorflow as tf

if TYPE_CHECKING:
    from grec_tf.layers.sparse_moe import SparseMoE


def dense_moe_reference(layer: "SparseMoE", x: tf.Tensor, flow_id: Optional[tf.Tensor] = None,
                        use_case_id: Optional[tf.Tensor] = None, mask_to_top_k: bool = True) -> tf.Tensor:
    """All-experts MoE with ``layer``'s experts and router (the router's own :meth:`row_logits` gives the gate).

    Args:
      layer: a built :class:`~grec_tf.layers.SparseMoE`.
      x: [B, S, D].
      flow_id, use_case_id: [B] ints, for routers that read them.
      mask_to_top_k: True -> weights are the top-k softmax entries renormalized (sparse reference);
        False -> the full softmax over all E experts (dense MoE baseline).

    Returns:
      [B, S, D] = x + sum_e w_e * expert_e(x).
    """
    x = tf.convert_to_tensor(x)
    dtype = x.dtype
    logits = layer.router.row_logits(x, flow_id, use_case_id)  # [B, S or 1, E] float32
    probs = tf.nn.softmax(logits, axis=-1)
    if mask_to_top_k:
        kth = tf.math.top_k(probs, k=layer.top_k).values[..., -1:]
        probs = tf.where(probs >= kth, probs, 0.0)
        probs = probs / tf.reduce_sum(probs, axis=-1, keepdims=True)
    # All experts as one wide feed-forward: [N, D] x [D, E*F] -> gate-weighted hidden -> [E*F, D].
    experts = layer.experts
    num_experts, hidden_dim = experts.num_experts, experts.hidden_dim
    width = tf.shape(x)[-1]
    kernel_in, bias_in, kernel_out, b_out = experts.weights_as(dtype)
    w_in = tf.reshape(tf.transpose(kernel_in, [1, 0, 2]), [width, num_experts * hidden_dim])
    b_in = tf.reshape(bias_in, [num_experts * hidden_dim])
    w_out = tf.reshape(kernel_out, [num_experts * hidden_dim, width])
    activation = experts.activation_fn
    weights = tf.cast(tf.reshape(tf.broadcast_to(probs, tf.concat([tf.shape(x)[:2], [num_experts]], 0)),
                                 [-1, num_experts, 1]), dtype)  # [N, E, 1]
    rows = tf.reshape(x, [-1, width])
    hidden = activation(tf.matmul(rows, w_in) + b_in)  # [N, E*F]
    hidden = tf.reshape(tf.reshape(hidden, [-1, num_experts, hidden_dim]) * weights, [-1, num_experts * hidden_dim])
    out = tf.matmul(hidden, w_out) + tf.matmul(weights[..., 0], b_out)
    return x + tf.reshape(out, tf.shape(x))
