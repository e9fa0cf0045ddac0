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

from typing import Dict, Optional, Sequence

import tensorflow as tf

from grec_tf.config import ExperimentConfig
from grec_tf.data.input_specs import input_specs
from grec_tf.serving.versioned_export import export_saved_model


class ServingModule(tf.Module):
    """Wraps a trained :class:`~grec_tf.models.multi_task_ranker.MultiTaskRanker` with the two
    serving signatures; ``signatures()`` gives the mapping for ``tf.saved_model.save``. ``use_cases``: the
    columns of ``score_all`` (default: every configured use case; a sub-model scores only its own)."""

    def __init__(self, model: tf.keras.Model, config: ExperimentConfig, use_cases: Optional[Sequence[str]] = None):
        super().__init__(name="grec_serving")
        self.model = model
        self.use_cases = tf.constant(list(use_cases or config.data.use_cases))
        self._predict = tf.function(self._probability, input_signature=[input_specs(config, True)])
        self._score_all = tf.function(self._all_use_cases, input_signature=[input_specs(config, False)])

    def _probability(self, features: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        return {"probability": self.model(features, training=False)["probability"]}

    def _all_use_cases(self, features: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        # Each row is encoded once; its encoded tokens are repeated once per use case (row-major: row i, use
        # case u at i * U + u) and each copy is routed by its own task sentence.
        batch = tf.shape(features["flow"])[0]
        num = tf.shape(self.use_cases)[0]
        probability = self.model(features, training=False, score_use_cases=self.use_cases)["probability"]
        return {"probabilities": tf.reshape(probability, [batch, num]),
                "use_cases": tf.tile(self.use_cases[None, :], [batch, 1])}

    def signatures(self) -> Dict[str, tf.types.experimental.ConcreteFunction]:
        return {"serving_default": self._predict.get_concrete_function(),
                "score_all": self._score_all.get_concrete_function()}


def save_serving_model(model: tf.keras.Model, config: ExperimentConfig, path: str,
                       use_cases: Optional[Sequence[str]] = None) -> None:
    """Writes the SavedModel with both signatures to ``path`` (use the versioned exporter to place
    it atomically under ``{export_dir}/{model_name}/{version}``); ``use_cases`` as in :class:`ServingModule`."""
    module = ServingModule(model, config, use_cases)
    tf.saved_model.save(module, path, signatures=module.signatures())


def export_model(model: tf.keras.Model, config: ExperimentConfig, export_dir: str,
                 version: Optional[int] = None) -> str:
    """Exports to ``{export_dir}/{config.model_name}/{version}`` (next version by default),
    atomically; returns the version folder."""
    return export_saved_model(lambda path: save_serving_model(model, config, path), export_dir,
                              config.model_name, version)
