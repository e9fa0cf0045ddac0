"""Wide & deep encoder of one feature group (the context, or the candidate item) into one token, or one per feature."""
from __future__ import annotations

from typing import Dict, List

import tensorflow as tf
import tensorflow_recommenders as tfrs

from grec_tf.config import FEATURE_TOKENS, NUMERICAL_EMBEDDINGS
from grec_tf.layers.activations import gelu_exact
from grec_tf.layers.periodic_embedding import PeriodicEmbedding
from grec_tf.layers.piecewise_linear_embedding import PiecewiseLinearEmbedding


@tf.keras.utils.register_keras_serializable(package="grec_tf")
class FeatureGroupEncoder(tf.keras.layers.Layer):
    """Embeds a group's raw features and projects them to a single token of width ``d_model`` (or one per feature).

    Deep part: every categorical (and the item id) -> ``StringLookup`` (vocabulary from the training
    split, ``num_oov`` hash buckets) -> ``Embedding``. Numericals -> ``Normalization`` (training-split
    mean/variance), then ``numerical_embedding``: ``linear``, the wide part, one ``Dense(wide_units)`` of
    all of them [B, wide_units]; ``periodic``, a :class:`PeriodicEmbedding` of each [B, F * width]; or
    ``piecewise_linear``, a :class:`PiecewiseLinearEmbedding` of each over its spec's ``edges`` [B, F * width].
    Precomputed vectors (e.g. CLIP image/text embeddings) -> one ``Dense`` projection each. Everything is
    concatenated into x0 [B, W]; ``cross_layers`` DCN-v2 full-rank crosses (``tfrs.layers.dcn.Cross``,
    x_{i+1} = x0 * (W_i x_i + b_i) + x_i, W_i [W, W]) then add explicit feature crosses, and one GELU Dense
    projects [B, W] to d_model. With ``tokens="feature"`` nothing is concatenated: each feature's part (a
    numerical's normalized value, or its periodic / piecewise-linear embedding) has a Dense of its own to d_model
    and is one token (a vector's projection already is), as FT-Transformer's feature tokenizer does.

    Args:
      categorical: [{"name", "vocabulary", "num_oov", "embedding_dim"}] (item ids included).
      numerical: [{"name", "mean", "variance"}], plus "edges" (quantile bin edges in normalized units) for
        ``piecewise_linear``.
      vectors: [{"name", "dim"}].
      d_model: output width D.
      wide_units: width of the linear numerical part.
      numerical_embedding: one of :data:`NUMERICAL_EMBEDDINGS`.
      cross_layers: DCN-v2 cross layers before the output projection (0: none).
      periodic: :class:`PeriodicEmbedding` options ({"frequencies", "sigma", "width"}; its defaults when empty).
      tokens: "group" (one token) or "feature" (one per feature; needs ``cross_layers`` 0).

    Call: ``inputs`` dict name -> tensor ([B] string for categoricals, [B] float for numericals,
    [B, dim] float for vectors). Returns [B, D], or [B, F_group, D] with ``tokens="feature"``.
    """

    def __init__(self, categorical: List[Dict], numerical: List[Dict], vectors: List[Dict], d_model: int,
                 wide_units: int = 16, numerical_embedding: str = "linear", cross_layers: int = 0,
                 periodic: Dict | None = None, tokens: str = "group", **kwargs):
        super().__init__(**kwargs)
        _check_options(numerical, numerical_embedding, cross_layers, tokens)
        self.categorical, self.numerical, self.vectors = categorical, numerical, vectors
        self.d_model, self.wide_units, self.tokens = d_model, wide_units, tokens
        self.numerical_embedding, self.cross_layers, self.periodic = numerical_embedding, cross_layers, periodic or {}
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
        self.wide = self._numerical_layer()
        self.vector_projections = {spec["name"]: tf.keras.layers.Dense(d_model, name=f"{spec['name']}_projection")
                                   for spec in vectors}
        self.crosses = [tfrs.layers.dcn.Cross(name=f"cross_{i}") for i in range(cross_layers)]
        if tokens == "feature":  # one linear map per feature (a vector's projection is already its token)
            self.feature_projections = {name: tf.keras.layers.Dense(d_model, name=f"{name}_token")
                                        for name in self.input_names if name not in self.vector_projections}
        else:
            self.output_projection = tf.keras.layers.Dense(d_model, activation=gelu_exact, name="output_projection")

    def _numerical_layer(self) -> tf.keras.layers.Layer | None:
        """[B, F] normalized numericals -> the numerical part; None without numericals, or for linear per-feature
        tokens (each normalized value is then its own part)."""
        if not self.numerical:
            return None
        if self.numerical_embedding == "periodic":
            return PeriodicEmbedding(len(self.numerical), **self.periodic, name="periodic")
        if self.numerical_embedding == "piecewise_linear":
            return PiecewiseLinearEmbedding([spec["edges"] for spec in self.numerical], name="piecewise_linear")
        if self.tokens == "feature":
            return None
        return tf.keras.layers.Dense(self.wide_units, name="wide")

    @property
    def num_tokens(self) -> int:
        """Tokens the call returns: 1, or one per feature with ``tokens="feature"``."""
        return len(self.input_names) if self.tokens == "feature" else 1

    @property
    def input_names(self) -> List[str]:
        return [s["name"] for s in self.categorical + self.numerical + self.vectors]

    def call(self, inputs: Dict[str, tf.Tensor]) -> tf.Tensor:
        parts = [self.embeddings[name](self.lookups[name](inputs[name])) for name in self.lookups]
        if self.normalizers:
            numbers = tf.stack([self.normalizers[name](tf.cast(inputs[name], tf.float32))
                                for name in self.normalizers], axis=-1)  # [B, F]
            numerical = self.wide(numbers) if self.wide is not None else numbers
            # per-feature tokens: the numerical part, [B, F * w], is F parts of width w
            parts += tf.split(numerical, len(self.normalizers), axis=-1) if self.tokens == "feature" else [numerical]
        parts += [self.vector_projections[name](inputs[name]) for name in self.vector_projections]
        parts = [tf.cast(p, self.compute_dtype) for p in parts]
        if self.tokens == "feature":  # [B, F_group, D], in input_names order
            return tf.stack([self.feature_projections[name](part) if name in self.feature_projections else part
                             for name, part in zip(self.input_names, parts)], axis=1)
        x0 = x = tf.concat(parts, axis=-1)  # [B, W]
        for cross in self.crosses:
            x = cross(x0, x)
        return self.output_projection(x)

    def get_config(self) -> Dict:
        return {**super().get_config(), "categorical": self.categorical, "numerical": self.numerical,
                "vectors": self.vectors, "d_model": self.d_model, "wide_units": self.wide_units,
                "numerical_embedding": self.numerical_embedding, "cross_layers": self.cross_layers,
                "periodic": self.periodic, "tokens": self.tokens}


