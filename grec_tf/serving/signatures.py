"""The exported serving graph: raw feature values in, probabilities out.

Preprocessing (vocabulary lookups, normalization, WordPiece tokenization) is part of the model's
layers, so these signatures take raw values:

- ``serving_default``: every feature plus ``flow`` and ``use_case`` -> ``probability`` [B], the
  probability of each row's own task sentence;
- ``score_all``: every feature plus ``flow`` -> ``probabilities`` [B, U] for every configured use case
  of the row's flow, and ``use_cases`` [B, U] string naming the columns (repeated per row so that
  TF Serving's row format, which splits every output along the batch, can return it).
"""
from __future__ import annotations

from typing import Dict, Optional

import tensorflow as tf

from grec_tf.config import ExperimentConfig
from grec_tf.serving.versioned_export import export_saved_model


def input_specs(config: ExperimentConfig, with_use_case: bool = True) -> Dict[str, tf.TensorSpec]:
    """Named TensorSpecs of the raw inputs (sequences: [B, L] ""-padded strings, any L)."""
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


class ServingModule(tf.Module):
    """Wraps a trained :class:`~grec_tf.models.multi_task_ranker.MultiTaskRanker` with the two
    serving signatures; ``signatures()`` gives the mapping for ``tf.saved_model.save``."""

    def __init__(self, model: tf.keras.Model, config: ExperimentConfig):
        super().__init__(name="grec_serving")
        self.model = model
        self.use_cases = tf.constant(list(config.data.use_cases))
        self._predict = tf.function(self._probability, input_signature=[input_specs(config, True)])
        self._score_all = tf.function(self._all_use_cases, input_signature=[input_specs(config, False)])

    def _probability(self, features: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        return {"probability": self.model(features, training=False)["probability"]}

    def _all_use_cases(self, features: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        # One forward pass over the batch repeated once per use case (row-major: row i, use case u at
        # i * U + u), so each copy is routed by its own task sentence.
        batch = tf.shape(features["flow"])[0]
        num = tf.shape(self.use_cases)[0]
        tiled = {name: tf.repeat(value, num, axis=0) for name, value in features.items()}
        tiled["use_case"] = tf.tile(self.use_cases, [batch])
        probability = self.model(tiled, training=False)["probability"]
        return {"probabilities": tf.reshape(probability, [batch, num]),
                "use_cases": tf.tile(self.use_cases[None, :], [batch, 1])}

    def signatures(self) -> Dict[str, tf.types.experimental.ConcreteFunction]:
        return {"serving_default": self._predict.get_concrete_function(),
                "score_all": self._score_all.get_concrete_function()}


def save_serving_model(model: tf.keras.Model, config: ExperimentConfig, path: str) -> None:
    """Writes the SavedModel with both signatures to ``path`` (use the versioned exporter to place
    it atomically under ``{export_dir}/{model_name}/{version}``)."""
    module = ServingModule(model, config)
    tf.saved_model.save(module, path, signatures=module.signatures())


def export_model(model: tf.keras.Model, config: ExperimentConfig, export_dir: str,
                 version: Optional[int] = None) -> str:
    """Exports to ``{export_dir}/{config.model_name}/{version}`` (next version by default),
    atomically; returns the version folder."""
    return export_saved_model(lambda path: save_serving_model(model, config, path), export_dir,
                              config.model_name, version)


def placeholder_batch(config: ExperimentConfig, rows: int = 1) -> Dict[str, tf.Tensor]:
    """A batch of ``rows`` empty/zero raw inputs (unknown categories, empty query, empty sequences),
    used to build a model's variables before restoring weights."""
    batch = {}
    for name, spec in input_specs(config).items():
        shape = [rows] + [d if d is not None else 1 for d in spec.shape[1:]]
        batch[name] = tf.fill(shape, "") if spec.dtype == tf.string else tf.zeros(shape, spec.dtype)
    return batch
