"""One MLP head per task, all evaluated as batched einsums over stacked weights."""
from __future__ import annotations

from typing import Dict, List

import tensorflow as tf

from grec_tf.layers.activations import gelu_exact


@tf.keras.utils.register_keras_serializable(package="grec_tf")
class MultiTaskTowers(tf.keras.layers.Layer):
    """``num_towers`` independent MLPs (hidden ``units``, GELU) ending in one logit each.

    Call: ``x`` [B, H] (one shared representation) or [B, T, H] (one per tower, e.g. MMoE).
    Returns float32 logits [B, T] of every tower. :meth:`own_logits` computes only each row's own tower (what
    training needs: a long-format row carries the label of one task).
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
                h = gelu_exact(h)
        return tf.cast(h[..., 0], tf.float32)

    def own_logits(self, x: tf.Tensor, tower: tf.Tensor) -> tf.Tensor:
        """float32 logits [B] of each row's own tower only: ``x`` [B, H] or [B, T, H], ``tower`` [B] int in [0, T).

        Equal to ``tf.gather(self(x), tower, batch_dims=1)`` at 1/T of its cost: the rows are partitioned by
        tower (``tf.dynamic_partition``), each tower runs once on its rows as plain matmuls, and the logits are
        stitched back in row order."""
        if not self.built:
            self.build(x.shape)
        tower = tf.cast(tf.reshape(tower, [-1]), tf.int32)
        if len(x.shape) == 3:
            x = tf.gather(x, tower, batch_dims=1)
        x = tf.cast(x, self.compute_dtype)
        positions = tf.dynamic_partition(tf.range(tf.shape(x)[0]), tower, self.num_towers)
        layers = [[tf.unstack(tf.cast(weight, self.compute_dtype), num=self.num_towers) for weight in pair]
                  for pair in zip(self.kernels, self.biases)]
        logits = []
        for t in range(self.num_towers):
            h = tf.gather(x, positions[t])
            for i, (kernels, biases) in enumerate(layers):
                h = tf.matmul(h, kernels[t]) + biases[t]
                if i < len(self.units):
                    h = gelu_exact(h)
            logits.append(h[:, 0])
        return tf.cast(tf.dynamic_stitch(positions, logits), tf.float32)

    def get_config(self) -> Dict:
        return {**super().get_config(), "num_towers": self.num_towers, "units": self.units}
