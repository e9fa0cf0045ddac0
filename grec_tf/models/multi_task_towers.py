"""One MLP head per task, all evaluated as batched einsums over stacked weights."""
from __future__ import annotations

from typing import Dict, List

import tensorflow as tf


@tf.keras.utils.register_keras_serializable(package="grec_tf")
class MultiTaskTowers(tf.keras.layers.Layer):
    """``num_towers`` independent MLPs (hidden ``units``, GELU) ending in one logit each.

    Call: ``x`` [B, H] (one shared representation) or [B, T, H] (one per tower, e.g. MMoE).
    Returns float32 logits [B, T].
    """

    def __init__(self, num_towers: int, units: List[int], **kwargs):
        super().__init__(**kwargs)
        self.num_towers, self.units = num_towers, list(units)

    def build(self, input_shape) -> None:
        width = int(input_shape[-1])
        self.kernels, self.biases = [], []
        for i, out in enumerate(self.units + [1]):
            self.kernels.append(self.add_weight(name=f"kernel_{i}", shape=(self.num_towers, width, out),
                                                initializer="glorot_uniform"))
            self.biases.append(self.add_weight(name=f"bias_{i}", shape=(self.num_towers, out), initializer="zeros"))
            width = out
        super().build(input_shape)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        h = x
        for i, (kernel, bias) in enumerate(zip(self.kernels, self.biases)):
            kernel, bias = tf.cast(kernel, self.compute_dtype), tf.cast(bias, self.compute_dtype)
            equation = "bh,thu->btu" if (i == 0 and len(x.shape) == 2) else "bth,thu->btu"
            h = tf.einsum(equation, h, kernel) + bias
            if i < len(self.units):
                h = tf.nn.gelu(h)
        return tf.cast(h[..., 0], tf.float32)

    def get_config(self) -> Dict:
        return {**super().get_config(), "num_towers": self.num_towers, "units": self.units}
