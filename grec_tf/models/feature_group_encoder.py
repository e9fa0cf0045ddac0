"""Wide & deep encoder of one feature group (the context, or the candidate item) into one token."""
from __future__ import annotations

from typing import Dict, List

import tensorflow as tf

from grec_tf.layers.activations import gelu_exact


@tf.keras.utils.register_keras_serializable(package="grec_tf")
class FeatureGroupEncoder(tf.keras.layers.Layer):
    """Embeds a group's raw features and projects them to a single token of width ``d_model``.

    Deep part: every categorical (and the item id) -> ``StringLookup`` (vocabulary from the training
    split, ``num_oov`` hash buckets) -> ``Embedding``. Wide part: every numerical -> ``Normalization``
    (training-split mean/variance) -> one ``Dense``. Precomputed vectors (e.g. CLIP image/text
    embeddings) -> one ``Dense`` projection each. Everything is concatenated and projected to d_model.

    Args:
      categorical: [{"name", "vocabulary", "num_oov", "embedding_dim"}] (item ids included).
      numerical: [{"name", "mean", "variance"}].
      vectors: [{"name", "dim"}].
      d_model: output width D.

    Call: ``inputs`` dict name -> tensor ([B] string for categoricals, [B] float for numericals,
    [B, dim] float for vectors). Returns [B, D].
    """

    def __init__(self, categorical: List[Dict], numerical: List[Dict], vectors: List[Dict], d_model: int,
                 wide_units: int = 16, **kwargs):
        super().__init__(**kwargs)
        self.categorical, self.numerical, self.vectors = categorical, numerical, vectors
        self.d_model, self.wide_units = d_model, wide_units
        self.lookups, self.embeddings = {}, {}
        for spec in categorical:
            lookup = tf.keras.layers.StringLookup(vocabulary=list(spec["vocabulary"]) or None,
                                                  num_oov_indices=spec["num_oov"], name=f"{spec['name']}_lookup")
            self.lookups[spec["name"]] = lookup
            self.embeddings[spec["name"]] = tf.keras.layers.Embedding(
                len(spec["vocabulary"]) + spec["num_oov"], spec["embedding_dim"], name=f"{spec['name']}_embedding")
        self.normalizers = {
            spec["name"]: tf.keras.layers.Normalization(mean=spec["mean"], variance=spec["variance"], axis=None,
                                                        name=f"{spec['name']}_normalization")
            for spec in numerical
        }
        self.wide = tf.keras.layers.Dense(wide_units, name="wide") if numerical else None
        self.vector_projections = {spec["name"]: tf.keras.layers.Dense(d_model, name=f"{spec['name']}_projection")
                                   for spec in vectors}
        self.output_projection = tf.keras.layers.Dense(d_model, activation=gelu_exact, name="output_projection")

    @property
    def input_names(self) -> List[str]:
        return [s["name"] for s in self.categorical + self.numerical + self.vectors]

    def call(self, inputs: Dict[str, tf.Tensor]) -> tf.Tensor:
        parts = [self.embeddings[name](self.lookups[name](inputs[name])) for name in self.lookups]
        if self.normalizers:
            numbers = tf.stack([self.normalizers[name](tf.cast(inputs[name], tf.float32))
                                for name in self.normalizers], axis=-1)
            parts.append(self.wide(numbers))
        parts += [self.vector_projections[name](inputs[name]) for name in self.vector_projections]
        parts = [tf.cast(p, self.compute_dtype) for p in parts]
        return self.output_projection(tf.concat(parts, axis=-1))

    def get_config(self) -> Dict:
        return {**super().get_config(), "categorical": self.categorical, "numerical": self.numerical,
                "vectors": self.vectors, "d_model": self.d_model, "wide_units": self.wide_units}
