"""One MLP head per task as stacked weights: every head as batched einsums, or each row's own head only."""
from __future__ import annotations

from typing import Dict, List, Optional

import tensorflow as tf

from grec_tf.layers.activations import gelu_exact


@tf.keras.utils.register_keras_serializable(package="grec_tf")
class MultiTaskTowers(tf.keras.layers.Layer):
    """``num_towers`` independent MLPs (hidden ``units``, GELU) ending in one logit each.

    Call: ``x`` [B, H] (one shared representation) or [B, T, H] (one per tower, e.g. MMoE), and optionally
    ``tower`` [B] int in [0, T), each row's own tower. Returns float32 logits [B, T] of every tower, or with
    ``tower`` the logits [B] of each row's own tower only (:meth:`_own_logits`, 1/T of the cost): a long-format
    row carries the label of one task and is scored for one, so training and serving need no other tower.

    Every towers layer of :class:`~grec_tf.models.multi_task_ranker.MultiTaskRanker` takes this ``tower``
    argument; the chained ones (ESMM, AITM), which need other towers' logits to compute a row's own, take it
    through :class:`GatheredOwnTower`.
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

    def call(self, x: tf.Tensor, tower: Optional[tf.Tensor] = None) -> tf.Tensor:
        if tower is not None:
            return self._own_logits(x, tower)
        h = x
        for i, (kernel, bias) in enumerate(zip(self.kernels, self.biases)):
            kernel, bias = tf.cast(kernel, self.compute_dtype), tf.cast(bias, self.compute_dtype)
            equation = "bh,thu->btu" if (i == 0 and len(x.shape) == 2) else "bth,thu->btu"
            h = tf.einsum(equation, h, kernel) + bias
            if i < len(self.units):
                h = gelu_exact(h)
        return tf.cast(h[..., 0], tf.float32)

    def _own_logits(self, x: tf.Tensor, tower: tf.Tensor) -> tf.Tensor:
        """float32 logits [B] of each row's own tower only: ``x`` [B, H] or [B, T, H], ``tower`` [B] int in [0, T).

        Equal to ``tf.gather(self(x), tower, batch_dims=1)`` at 1/T of its cost: the rows are partitioned by
        tower (``tf.dynamic_partition``), each tower runs once on its rows as plain matmuls, and the logits are
        stitched back in row order. Reached through ``layer(x, tower=tower)``, so that Keras builds the weights
        (under the layer's name scope, as the all-towers call does) and casts the inputs first."""
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


class GatheredOwnTower:
    """Mixin for towers layers that compute a row's own logit from other towers' (chains: ESMM's CTCVR is the
    product of CTR and CVR, AITM's tower attends over the previous one's): ``tower`` [B] picks each row's
    own column of the logits [B, T] the layer computes anyway for every tower.

    The subclass implements ``every_tower(x)`` -> float32 logits [B, T] (``x`` [B, H] or [B, T, H]).
    """

    def call(self, x: tf.Tensor, tower: Optional[tf.Tensor] = None) -> tf.Tensor:
        logits = self.every_tower(x)
        return logits if tower is None else tf.gather(logits, tower, batch_dims=1)

    def every_tower(self, x: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError
