"""AITM (Xi et al., KDD '21): Adaptive Information Transfer between the towers of sequential tasks (e.g. click
-> add-to-cart -> purchase), plus its behavioural expectation calibrator.

Each tower t first encodes the shared representation into its own ``q_t`` (its first hidden layer). Along a
chain, the previous task's final representation ``z_{t-1}`` passes an information gate (``p_{t-1}``) and task
t attends over ``{q_t, p_{t-1}}`` to get ``z_t`` (towers outside a chain keep ``z_t = q_t``); the rest of
each tower maps ``z_t`` to its logit. The calibrator adds ``weight x mean_rows max(p_t - p_{t-1}, 0)`` per
chain link: a later step of a funnel should not be more likely than the step before it.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import tensorflow as tf

from grec_tf.models.multi_task_towers import GatheredOwnTower, MultiTaskTowers


@tf.keras.utils.register_keras_serializable(package="grec_tf")
class InformationTransfer(tf.keras.layers.Layer):
    """One chain link's AIT module, width ``units``.

    Call: ``q`` [B, W] (the task's own representation), ``previous`` [B, W] (the previous task's ``z``) ->
    ``(z [B, W], attention [B, 2])``, attention over (own, transferred), rows summing to 1.
    """

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.info_gate = tf.keras.layers.Dense(units, activation="gelu", name="info_gate")
        self.query = tf.keras.layers.Dense(units, use_bias=False, name="query")
        self.key = tf.keras.layers.Dense(units, use_bias=False, name="key")
        self.value = tf.keras.layers.Dense(units, use_bias=False, name="value")

    def call(self, q: tf.Tensor, previous: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
        u = tf.stack([q, self.info_gate(previous)], axis=1)  # [B, 2, W]
        scores = tf.reduce_sum(self.query(u) * self.key(u), axis=-1) / tf.sqrt(tf.cast(self.units, u.dtype))
        attention = tf.nn.softmax(tf.cast(scores, tf.float32), axis=-1)
        return tf.einsum("bn,bnw->bw", tf.cast(attention, u.dtype), self.value(u)), attention

    def get_config(self) -> Dict:
        return {**super().get_config(), "units": self.units}


@tf.keras.utils.register_keras_serializable(package="grec_tf")
class AITMTowers(GatheredOwnTower, tf.keras.layers.Layer):
    """``num_towers`` towers (hidden ``units``, GELU; ``units[0]`` is the width the transfer works at) and
    ``chains``, lists of tower indices in funnel order (one chain per group of towers).

    ``calibration_weight`` scales the behavioural expectation calibrator (0 turns it off); the term is added
    with ``add_loss`` so it reaches the ranker's total through ``model.losses``.

    Call: ``x`` [B, H] or [B, T, H] -> float32 logits [B, T]; with ``tower`` [B] the logits [B] of each row's own
    tower (every tower still runs: a tower attends over the previous one's, and the calibrator reads them all).
    """

    def __init__(self, num_towers: int, units: List[int], chains: Sequence[Sequence[int]],
                 calibration_weight: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if not units:
            raise ValueError("AITMTowers: units needs at least one hidden width (the representation the "
                             "information transfer attends over)")
        self.num_towers, self.units = num_towers, list(units)
        self.chains = [[int(t) for t in chain] for chain in chains]
        self.calibration_weight = float(calibration_weight)
        self.links = [(chain[i - 1], chain[i]) for chain in self.chains for i in range(1, len(chain))]
        self.transfers = [InformationTransfer(self.units[0], name=f"transfer_{src}_to_{dst}")
                          for src, dst in self.links]
        self.heads = MultiTaskTowers(num_towers, self.units[1:], name="heads")

    def build(self, input_shape) -> None:
        shape = (self.num_towers, int(input_shape[-1]), self.units[0])
        self.encoder_kernel = self.add_weight(name="encoder_kernel", shape=shape, initializer="glorot_uniform")
        self.encoder_bias = self.add_weight(name="encoder_bias", shape=shape[::2], initializer="zeros")
        super().build(input_shape)

    def every_tower(self, x: tf.Tensor) -> tf.Tensor:
        equation = "bh,thw->btw" if len(x.shape) == 2 else "bth,thw->btw"
        q = tf.nn.gelu(tf.einsum(equation, x, tf.cast(self.encoder_kernel, self.compute_dtype))
                       + tf.cast(self.encoder_bias, self.compute_dtype))
        z = tf.unstack(q, axis=1)
        for (src, dst), transfer in zip(self.links, self.transfers):  # chain order: z[src] is final
            z[dst], _ = transfer(z[dst], z[src])
        logits = self.heads(tf.stack(z, axis=1))
        if self.calibration_weight > 0 and self.links:
            self.add_loss(self.calibration_weight * self.calibration(logits))
        return logits

    def calibration(self, logits: tf.Tensor) -> tf.Tensor:
        """Sum over chain links of the row mean of max(p_dst - p_src, 0), from logits [B, T]; a scalar."""
        src, dst = (list(ends) for ends in zip(*self.links))
        p = tf.sigmoid(logits)
        gaps = tf.nn.relu(tf.gather(p, dst, axis=1) - tf.gather(p, src, axis=1))
        return tf.reduce_sum(tf.reduce_mean(gaps, axis=0))

    def get_config(self) -> Dict:
        return {**super().get_config(), "num_towers": self.num_towers, "units": self.units, "chains": self.chains,
                "calibration_weight": self.calibration_weight}
