"""PaLM-style parallel transformer block with multi-query attention.

``y = x + Attn(LN(x)) + MLP(LN(x))``: one LayerNorm shared by both branches, ONE fused input projection
producing ``[Q | K | V | MLP-in]`` and ONE fused output projection of ``[attention heads | MLP hidden]``
(the sum of the two branch output projections is a single matmul on their concatenation).

Shapes (B batch, L length, D width, h heads, d = key_dim, F = mlp_dim):
  x [B, L, D], mask [B, L] bool -> y [B, L, D].
Fused input projection: [D, h*d + d + d + F] (GELU) or [D, h*d + 2d + 2F] (SwiGLU: F gate + F value).
Fused output projection: [h*d + F, D].
"""
import tensorflow as tf

from grec_tf.layers.activations import gelu_exact
from grec_tf.layers.multi_query_attention import multi_query_attend

_ACTIVATIONS = ("gelu", "swiglu")


@tf.keras.utils.register_keras_serializable(package="grec_tf")
class ParallelTransformerBlock(tf.keras.layers.Layer):
    """Parallel attention + MLP block (shared LayerNorm, fused projections, multi-query attention).

    Args:
      num_heads: query heads h (keys/values have one shared head).
      key_dim: head width d.
      mlp_dim: MLP hidden width F.
      activation: "gelu" (default) or "swiglu" (``silu(x W_g) * (x W_v)``).
      dropout: dropout on attention probabilities and on the block's residual branch (training only).

    Call args:
      x: [B, L, D].
      mask: [B, L] bool, True for valid positions; padded positions are excluded as keys. Outputs at padded
        positions are computed but meaningless (pool with the same mask).
      training: enables dropout.

    Returns:
      [B, L, D].
    """

    def __init__(self, num_heads: int, key_dim: int, mlp_dim: int, activation: str = "gelu",
                 dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if activation not in _ACTIVATIONS:
            raise ValueError(f"ParallelTransformerBlock: activation must be one of {_ACTIVATIONS}, "
                             f"got {activation!r}")
        self.num_heads = int(num_heads)
        self.key_dim = int(key_dim)
        self.mlp_dim = int(mlp_dim)
        self.activation = activation
        self.dropout = float(dropout)
        self.layer_norm = tf.keras.layers.LayerNormalization(epsilon=1e-6, name="layer_norm")
        self._attention_dropout = tf.keras.layers.Dropout(self.dropout)
        self._residual_dropout = tf.keras.layers.Dropout(self.dropout)

    def build(self, input_shape):
        width = int(tf.TensorShape(input_shape)[-1])
        h, d, f = self.num_heads, self.key_dim, self.mlp_dim
        mlp_in = 2 * f if self.activation == "swiglu" else f
        self.layer_norm.build(input_shape)
        self.fused_input_kernel = self.add_weight(
            "fused_input_kernel", shape=(width, h * d + 2 * d + mlp_in), initializer="glorot_uniform")
        self.fused_input_bias = self.add_weight(
            "fused_input_bias", shape=(h * d + 2 * d + mlp_in,), initializer="zeros")
        self.fused_output_kernel = self.add_weight(
            "fused_output_kernel", shape=(h * d + f, width), initializer="glorot_uniform")
        self.fused_output_bias = self.add_weight("fused_output_bias", shape=(width,), initializer="zeros")
        super().build(input_shape)

    def call(self, x, mask=None, training=None):
        h, d, f = self.num_heads, self.key_dim, self.mlp_dim
        normed = self.layer_norm(x)
        projected = tf.einsum("bld,de->ble", normed, self.fused_input_kernel) + self.fused_input_bias
        mlp_in = 2 * f if self.activation == "swiglu" else f
        q, k, v, mlp = tf.split(projected, [h * d, d, d, mlp_in], axis=-1)
        batch, length = tf.shape(x)[0], tf.shape(x)[1]
        q = tf.reshape(q, [batch, length, h, d])
        heads = multi_query_attend(q, k, v, mask,
                                   dropout=lambda p: self._attention_dropout(p, training=training))
        heads = tf.reshape(heads, [batch, length, h * d])
        if self.activation == "swiglu":
            gate, value = tf.split(mlp, 2, axis=-1)
            hidden = tf.nn.silu(gate) * value
        else:
            hidden = gelu_exact(mlp)
        branches = tf.concat([heads, hidden], axis=-1)
        out = tf.einsum("ble,ed->bld", branches, self.fused_output_kernel) + self.fused_output_bias
        return x + self._residual_dropout(out, training=training)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(num_heads=self.num_heads, key_dim=self.key_dim, mlp_dim=self.mlp_dim,
                      activation=self.activation, dropout=self.dropout)
        return config
