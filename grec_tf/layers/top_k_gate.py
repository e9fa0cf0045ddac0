"""Top-k softmax gating and the router's auxiliary losses, all in float32.

Shapes (U routing units: tokens, examples or distinct routes; E experts; k selected experts):
  logits [U, E] -> probs [U, E], gates [U, k] (renormalized to sum 1), experts [U, k] int32.

A unit may stand for several rows (a distinct task route shared by ``count`` rows of the batch); the losses
then weight it by its count, so they equal the per-row formulas.
"""
from typing import Optional, Tuple

import tensorflow as tf


def top_k_gate(logits: tf.Tensor, top_k: int) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Softmax over experts, keep the k largest, renormalize their weights to sum to 1.

    Args:
      logits: [U, E] router logits (cast to float32).
      top_k: k.

    Returns:
      probs [U, E] float32 full softmax, gates [U, k] float32 renormalized weights of the chosen experts
      (largest first), experts [U, k] int32 chosen expert ids (ties -> lower id).
    """
    probs = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
    top_probs, experts = tf.math.top_k(probs, k=top_k, sorted=True)
    gates = top_probs / tf.reduce_sum(top_probs, axis=-1, keepdims=True)
    return probs, gates, tf.cast(experts, tf.int32)


def _weighted_mean(values: tf.Tensor, counts: Optional[tf.Tensor]) -> tf.Tensor:
    """Mean over axis 0 of ``values`` [U, ...], each unit counted ``counts[u]`` times ([U] float32)."""
    if counts is None:
        return tf.reduce_mean(values, axis=0)
    counts = tf.reshape(tf.cast(counts, tf.float32), [-1] + [1] * (values.shape.rank - 1))
    return tf.reduce_sum(values * counts, axis=0) / tf.reduce_sum(counts)


def load_balance_loss(probs: tf.Tensor, experts: tf.Tensor, counts: Optional[tf.Tensor] = None) -> tf.Tensor:
    """Switch/GShard load-balancing loss ``E * sum_e f_e * P_e``.

    f_e: fraction of the (unit, slot) assignments that chose expert e (before capacity), sum_e f_e = 1;
    P_e: mean router probability of expert e. Perfectly uniform routing gives 1.

    Args:
      probs: [U, E] float32 softmax probabilities.
      experts: [U, k] int32 chosen experts.
      counts: optional [U] number of rows each unit stands for.

    Returns:
      scalar float32.
    """
    num_experts = tf.shape(probs)[-1]
    chosen = tf.reduce_mean(tf.one_hot(experts, num_experts, dtype=tf.float32), axis=1)  # [U, E]
    fraction = _weighted_mean(chosen, counts)
    mean_prob = _weighted_mean(tf.cast(probs, tf.float32), counts)
    return tf.cast(num_experts, tf.float32) * tf.reduce_sum(fraction * mean_prob)


def router_z_loss(logits: tf.Tensor, counts: Optional[tf.Tensor] = None) -> tf.Tensor:
    """Router z-loss ``mean_u logsumexp(logits_u)^2`` (ST-MoE). Scalar float32."""
    lse = tf.reduce_logsumexp(tf.cast(logits, tf.float32), axis=-1)
    return _weighted_mean(tf.square(lse), counts)
