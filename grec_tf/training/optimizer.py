"""The optimizer ``train`` describes: Adam at a constant rate (the default), or with ``train.weight_decay > 0``
AdamW, either one optionally on Keras' warm-up + cosine-decay schedule (``train.learning_rate_schedule``).

Both the schedule and AdamW are Keras' own objects, so ``BackupAndRestore`` checkpoints them with the optimizer
(the schedule is a pure function of ``optimizer.iterations``, which the backup restores) and a SavedModel export,
which carries no optimizer, is unaffected.
"""
from __future__ import annotations

from typing import Union

import tensorflow as tf

from grec_tf.config import TrainConfig

#: variables AdamW leaves undecayed (regular expressions searched in variable names): biases, layer-norm
#: scales (gamma) and offsets (beta), embedding tables (see ``train.weight_decay``'s help)
NOT_DECAYED = ("bias", "gamma", "beta", "embedding")

LearningRate = Union[float, tf.keras.optimizers.schedules.LearningRateSchedule]


def planned_steps(epochs: int, rows: int, batch_size: int) -> int:
    """Optimizer steps of ``epochs`` passes over ``rows`` training rows in batches of ``batch_size`` (the last
    batch of an epoch smaller): the ``total_steps`` a schedule is planned over."""
    return epochs * -(-rows // batch_size)


def learning_rate(train: TrainConfig, total_steps: int) -> LearningRate:
    """``train.learning_rate`` (constant), or for ``warmup_cosine`` a schedule over ``total_steps`` optimizer
    steps: 0 at step 0, rising linearly to ``train.learning_rate`` at ``round(warmup_fraction x total_steps)``,
    then cosine decay to 0 at ``total_steps``."""
    if train.learning_rate_schedule == "constant":
        return train.learning_rate
    warmup = int(round(train.warmup_fraction * total_steps))
    # CosineDecay's warm-up starts at initial_learning_rate and ends at warmup_target: 0 -> peak, then the
    # cosine decays warmup_target over decay_steps (the steps after the warm-up) to alpha x peak = 0.
    return tf.keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0, decay_steps=max(total_steps - warmup, 1), alpha=0.0,
        warmup_target=train.learning_rate, warmup_steps=warmup)


def make_optimizer(train: TrainConfig, total_steps: int) -> tf.keras.optimizers.Optimizer:
    """Adam, or AdamW when ``train.weight_decay > 0``, at :func:`learning_rate` (``total_steps``: the optimizer
    steps the run will take at most; read only by a schedule)."""
    rate = learning_rate(train, total_steps)
    if train.weight_decay == 0:
        return tf.keras.optimizers.Adam(rate)
    optimizer = tf.keras.optimizers.AdamW(rate, weight_decay=train.weight_decay)
    optimizer.exclude_from_weight_decay(var_names=list(NOT_DECAYED))
    return optimizer
