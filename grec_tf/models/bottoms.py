"""Shared bottoms between the input tokens and the towers: GRec's sparse MoE and the baselines.

Every bottom maps the token stack [B, S, D] (and the route ids) to the towers' input: [B, H] when all
towers share one representation, or [B, T, H] when each tower gets its own (MMoE).
"""
from __future__ import annotations

from typing import Dict, Tuple

import tensorflow as tf

from grec_tf.layers import SparseMoE
from grec_tf.layers.activations import gelu_exact
from grec_tf.layers.shared_tokens import TokenStack, dense_tokens, token_width


@tf.keras.utils.register_keras_serializable(package="grec_tf")
class SparseMoEBottom(tf.keras.layers.Layer):
    """GRec: a token mixer, a routed sparse MoE, and a learned-query attention pool, all injected.

    Args:
      mixer: mixes the S tokens (e.g. one :class:`~grec_tf.layers.ParallelTransformerBlock`), [B, S, D] -> [B, S, D].
      moe: the routed :class:`~grec_tf.layers.SparseMoE`, [B, S, D] -> [B, S, D].
      pool_attention: a learned query [1, D] attends over the S tokens (a
        :class:`~grec_tf.layers.MultiQueryAttention`); its output plus the token mean is the representation.

    Call: tokens [B, S, D] (or a factored stack, :mod:`grec_tf.layers.shared_tokens`, which the mixer takes as it
    is when its ``takes_shared_tokens`` is True), flow_id [B], use_case_id [B] -> ([B, D], dispatch [B, E] float32).
    """

    def __init__(self, mixer: tf.keras.layers.Layer, moe: SparseMoE, pool_attention: tf.keras.layers.Layer,
                 **kwargs):
        super().__init__(**kwargs)
        self.mixer, self.moe, self.pool_attention = mixer, moe, pool_attention

    @property
    def takes_shared_tokens(self) -> bool:
        """Whether a factored token stack saves work here: the mixer, the only part before routing, takes it."""
        return bool(getattr(self.mixer, "takes_shared_tokens", False))

    def build(self, input_shape) -> None:
        self.pool_query = self.add_weight(name="pool_query", shape=(1, 1, token_width(input_shape)),
                                          initializer="glorot_uniform")
        super().build(input_shape)

    def call(self, tokens: TokenStack, flow_id: tf.Tensor, use_case_id: tf.Tensor,
             training=None) -> Tuple[tf.Tensor, tf.Tensor]:
        x = self.mixer(tokens if self.takes_shared_tokens else dense_tokens(tokens), training=training)
        x, dispatch = self.moe(x, flow_id=flow_id, use_case_id=use_case_id, training=training, return_routing=True)
        query = tf.tile(tf.cast(self.pool_query, x.dtype), [tf.shape(x)[0], 1, 1])
        pooled = self.pool_attention(query, x, training=training)[:, 0] + tf.reduce_mean(x, axis=1)
        return pooled, dispatch

    def get_config(self) -> Dict:
        return {**super().get_config(), "mixer": tf.keras.layers.serialize(self.mixer),
                "moe": tf.keras.layers.serialize(self.moe),
                "pool_attention": tf.keras.layers.serialize(self.pool_attention)}

    @classmethod
    def from_config(cls, config: Dict) -> "SparseMoEBottom":
        config = dict(config)
        for name in ("mixer", "moe", "pool_attention"):
            config[name] = tf.keras.layers.deserialize(config[name])
        return cls(**config)


@tf.keras.utils.register_keras_serializable(package="grec_tf")
class MMoEBottom(tf.keras.layers.Layer):
    """MMoE (Ma et al., KDD '18): E dense expert MLPs over the flattened tokens, all computed, and one
    softmax gate per tower mixing them.

    Call: tokens [B, S, D] -> ([B, T, H], gate weights [B, T, E]).
    """

    def __init__(self, num_experts: int, num_towers: int, hidden_dim: int, output_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.num_experts, self.num_towers = num_experts, num_towers
        self.hidden_dim, self.output_dim = hidden_dim, output_dim
        self.gates = tf.keras.layers.Dense(num_towers * num_experts, name="gates")

    def build(self, input_shape) -> None:
        width = int(input_shape[1]) * int(input_shape[2])
        E, F, H = self.num_experts, self.hidden_dim, self.output_dim
        self.w_in = self.add_weight(name="w_in", shape=(E, width, F), initializer="glorot_uniform")
        self.b_in = self.add_weight(name="b_in", shape=(E, F), initializer="zeros")
        self.w_out = self.add_weight(name="w_out", shape=(E, F, H), initializer="glorot_uniform")
        self.b_out = self.add_weight(name="b_out", shape=(E, H), initializer="zeros")
        super().build(input_shape)

    def call(self, tokens: tf.Tensor, flow_id=None, use_case_id=None, training=None) -> Tuple[tf.Tensor, tf.Tensor]:
        x = tf.reshape(tokens, [-1, tokens.shape[1] * tokens.shape[2]])  # static width for the gate layer
        dtype = x.dtype
        h = gelu_exact(tf.einsum("bi,eif->bef", x, tf.cast(self.w_in, dtype)) + tf.cast(self.b_in, dtype))
        experts = tf.einsum("bef,efh->beh", h, tf.cast(self.w_out, dtype)) + tf.cast(self.b_out, dtype)
        logits = tf.reshape(tf.cast(self.gates(x), tf.float32), [-1, self.num_towers, self.num_experts])
        gates = tf.nn.softmax(logits, axis=-1)
        return tf.einsum("bte,beh->bth", tf.cast(gates, dtype), experts), gates

    def get_config(self) -> Dict:
        return {**super().get_config(), "num_experts": self.num_experts, "num_towers": self.num_towers,
                "hidden_dim": self.hidden_dim, "output_dim": self.output_dim}


@tf.keras.utils.register_keras_serializable(package="grec_tf")
class SharedBottom(tf.keras.layers.Layer):
    """Shared-bottom (Caruana '97): one MLP over the flattened tokens shared by every tower.

    Call: tokens [B, S, D] -> ([B, H], None).
    """

    def __init__(self, hidden_dim: int, output_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim, self.output_dim = hidden_dim, output_dim
        self.mlp = tf.keras.Sequential([tf.keras.layers.Dense(hidden_dim, activation=gelu_exact),
                                        tf.keras.layers.Dense(output_dim, activation=gelu_exact)], name="mlp")

    def call(self, tokens: tf.Tensor, flow_id=None, use_case_id=None, training=None) -> Tuple[tf.Tensor, None]:
        return self.mlp(tf.reshape(tokens, [-1, tokens.shape[1] * tokens.shape[2]])), None

    def get_config(self) -> Dict:
        return {**super().get_config(), "hidden_dim": self.hidden_dim, "output_dim": self.output_dim}
