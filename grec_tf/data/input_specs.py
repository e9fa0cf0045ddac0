"""The raw inputs a model of an experiment takes, as ``tf.TensorSpec``s: the contract shared by training
batches, the exported serving signatures and the placeholder batch that builds a model's variables.

Per feature kind (B rows): ``categorical``, ``item_id``, ``text`` and the route columns ``flow`` /
``use_case``: ``[B]`` string; ``numerical``: ``[B]`` float32; ``embedding``: ``[B, dim]`` float32;
``sequence``: ``[B, L]`` string, valid ids left-aligned and ``""``-padded, any L.
"""
from __future__ import annotations

from typing import Dict

import tensorflow as tf

from grec_tf.config import ExperimentConfig


def input_specs(config: ExperimentConfig, with_use_case: bool = True) -> Dict[str, tf.TensorSpec]:
    """Named TensorSpecs of the raw inputs; without ``use_case`` for signatures that score every use case."""
    specs = {"flow": tf.TensorSpec([None], tf.string, name="flow")}
    if with_use_case:
        specs["use_case"] = tf.TensorSpec([None], tf.string, name="use_case")
    for f in config.features:
        if f.kind == "numerical":
            specs[f.name] = tf.TensorSpec([None], tf.float32, name=f.name)
        elif f.kind == "embedding":
            specs[f.name] = tf.TensorSpec([None, f.dim], tf.float32, name=f.name)
        elif f.kind == "sequence":
            specs[f.name] = tf.TensorSpec([None, None], tf.string, name=f.name)
        else:
            specs[f.name] = tf.TensorSpec([None], tf.string, name=f.name)
    return specs


def placeholder_batch(config: ExperimentConfig, rows: int = 1) -> Dict[str, tf.Tensor]:
    """A batch of ``rows`` empty/zero raw inputs (unknown categories, empty query, empty sequences), used to
    build a model's variables before training or before restoring weights."""
    batch = {}
    for name, spec in input_specs(config).items():
        shape = [rows] + [d if d is not None else 1 for d in spec.shape[1:]]
        batch[name] = tf.fill(shape, "") if spec.dtype == tf.string else tf.zeros(shape, spec.dtype)
    return batch