def _check_options(numerical: List[Dict], numerical_embedding: str, cross_layers: int, tokens: str) -> None:
    """ValueError naming the option a :class:`FeatureGroupEncoder` cannot honour."""
    if numerical_embedding not in NUMERICAL_EMBEDDINGS:
        raise ValueError(f"numerical_embedding: expected one of {list(NUMERICAL_EMBEDDINGS)}, got "
                         f"{numerical_embedding!r}")
    if numerical_embedding == "piecewise_linear" and any("edges" not in spec for spec in numerical):
        raise ValueError("numerical_embedding: piecewise_linear needs the bin edges of every numerical "
                         f"(spec key 'edges'), missing for {[s['name'] for s in numerical if 'edges' not in s]}")
    if isinstance(cross_layers, bool) or not isinstance(cross_layers, int) or cross_layers < 0:
        raise ValueError(f"cross_layers: expected an integer >= 0, got {cross_layers!r}")
    if tokens not in FEATURE_TOKENS:
        raise ValueError(f"feature_tokens: expected one of {list(FEATURE_TOKENS)}, got {tokens!r}")
    if tokens == "feature" and cross_layers:
        raise ValueError(f"cross_layers: crosses act on a group's concatenated features, which per-feature tokens "
                         f"do not form; expected 0 with feature_tokens 'feature', got {cross_layers}")
