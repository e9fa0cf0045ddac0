"""Search-query encoder from TF Hub or a local SavedModel, followed by a Dense projection.

Shapes: raw query strings ``tf.string [B]`` (or ``[B, 1]``) -> the loaded encoder's output ``[B, d]``
(for a dict output, the entry named ``output_key``) -> ``Dense(output_dim)`` -> ``[B, output_dim]``.

The handle is a TF Hub handle (``https://tfhub.dev/...``, ``https://www.kaggle.com/models/...``) or the
path of a local TF2 SavedModel whose ``__call__`` takes a batch of raw strings, with its tokenization
inside (e.g. an exported :class:`~grec_tf.text.SearchQueryEncoder` model, or a Universal Sentence
Encoder / NNLM text embedding). With ``trainable=False`` the encoder is frozen and only the projection
learns; with ``trainable=True`` the encoder's trainable variables are fine-tuned too (this needs a
reusable SavedModel, i.e. one that exposes ``trainable_variables``).
"""
from __future__ import annotations

from typing import Optional

import tensorflow as tf
import tensorflow_hub as hub

# Dict keys picked, in this order, when the encoder returns a dict and no output_key is given.
_DEFAULT_OUTPUT_KEYS = ("pooled_output", "default", "outputs", "output")


@tf.keras.utils.register_keras_serializable(package="grec_tf")
class HubTextEncoder(tf.keras.layers.Layer):
    """``hub.KerasLayer(handle)`` on raw strings ``[B]`` -> ``Dense(output_dim)`` -> ``[B, output_dim]``.

    Args:
      handle: TF Hub handle or local SavedModel path (stored in ``get_config``).
      output_dim: width of the projection output.
      trainable: fine-tune the loaded encoder (the projection always trains). Note that this
        argument is this layer's ``trainable`` in ``get_config`` too; the layer itself is created
        trainable.
      output_key: for an encoder returning a dict, the entry to use (e.g. ``"pooled_output"`` or
        ``"default"``). ``None`` picks ``pooled_output``, ``default``, ``outputs``, ``output`` or the only
        entry, in that order.
    """

    def __init__(self, handle: str, output_dim: int, trainable: bool = False,
                 output_key: Optional[str] = None, **kwargs):
        super().__init__(trainable=True, **kwargs)
        if not handle:
            raise ValueError("HubTextEncoder: handle must be a TF Hub handle or a SavedModel path")
        self.handle = str(handle)
        self.output_dim = int(output_dim)
        self.encoder_trainable = bool(trainable)
        self.output_key = output_key
        try:
            # Load first and hand KerasLayer the loaded object: given a path, KerasLayer imports
            # tensorflow.keras.saving, which rebinds tf.keras to Keras 3 for the whole process.
            # float32: the loaded graph fixes its own dtypes; the projection follows the policy.
            self.encoder = hub.KerasLayer(hub.load(self.handle), trainable=self.encoder_trainable,
                                          dtype="float32", name="encoder")
        except (OSError, ValueError) as err:
            raise ValueError(
                f"HubTextEncoder: cannot load text encoder from handle {self.handle!r}: {err}") from err
        self.projection = tf.keras.layers.Dense(self.output_dim, dtype=self.dtype_policy, name="projection")

    def _select_output(self, result):
        if isinstance(result, dict):
            key = self.output_key
            if key is None:
                key = next((k for k in _DEFAULT_OUTPUT_KEYS if k in result), None)
                if key is None and len(result) == 1:
                    key = next(iter(result))
            if key is None or key not in result:
                raise ValueError(
                    f"HubTextEncoder({self.handle!r}): the encoder returns a dict with keys "
                    f"{sorted(result)}; set output_key to one of them"
                    + (f" (output_key={key!r} is not one)" if key is not None else ""))
            result = result[key]
        elif self.output_key is not None:
            raise ValueError(
                f"HubTextEncoder({self.handle!r}): output_key={self.output_key!r} given but the encoder "
                "returns a single tensor, not a dict")
        if result.shape.rank != 2:
            raise ValueError(
                f"HubTextEncoder({self.handle!r}): expected the encoder output to be [B, d], got shape "
                f"{result.shape}; pick a pooled output with output_key")
        return result

    def call(self, inputs, training=None):
        queries = tf.convert_to_tensor(inputs, dtype=tf.string)
        if queries.shape.rank == 2:
            queries = tf.reshape(queries, [-1])
        encoded = self._select_output(self.encoder(queries, training=training))  # [B, d]
        return self.projection(tf.cast(encoded, tf.float32))  # [B, output_dim]

    def compute_output_shape(self, input_shape):
        return tf.TensorShape([tf.TensorShape(input_shape)[0], self.output_dim])

    def get_config(self):
        config = super().get_config()
        config.update({
            "handle": self.handle,
            "output_dim": self.output_dim,
            "trainable": self.encoder_trainable,
            "output_key": self.output_key,
        })
        return config
