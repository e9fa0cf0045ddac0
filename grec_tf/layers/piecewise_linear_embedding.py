"""Piecewise-linear (PLE) embeddings of numerical features over training-split quantile or tree bins."""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np
import tensorflow as tf


@tf.keras.utils.register_keras_serializable(package="grec_tf")
class PiecewiseLinearEmbedding(tf.keras.layers.Layer):
    """PLE embeddings of F numericals (Gorishniy et al., NeurIPS '22, "Q-LR", or "T-LR" over tree bins): feature f
    with bin edges b_0 < ... < b_n (training-split quantiles, or decision-tree thresholds) -> n values, value
    t = (x - b_{t-1}) / (b_t - b_{t-1}) clipped to [0, 1] (the first bin is not clipped below, the last not above),
    then a Dense of its own per feature (n -> width) and ReLU. A tree's split at an edge is one bin going from 0
    to 1, which a linear map of the normalized value cannot express.

    Args:
      edges: F sorted lists of at least two distinct edges each, in the units of the inputs (the encoder's
        normalized values).
      width: output width per feature.

    Weights: ``kernel`` [F, T, width] (T = the most bins of any feature; a feature's unused bins read 0),
    ``bias`` [F, width]. Runs in float32 whatever the mixed-precision policy, like the periodic embedding.

    Call: [B, F] float -> [B, F * width].
    """

    def __init__(self, edges: Sequence[Sequence[float]], width: int = 24, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        if width < 1:
            raise ValueError(f"PiecewiseLinearEmbedding: expected width >= 1, got {width}")
        self._bins = PiecewiseLinearBins(edges, owner="PiecewiseLinearEmbedding")
        self.edges, self.bins, self.width = self._bins.edges, self._bins.bins, width

    def build(self, input_shape: tf.TensorShape) -> None:
        # one Dense T -> width per feature, with Keras' Dense defaults (Glorot-uniform kernel, zero bias)
        self.kernel = self.add_weight(name="kernel", shape=(len(self.edges), self.bins, self.width),
                                      initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(len(self.edges), self.width), initializer="zeros")
        super().build(input_shape)

    def encode(self, x: tf.Tensor) -> tf.Tensor:
        """[B, F] -> the bin values [B, F, T]."""
        return self._bins.encode(x)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        embedded = tf.nn.relu(tf.einsum("bft,ftw->bfw", self.encode(x), self.kernel) + self.bias)  # [B, F, width]
        return tf.reshape(embedded, [-1, len(self.edges) * self.width])

    def get_config(self) -> Dict:
        config = super().get_config()
        config.pop("dtype", None)  # always float32, set in __init__
        return {**config, "edges": self.edges, "width": self.width}


class PiecewiseLinearBins:
    """The weightless half of a piecewise-linear encoding, shared by :class:`PiecewiseLinearEmbedding` and
    :class:`~grec_tf.models.wide_logits.WideLogits`: F features' bin edges b_0 < ... < b_n -> n bin values each,
    value t = (x - b_{t-1}) / (b_t - b_{t-1}) clipped to [0, 1], the first bin not clipped below and the last not
    above (the outer bins extrapolate). Features with fewer bins than the most (T) read 0 in the unused ones.

    Args:
      edges: F sorted lists of at least two distinct edges each, checked as the float32 values used.
      owner: the layer named in a ValueError.
    """

    def __init__(self, edges: Sequence[Sequence[float]], owner: str = "PiecewiseLinearBins"):
        self.edges = [[float(e) for e in feature] for feature in edges]
        if not self.edges:
            raise ValueError(f"{owner}: expected at least one feature, got none")
        for f, feature in enumerate(self.edges):  # checked as the float32 values the layer computes with
            if len(feature) < 2 or not np.all(np.diff(np.float32(feature)) > 0):
                raise ValueError(f"{owner}: feature {f}'s edges must be at least two strictly "
                                 f"increasing float32 numbers, got {feature}")
        self.bins = max(len(feature) - 1 for feature in self.edges)
        lower, span, low, high = (np.zeros((len(self.edges), self.bins), np.float32) for _ in range(4))
        span[:] = 1.0  # unused bins: (x - 0) / 1 clipped to [0, 0] = 0
        for f, feature in enumerate(self.edges):
            n = len(feature) - 1
            lower[f, :n], span[f, :n] = feature[:-1], np.diff(feature)
            high[f, :n] = 1.0
            low[f, 0], high[f, n - 1] = -np.inf, np.inf  # the outer bins extrapolate
        self._lower, self._span, self._low, self._high = lower, span, low, high

    def encode(self, x: tf.Tensor) -> tf.Tensor:
        """[B, F] -> the bin values [B, F, T] float32."""
        ratio = (tf.cast(x, tf.float32)[..., tf.newaxis] - self._lower) / self._span
        return tf.minimum(tf.maximum(ratio, self._low), self._high)
