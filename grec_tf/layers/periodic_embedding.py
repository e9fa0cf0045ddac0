"""Periodic (PLR) embeddings of numerical features."""
from __future__ import annotations

import math
from typing import Dict

import tensorflow as tf


@tf.keras.utils.register_keras_serializable(package="grec_tf")
class PeriodicEmbedding(tf.keras.layers.Layer):
    """PLR embeddings of F numericals (Gorishniy et al., NeurIPS '22): each x_f -> [sin(2 pi c_f x_f),
    cos(2 pi c_f x_f)] with K trainable frequencies c_f ~ N(0, sigma) truncated at 3 sigma, then a Dense of
    its own per feature (2K -> width) and ReLU.

    Weights: ``frequencies`` [F, K], ``kernel`` [F, 2K, width], ``bias`` [F, width]: K + 2K width + width per
    feature. Runs in float32 whatever the mixed-precision policy (sin/cos of bfloat16 arguments lose the
    low bits that distinguish nearby values); the encoder casts the output like its other parts.

    Call: [B, F] float -> [B, F * width].
    """

    def __init__(self, num_features: int, frequencies: int = 48, sigma: float = 0.1, width: int = 24, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        if num_features < 1 or frequencies < 1 or width < 1 or sigma <= 0:
            raise ValueError(f"PeriodicEmbedding: expected num_features, frequencies, width >= 1 and sigma > 0, got "
                             f"{num_features}, {frequencies}, {width}, {sigma}")
        self.num_features, self.frequencies, self.sigma, self.width = num_features, frequencies, sigma, width

    def build(self, input_shape: tf.TensorShape) -> None:
        f, k = self.num_features, self.frequencies
        self.frequency = self.add_weight(name="frequencies", shape=(f, k),
                                         initializer=tf.keras.initializers.TruncatedNormal(stddev=self.sigma))
        # one Dense 2K -> width per feature, with Keras' Dense defaults (Glorot-uniform kernel, zero bias)
        self.kernel = self.add_weight(name="kernel", shape=(f, 2 * k, self.width), initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(f, self.width), initializer="zeros")
        super().build(input_shape)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        angles = 2.0 * math.pi * self.frequency[tf.newaxis] * tf.cast(x, tf.float32)[..., tf.newaxis]  # [B, F, K]
        periodic = tf.concat([tf.sin(angles), tf.cos(angles)], axis=-1)  # [B, F, 2K]
        embedded = tf.nn.relu(tf.einsum("bfk,fkw->bfw", periodic, self.kernel) + self.bias)  # [B, F, width]
        return tf.reshape(embedded, [-1, self.num_features * self.width])

    def get_config(self) -> Dict:
        config = super().get_config()
        config.pop("dtype", None)  # always float32, set in __init__
        return {**config, "num_features": self.num_features, "frequencies": self.frequencies,
                "sigma": self.sigma, "width": self.width}
