"""Encoder of the viewed-page and viewed-item sequences into one token."""
from __future__ import annotations

from typing import Dict, List, Optional

import tensorflow as tf

from grec_tf.layers import MultiQueryAttention, ParallelTransformerBlock
from grec_tf.layers.activations import gelu_exact


def most_recent(sequence: tf.Tensor, max_length: int) -> tf.Tensor:
    """[B, L] ""-padded, left-aligned string ids -> [B, max_length]: the last ``max_length`` valid
    ids of each row, left-aligned and ""-padded."""
    if sequence.shape[1] is not None and sequence.shape[1] <= max_length:
        # Nothing to drop (training inputs come truncated); pad statically to max_length.
        return tf.pad(sequence, [[0, 0], [0, max_length - sequence.shape[1]]], constant_values="")
    lengths = tf.reduce_sum(tf.cast(tf.not_equal(sequence, ""), tf.int64), axis=1)
    ragged = tf.RaggedTensor.from_tensor(sequence, lengths=lengths)[:, -max_length:]
    return ragged.to_tensor(default_value="", shape=[None, max_length])


@tf.keras.utils.register_keras_serializable(package="grec_tf")
class SequenceEncoder(tf.keras.layers.Layer):
    """Embeds each id sequence, joins them along time, runs parallel MQA blocks, mean+max pools.

    Each sequence feature gets its own vocabulary (``""`` is padding and maps to the mask index 0),
    embedding of width D, learned positions and a learned type vector, so pages and items can be
    told apart after they are concatenated into one [B, sum(L_i), D] stream. Padded positions are
    excluded from attention (key-padding mask) and from both poolings.

    Args:
      sequences: [{"name", "vocabulary", "num_oov", "max_length"}].
      d_model: width D; num_blocks: parallel transformer blocks; num_heads: query heads.

    With ``target_attention`` the candidate item also attends over the encoded positions (DIN-style
    target attention, multi-query): the pooled summary then says how the history relates to *this*
    candidate (which viewed items resemble it), which mean/max pooling cannot.

    Call: ``inputs`` dict name -> [B, L] string, valid ids left-aligned and ""-padded, any L (the
    most recent ``max_length`` ids are kept); ``candidate`` [B, D] (required with target attention).
    Returns [B, D].
    """

    def __init__(self, sequences: List[Dict], d_model: int, num_blocks: int = 1, num_heads: int = 4,
                 dropout: float = 0.0, target_attention: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.sequences, self.d_model = sequences, d_model
        self.num_blocks, self.num_heads, self.dropout = num_blocks, num_heads, dropout
        self.target_attention = target_attention
        self.lookups, self.embeddings, self.positions = {}, {}, {}
        for spec in sequences:
            name = spec["name"]
            self.lookups[name] = tf.keras.layers.StringLookup(
                vocabulary=list(spec["vocabulary"]), mask_token="", num_oov_indices=spec["num_oov"],
                name=f"{name}_lookup")
            self.embeddings[name] = tf.keras.layers.Embedding(
                len(spec["vocabulary"]) + spec["num_oov"] + 1, d_model, name=f"{name}_embedding")
            self.positions[name] = tf.keras.layers.Embedding(spec["max_length"], d_model,
                                                             name=f"{name}_position")
        self.blocks = [ParallelTransformerBlock(num_heads=num_heads, key_dim=max(d_model // num_heads, 8),
                                                mlp_dim=2 * d_model, dropout=dropout, name=f"block_{i}")
                       for i in range(num_blocks)]
        self.candidate_attention = (MultiQueryAttention(num_heads=num_heads, key_dim=max(d_model // num_heads, 8),
                                                        name="candidate_attention") if target_attention else None)
        self.output_projection = tf.keras.layers.Dense(d_model, activation=gelu_exact, name="output_projection")

    def build(self, input_shape) -> None:
        self.type_embedding = self.add_weight(
            name="type_embedding", shape=(len(self.sequences), self.d_model), initializer="glorot_uniform")
        super().build(input_shape)

    def call(self, inputs: Dict[str, tf.Tensor], candidate: Optional[tf.Tensor] = None, training=None) -> tf.Tensor:
        if self.target_attention and candidate is None:
            raise ValueError(f"{self.name}: target_attention=True needs the candidate item token [B, D]")
        streams, masks = [], []
        for i, spec in enumerate(self.sequences):
            name = spec["name"]
            ids = self.lookups[name](most_recent(inputs[name], spec["max_length"]))  # [B, L], 0 = padding
            x = self.embeddings[name](ids) + self.positions[name](tf.range(spec["max_length"]))[None]
            streams.append(x + tf.cast(self.type_embedding[i], x.dtype))
            masks.append(ids > 0)
        x = tf.cast(tf.concat(streams, axis=1), self.compute_dtype)  # [B, L, D]
        mask = tf.concat(masks, axis=1)  # [B, L]
        for block in self.blocks:
            x = block(x, mask=mask, training=training)
        valid = tf.cast(mask, x.dtype)[..., None]
        count = tf.maximum(tf.reduce_sum(valid, axis=1), 1.0)
        mean = tf.reduce_sum(x * valid, axis=1) / count
        # Rows with no valid position pool to zeros, not to the padding's values or -inf.
        lowest = tf.cast(-1e4 if x.dtype != tf.float32 else -1e9, x.dtype)
        maximum = tf.reduce_max(tf.where(mask[..., None], x, lowest), axis=1)
        maximum = tf.where(tf.reduce_any(mask, axis=1)[:, None], maximum, tf.zeros_like(maximum))
        pooled = [mean, maximum]
        if self.candidate_attention is not None:
            query = tf.cast(candidate, x.dtype)[:, None, :]
            pooled.append(self.candidate_attention(query, x, key_mask=mask, training=training)[:, 0])
        return self.output_projection(tf.concat(pooled, axis=-1))

    def get_config(self) -> Dict:
        return {**super().get_config(), "sequences": self.sequences, "d_model": self.d_model,
                "num_blocks": self.num_blocks, "num_heads": self.num_heads, "dropout": self.dropout,
                "target_attention": self.target_attention}
