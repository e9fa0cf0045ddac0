"""Search-query encoder: raw strings -> WordPiece tokens -> small transformer -> one vector per query.

Shapes (B = batch, L = ``max_tokens``, D = ``output_dim``):

- input: raw query strings, ``tf.string`` of shape ``[B]`` or ``[B, 1]``;
- tokenization (inside the graph, so it is part of any exported SavedModel): tensorflow-text
  ``BasicTokenizer(lower_case=True)`` splits each query into words (lower-cased, NFD-normalized, accents
  stripped, split on whitespace and punctuation), then ``FastWordpieceTokenizer`` maps the words to
  WordPiece ids of the vocabulary (unknown words -> ``[UNK]``); the ids are truncated to the first L
  tokens and padded to ``[B, L]`` with a boolean mask ``[B, L]`` of the real tokens;
- token embedding ``[V, D]`` + learned position embedding ``[L, D]`` -> ``[B, L, D]``;
- ``num_layers`` x :class:`grec_tf.layers.ParallelTransformerBlock` with the key-padding mask, then a
  final LayerNormalization -> ``[B, L, D]``;
- mean pooling over the real tokens -> ``[B, D]``. A query with no token (an empty or blank string;
  punctuation and unknown words are tokens) gets a learned "empty query" vector ``[D]`` instead: empty
  queries are normal, never NaN.

Every row is computed independently of the other rows of the batch. Computation runs in the layer's
compute dtype (Keras mixed-precision policy); the pooling sum is done in float32.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import tensorflow as tf
import tensorflow_text as tf_text
# Not exported at the top level of tensorflow_text, but it is the splitter its vocabulary learner uses.
from tensorflow_text.python.ops.bert_tokenizer import BasicTokenizer

from grec_tf.text.wordpiece_vocabulary import BERT_TOKENIZER_PARAMS, PAD_TOKEN, UNK_TOKEN


def _parallel_transformer_block_class():
    """Imported lazily: grec_tf.layers may be imported after grec_tf.text."""
    try:
        from grec_tf.layers import ParallelTransformerBlock  # type: ignore[attr-defined]
    except ImportError:
        from grec_tf.layers.parallel_transformer_block import ParallelTransformerBlock
    return ParallelTransformerBlock


@tf.keras.utils.register_keras_serializable(package="grec_tf")
class SearchQueryEncoder(tf.keras.layers.Layer):
    """Encodes raw search-query strings ``[B]`` (or ``[B, 1]``) into vectors ``[B, output_dim]``.

    Args:
      vocabulary: WordPiece vocabulary (e.g. from :func:`grec_tf.text.build_wordpiece_vocabulary`);
        must contain ``"[UNK]"``; ``"[PAD]"`` (if present) is the padding id, else id 0. Stored in
        ``get_config``, so the layer round-trips and its SavedModel needs no vocabulary file.
      max_tokens: L, WordPiece tokens kept per query (the first L; longer queries are truncated).
      output_dim: D, the width of the embeddings, of the transformer and of the output.
      num_layers: number of parallel transformer blocks (0 gives a bag of position-aware embeddings).
      num_heads: attention heads per block; ``output_dim`` must be divisible by it.
      mlp_dim: hidden width of each block's MLP (default ``2 * output_dim``).
      dropout: dropout rate inside the blocks (training only).
    """

    def __init__(self, vocabulary: Sequence[str], max_tokens: int, output_dim: int, num_layers: int = 1,
                 num_heads: int = 2, mlp_dim: Optional[int] = None, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        vocabulary = [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in vocabulary]
        if UNK_TOKEN not in vocabulary:
            raise ValueError(f"SearchQueryEncoder: the vocabulary must contain {UNK_TOKEN!r}")
        if len(set(vocabulary)) != len(vocabulary):
            dup = sorted({t for t in vocabulary if vocabulary.count(t) > 1})[:5]
            raise ValueError(f"SearchQueryEncoder: the vocabulary has duplicate tokens, e.g. {dup}")
        if int(max_tokens) < 1:
            raise ValueError(f"SearchQueryEncoder: max_tokens must be >= 1, got {max_tokens}")
        if int(output_dim) < 1 or int(num_heads) < 1 or int(output_dim) % int(num_heads):
            raise ValueError(
                f"SearchQueryEncoder: output_dim ({output_dim}) must be a positive multiple of "
                f"num_heads ({num_heads})")
        if int(num_layers) < 0:
            raise ValueError(f"SearchQueryEncoder: num_layers must be >= 0, got {num_layers}")
        # A tuple of str: not wrapped into a trackable list, plain JSON in get_config.
        self._vocabulary: Tuple[str, ...] = tuple(vocabulary)
        self.max_tokens = int(max_tokens)
        self.output_dim = int(output_dim)
        self.num_layers = int(num_layers)
        self.num_heads = int(num_heads)
        self.mlp_dim = int(mlp_dim) if mlp_dim else 2 * self.output_dim
        self.dropout = float(dropout)
        self.pad_id = vocabulary.index(PAD_TOKEN) if PAD_TOKEN in vocabulary else 0

        # Same word splitting as the vocabulary learner (bert_vocab_from_dataset), then WordPiece.
        self._word_splitter = BasicTokenizer(**BERT_TOKENIZER_PARAMS)
        self._wordpiece = tf_text.FastWordpieceTokenizer(
            vocab=list(vocabulary), suffix_indicator="##", unknown_token=UNK_TOKEN,
            no_pretokenization=True, support_detokenization=False, token_out_type=tf.int64)

        policy = self.dtype_policy
        self.token_embedding = tf.keras.layers.Embedding(
            len(vocabulary), self.output_dim,
            embeddings_initializer=tf.keras.initializers.RandomNormal(stddev=0.02),
            dtype=policy, name="token_embedding")
        block_cls = _parallel_transformer_block_class() if self.num_layers else None
        self.blocks = [
            block_cls(num_heads=self.num_heads, key_dim=self.output_dim // self.num_heads,
                      mlp_dim=self.mlp_dim, dropout=self.dropout, dtype=policy, name=f"block_{i}")
            for i in range(self.num_layers)
        ]
        self.final_norm = tf.keras.layers.LayerNormalization(epsilon=1e-6, dtype=policy, name="final_norm")

    @property
    def vocabulary(self) -> List[str]:
        return list(self._vocabulary)

    @property
    def vocabulary_size(self) -> int:
        return len(self._vocabulary)

    def build(self, input_shape):
        self.position_embedding = self.add_weight(
            name="position_embedding", shape=[self.max_tokens, self.output_dim],
            initializer=tf.keras.initializers.RandomNormal(stddev=0.02), trainable=True)
        self.empty_query_embedding = self.add_weight(
            name="empty_query_embedding", shape=[self.output_dim],
            initializer=tf.keras.initializers.RandomNormal(stddev=0.02), trainable=True)
        seq_shape = tf.TensorShape([None, self.max_tokens, self.output_dim])
        # Build the sub-layers now (under their own name scopes, so weight names stay distinct).
        with tf.name_scope(self.token_embedding.name):
            self.token_embedding.build(tf.TensorShape([None, self.max_tokens]))
        for block in self.blocks:
            with tf.name_scope(block.name):
                block.build(seq_shape)
        with tf.name_scope(self.final_norm.name):
            self.final_norm.build(seq_shape)
        super().build(input_shape)

    def tokenize(self, queries) -> Tuple[tf.Tensor, tf.Tensor]:
        """Raw strings ``[B]`` or ``[B, 1]`` -> (token ids ``[B, L]`` int64, token mask ``[B, L]`` bool).

        Padding positions hold the ``[PAD]`` id; an empty query has an all-False mask row.
        """
        queries = tf.convert_to_tensor(queries, dtype=tf.string)
        rank = queries.shape.rank
        if rank == 2:
            if queries.shape[-1] not in (None, 1):
                raise ValueError(
                    "SearchQueryEncoder: expected query strings of shape [B] or [B, 1], "
                    f"got {queries.shape}")
            queries = tf.reshape(queries, [-1])
        elif rank == 0:
            queries = tf.reshape(queries, [1])
        elif rank != 1:
            raise ValueError(
                f"SearchQueryEncoder: expected query strings of shape [B] or [B, 1], got {queries.shape}")
        words = self._word_splitter.tokenize(queries)  # [B, (words)]
        pieces = self._wordpiece.tokenize(words)  # [B, (words), (pieces)]
        ids = pieces.merge_dims(1, 2)[:, : self.max_tokens]  # [B, (<= L)]
        mask = tf.sequence_mask(ids.row_lengths(), self.max_tokens)  # [B, L]
        dense = ids.to_tensor(default_value=tf.constant(self.pad_id, tf.int64),
                              shape=[None, self.max_tokens])  # [B, L]
        return dense, mask

    def call(self, inputs, training=None):
        ids, mask = self.tokenize(inputs)
        x = self.token_embedding(ids)  # [B, L, D] in the compute dtype
        x = x + tf.cast(self.position_embedding, x.dtype)[tf.newaxis]
        has_tokens = tf.reduce_any(mask, axis=1)  # [B]
        # An empty query would give its attention nothing to attend to (an all-masked softmax): let
        # its rows see the padding token at position 0 instead. Its output is replaced by the learned
        # empty-query vector below, so this only keeps every value (and gradient) finite.
        first_position = tf.sequence_mask(tf.ones_like(ids[:, 0], dtype=tf.int32), self.max_tokens)
        attention_mask = tf.logical_or(mask, tf.logical_and(first_position, ~has_tokens[:, tf.newaxis]))
        for block in self.blocks:
            x = block(x, mask=attention_mask, training=training)
        x = self.final_norm(x)
        weights = tf.cast(mask, tf.float32)[..., tf.newaxis]  # [B, L, 1]
        total = tf.reduce_sum(tf.cast(x, tf.float32) * weights, axis=1)  # [B, D]
        count = tf.reduce_sum(weights, axis=1)  # [B, 1]
        pooled = total / tf.maximum(count, 1.0)
        empty = tf.cast(self.empty_query_embedding, tf.float32)[tf.newaxis]  # [1, D]
        out = tf.where(has_tokens[:, tf.newaxis], pooled, empty)  # [B, D]
        return tf.cast(out, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape([tf.TensorShape(input_shape)[0], self.output_dim])

    def get_config(self):
        config = super().get_config()
        config.update({
            "vocabulary": list(self._vocabulary),
            "max_tokens": self.max_tokens,
            "output_dim": self.output_dim,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "mlp_dim": self.mlp_dim,
            "dropout": self.dropout,
        })
        return config
