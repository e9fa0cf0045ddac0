"""ESMM (Ma et al., SIGIR '18): pCTCVR = pCTR x pCVR, so the conversion tower learns on the entire impression
space through the CTCVR loss instead of on the clicked impressions only.

:class:`ESMMTowers` is a towers layer: it computes every tower that has its own MLP and fills each chained
CTCVR column with the logit of the product of its CTR and CVR probabilities, so the ranker's per-use-case
``from_logits`` loss is unchanged.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import tensorflow as tf

from grec_tf.models.multi_task_towers import GatheredOwnTower, MultiTaskTowers


def product_logit(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """logit(sigmoid(a) * sigmoid(b)), finite for any finite ``a``, ``b`` (same shape, float).

    With p = sigmoid(a) sigmoid(b): log p = log_sigmoid(a) + log_sigmoid(b), and
    1 - p = sigmoid(-a) + sigmoid(a) sigmoid(-b), so log(1 - p) is a log-sum-exp of log-sigmoids: neither
    side rounds to log(0) when |a| or |b| is large (log(1 - exp(log p)) would, once p rounds to 1).
    """
    log_p = tf.math.log_sigmoid(a) + tf.math.log_sigmoid(b)
    log_not_p = tf.reduce_logsumexp(tf.stack([tf.math.log_sigmoid(-a),
                                              tf.math.log_sigmoid(a) + tf.math.log_sigmoid(-b)]), axis=0)
    return log_p - log_not_p


@tf.keras.utils.register_keras_serializable(package="grec_tf")
class ESMMTowers(GatheredOwnTower, tf.keras.layers.Layer):
    """``num_towers`` logit columns; ``chains`` lists ``[ctr, cvr, ctcvr]`` tower indices (one chain per
    group of towers: one with a tower per use case, one per flow with a tower per task sentence).

    Every column but the chained CTCVR ones has its own MLP (hidden ``units``, GELU, as
    :class:`MultiTaskTowers`); column ``ctcvr`` is ``product_logit(logit[ctr], logit[cvr])``.

    Call: ``x`` [B, H] or [B, T, H] -> float32 logits [B, T]; with ``tower`` [B] the logits [B] of each row's own
    column (every own MLP still runs: a CTCVR row needs its CTR and CVR towers).
    """

    def __init__(self, num_towers: int, units: List[int], chains: Sequence[Sequence[int]], **kwargs):
        super().__init__(**kwargs)
        self.num_towers, self.units = num_towers, list(units)
        self.chains = [[int(i) for i in chain] for chain in chains]
        products = {chain[2] for chain in self.chains}
        self.own_columns = [t for t in range(num_towers) if t not in products]
        self.towers = MultiTaskTowers(len(self.own_columns), self.units, name="towers")
        position = {t: i for i, t in enumerate(self.own_columns)}
        self.ctr_positions = [position[chain[0]] for chain in self.chains]
        self.cvr_positions = [position[chain[1]] for chain in self.chains]
        # output column t <- concat([own logits, product logits])[source[t]]
        position.update({chain[2]: len(self.own_columns) + i for i, chain in enumerate(self.chains)})
        self.source = [position[t] for t in range(num_towers)]

    def every_tower(self, x: tf.Tensor) -> tf.Tensor:
        if len(x.shape) == 3:  # one representation per tower (MMoE, PLE): the own columns' rows
            x = tf.gather(x, self.own_columns, axis=1)
        own = self.towers(x)
        products = product_logit(tf.gather(own, self.ctr_positions, axis=1),
                                 tf.gather(own, self.cvr_positions, axis=1))
        return tf.gather(tf.concat([own, products], axis=1), self.source, axis=1)

    def get_config(self) -> Dict:
        return {**super().get_config(), "num_towers": self.num_towers, "units": self.units, "chains": self.chains}
