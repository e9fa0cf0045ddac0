"""PaLM-style parallel transformer block with multi-query attention.

``y = x + Attn(LN(x)) + MLP(LN(x))``: one LayerNorm shared by both branches, ONE fused input projection
producing ``[Q | K | V | MLP-in]`` and ONE fused output projection of ``[attention heads | MLP hidden]``
(the sum of the two branch output projections is a single matmul on their concatenation).

Shapes (B batch, L length, D width, h heads, d = key_dim, F = mlp_dim):
  x [B, L, D], mask [B, L] bool -> y [B, L, D].
Fused input projection: [D, h*d + d + d + F] (GELU) or [D, h*d + 2d + 2F] (SwiGLU: F gate + F value).
Fused output projection: [h*d + F, D].

Given a factored stack (:mod:`grec_tf.layers.shared_tokens`: ``shared`` [N, P, D] tokens gathered by ``rows`` [B],
then ``own`` [B, Q, D]), the per-token work of the shared tokens - LayerNorm, the input projection and the whole
MLP branch, none of which looks at other tokens - runs once per shared row; only attention, which mixes every
token with the row's own ones, and the attention half of the output projection run per row.
"""
import tensorflow as tf

from grec_tf.layers.activations import gelu_exact
from grec_tf.layers.multi_query_attention import multi_query_attend
from grec_tf.layers.shared_tokens import OWN, ROWS, SHARED, dense_tokens, is_shared, token_width

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
      x: [B, L, D], or a factored stack of B rows and L = P + Q tokens (see the module docstring).
      mask: [B, L] bool, True for valid positions; padded positions are excluded as keys. Outputs at padded
        positions are computed but meaningless (pool with the same mask).
      training: enables dropout.

    Returns:
      [B, L, D].
    """

    #: accepts a factored token stack (:mod:`grec_tf.layers.shared_tokens`)
    takes_shared_tokens = True

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
        width = token_width(input_shape)
        h, d, f = self.num_heads, self.key_dim, self.mlp_dim
        mlp_in = 2 * f if self.activation == "swiglu" else f
        self.layer_norm.build(tf.TensorShape([None, None, width]))
        self.fused_input_kernel = self.add_weight(
            "fused_input_kernel", shape=(width, h * d + 2 * d + mlp_in), initializer="glorot_uniform")
        self.fused_input_bias = self.add_weight(
            "fused_input_bias", shape=(h * d + 2 * d + mlp_in,), initializer="zeros")
        self.fused_output_kernel = self.add_weight(
            "fused_output_kernel", shape=(h * d + f, width), initializer="glorot_uniform")
        self.fused_output_bias = self.add_weight("fused_output_bias", shape=(width,), initializer="zeros")
        super().build(input_shape)

    def call(self, x, mask=None, training=None):
        if is_shared(x):
            return self._call_shared(x, mask, training)
        q, k, v, hidden = self._project(x)
        branches = tf.concat([self._attend(q, k, v, mask, training), hidden], axis=-1)
        out = tf.einsum("ble,ed->bld", branches, self.fused_output_kernel) + self.fused_output_bias
        return x + self._residual_dropout(out, training=training)

    def _call_shared(self, tokens, mask, training):
        """``call`` on a factored stack: the shared tokens' LayerNorm, projection and MLP branch once per shared
        row [N, P, ...], gathered to the B rows; attention and its output projection per row."""
        heads_kernel, mlp_kernel = tf.split(self.fused_output_kernel, [self.num_heads * self.key_dim, self.mlp_dim])
        parts = []
        for part in (tokens[SHARED], tokens[OWN]):
            q, k, v, hidden = self._project(part)
            parts.append((q, k, v, tf.einsum("blf,fd->bld", hidden, mlp_kernel)))
        rows = tokens[ROWS]
        q, k, v, mlp_out = (tf.concat([tf.gather(shared, rows), own], axis=1) for shared, own in zip(*parts))
        heads = self._attend(q, k, v, mask, training)
        out = tf.einsum("ble,ed->bld", heads, heads_kernel) + mlp_out + self.fused_output_bias
        return dense_tokens(tokens) + self._residual_dropout(out, training=training)

    def _project(self, x):
        """LayerNorm and the fused input projection of x [N, L, D]: queries [N, L, h, d], the shared key and value
        [N, L, d] each, and the MLP hidden [N, L, F] (after its activation)."""
        h, d, f = self.num_heads, self.key_dim, self.mlp_dim
        projected = tf.einsum("bld,de->ble", self.layer_norm(x), self.fused_input_kernel) + self.fused_input_bias
        mlp_in = 2 * f if self.activation == "swiglu" else f
        q, k, v, mlp = tf.split(projected, [h * d, d, d, mlp_in], axis=-1)
        q = tf.reshape(q, [tf.shape(x)[0], tf.shape(x)[1], h, d])
        if self.activation == "swiglu":
            gate, value = tf.split(mlp, 2, axis=-1)
            return q, k, v, tf.nn.silu(gate) * value
        return q, k, v, gelu_exact(mlp)

    def _attend(self, q, k, v, mask, training):
        """Multi-query attention of q [B, L, h, d] over k, v [B, L, d] -> the concatenated heads [B, L, h*d]."""
        heads = multi_query_attend(q, k, v, mask, dropout=lambda p: self._attention_dropout(p, training=training))
        return tf.reshape(heads, [tf.shape(q)[0], tf.shape(q)[1], self.num_heads * self.key_dim])

    def compute_output_shape(self, input_shape):
        if is_shared(input_shape):  # a factored stack: [B, P + Q, D]
            shared, own = tf.TensorShape(input_shape[SHARED]), tf.TensorShape(input_shape[OWN])
            length = None if shared[1] is None or own[1] is None else shared[1] + own[1]
            return tf.TensorShape([own[0], length, own[-1]])
        return tf.TensorShape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(num_heads=self.num_heads, key_dim=self.key_dim, mlp_dim=self.mlp_dim,
                      activation=self.activation, dropout=self.dropout)
        return config
