"""Multi-query (single key-value) attention: h query heads sharing ONE key and ONE value projection.

GRec paper §3.2 (after Shazeer, "Fast Transformer Decoding: One Write-Head is All You Need"): queries are
projected to ``[h, d]`` per position, keys and values to a single ``[1, d]`` head that every query head reads.
``tf.keras.layers.MultiHeadAttention`` has no multi-query option in tf-keras, hence this layer.

Shapes (B batch, Lq query length, Lk key length, D model width, h heads, d = key_dim):
  query [B, Lq, D], value [B, Lk, D] -> output [B, Lq, D].
"""
from typing import Callable, Optional

import tensorflow as tf

_NEG_INF = -1e9


def multi_query_attend(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, key_mask: Optional[tf.Tensor] = None,
                       dropout: Optional[Callable[[tf.Tensor], tf.Tensor]] = None) -> tf.Tensor:
    """Scaled dot-product attention of h query heads against one shared key/value head.

    Args:
      q: [B, Lq, h, d] queries (any float dtype).
      k: [B, Lk, d] shared keys.
      v: [B, Lk, d] shared values.
      key_mask: optional [B, Lk] bool, True = attend. Masked keys get exactly zero weight; a query whose
        keys are all masked gets all-zero weights (output zeros), never NaN.
      dropout: optional callable applied to the attention probabilities.

    Returns:
      [B, Lq, h, d] in q's dtype.
    """
    depth = tf.cast(tf.shape(q)[-1], q.dtype)
    q = q * tf.math.rsqrt(depth)
    # One batched matmul [B, Lq*h, d] x [B, d, Lk]: the shared key is read once for all heads.
    scores = tf.einsum("bqhd,bkd->bqhk", q, k)
    scores = tf.cast(scores, tf.float32)  # softmax in float32 under mixed precision
    if key_mask is not None:
        mask = tf.cast(key_mask, tf.bool)[:, tf.newaxis, tf.newaxis, :]  # [B, 1, 1, Lk]
        scores = tf.where(mask, scores, _NEG_INF)
        probs = tf.nn.softmax(scores, axis=-1) * tf.cast(mask, tf.float32)
    else:
        probs = tf.nn.softmax(scores, axis=-1)
    probs = tf.cast(probs, v.dtype)
    if dropout is not None:
        probs = dropout(probs)
    return tf.einsum("bqhk,bkd->bqhd", probs, v)


@tf.keras.utils.register_keras_serializable(package="grec_tf")
class MultiQueryAttention(tf.keras.layers.Layer):
    """Multi-query attention with a key-padding mask.

    Args:
      num_heads: number of query heads h.
      key_dim: width d of each query head and of the shared key/value head.
      dropout: dropout rate on the attention probabilities (training only).

    Call args:
      query: [B, Lq, D].
      value: [B, Lk, D]; None means self-attention (value = query).
      key_mask: [B, Lk] bool, True for valid keys (e.g. ``tf.sequence_mask(lengths, Lk)``). Masked keys get
        no weight; a row whose keys are all masked outputs zeros (plus the output bias).
      training: enables dropout.

    Returns:
      [B, Lq, D] (D = query width).
    """

    def __init__(self, num_heads: int, key_dim: int, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.key_dim = int(key_dim)
        self.dropout = float(dropout)
        self.supports_masking = False
        self._dropout_layer = tf.keras.layers.Dropout(self.dropout)

    def build(self, input_shape):
        width = int(tf.TensorShape(input_shape)[-1])  # Keras builds from the query's shape
        h, d = self.num_heads, self.key_dim
        self.query_kernel = self.add_weight("query_kernel", shape=(width, h, d), initializer="glorot_uniform")
        self.query_bias = self.add_weight("query_bias", shape=(h, d), initializer="zeros")
        self.key_kernel = self.add_weight("key_kernel", shape=(width, d), initializer="glorot_uniform")
        self.key_bias = self.add_weight("key_bias", shape=(d,), initializer="zeros")
        self.value_kernel = self.add_weight("value_kernel", shape=(width, d), initializer="glorot_uniform")
        self.value_bias = self.add_weight("value_bias", shape=(d,), initializer="zeros")
        self.output_kernel = self.add_weight("output_kernel", shape=(h, d, width), initializer="glorot_uniform")
        self.output_bias = self.add_weight("output_bias", shape=(width,), initializer="zeros")
        super().build(input_shape)

    def call(self, query, value=None, key_mask=None, training=None):
        if value is None:
            value = query
        q = tf.einsum("bld,dhk->blhk", query, self.query_kernel) + self.query_bias
        k = tf.einsum("bld,dk->blk", value, self.key_kernel) + self.key_bias
        v = tf.einsum("bld,dk->blk", value, self.value_kernel) + self.value_bias
        heads = multi_query_attend(q, k, v, key_mask,
                                   dropout=lambda p: self._dropout_layer(p, training=training))
        return tf.einsum("blhk,hkd->bld", heads, self.output_kernel) + self.output_bias

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(num_heads=self.num_heads, key_dim=self.key_dim, dropout=self.dropout)
        return config
