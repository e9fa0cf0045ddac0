"""The *wide* part of Wide & Deep for a multi-task ranker: one additive logit per tower over the raw features.

Where it sits: :class:`~grec_tf.models.multi_task_ranker.MultiTaskRanker` adds ``wide_logits(features)[:, t]`` to
tower t's logit (``model.wide_logits: true``), beside the deep path (encoders -> token stack -> bottom -> towers).

Why: on adult a logistic regression over the same piecewise-linear bins and one-hot categoricals reaches an income
AUC of 0.921 alone, where the deep model reached 0.915; a GBDT restricted to one-feature trees reached 0.918
(``benchmarks/results/quality_candidates.md``). Such single-feature step shapes are what a linear model over bins
fits directly and what the deep path fits only slowly. The weights start at zero, so training starts from the
deep model's logits. Measured on adult it tied the model without it at 3 and at 10 epochs (the longer budget, not
this part, closed that income gap), so no config in ``configs/`` turns it on.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import tensorflow as tf

from grec_tf.layers.piecewise_linear_embedding import PiecewiseLinearBins


@tf.keras.utils.register_keras_serializable(package="grec_tf")
class WideLogits(tf.keras.layers.Layer):
    """A generalized additive logit per tower: sum over numericals of a piecewise-linear function of the raw value
    (its bin values, :class:`~grec_tf.layers.piecewise_linear_embedding.PiecewiseLinearBins`, times a weight per
    bin and tower), plus one weight per tower for each categorical's id, plus a bias per tower.

    Args:
      numerical: [{"name", "edges"}], ``edges`` the numerical's bin edges in raw units (quantile or tree bins).
      categorical: [{"name", "vocabulary", "num_oov"}] (item ids included).
      num_towers: T, the ranker's tower count.

    Weights (all initialized to zero): ``numerical_kernel`` [F, bins, T], one ``Embedding`` [V_c + oov_c, T] per
    categorical, ``bias`` [T]. Runs in float32 whatever the mixed-precision policy.

    Call: a dict of raw features ([B] float numericals, [B] string categoricals) -> logits [B, T] float32.
    """

    def __init__(self, numerical: Sequence[Dict], categorical: Sequence[Dict], num_towers: int, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        if num_towers < 1 or not (numerical or categorical):
            raise ValueError(f"WideLogits: expected num_towers >= 1 and at least one numerical or categorical, got "
                             f"num_towers={num_towers}, {len(numerical)} numericals, {len(categorical)} categoricals")
        self.numerical = [{"name": spec["name"], "edges": [float(e) for e in spec["edges"]]} for spec in numerical]
        self.categorical = [{"name": spec["name"], "vocabulary": list(spec["vocabulary"]),
                             "num_oov": int(spec["num_oov"])} for spec in categorical]
        self.num_towers = int(num_towers)
        self._bins = (PiecewiseLinearBins([spec["edges"] for spec in self.numerical], owner="WideLogits")
                      if self.numerical else None)
        self.lookups, self.weights_by_id = {}, {}
        for spec in self.categorical:
            name = spec["name"]
            self.lookups[name] = tf.keras.layers.StringLookup(vocabulary=spec["vocabulary"] or None,
                                                              num_oov_indices=spec["num_oov"], name=f"{name}_lookup")
            self.weights_by_id[name] = tf.keras.layers.Embedding(
                len(spec["vocabulary"]) + spec["num_oov"], self.num_towers, embeddings_initializer="zeros",
                name=f"{name}_wide")

    @property
    def input_names(self) -> List[str]:
        return [spec["name"] for spec in self.numerical + self.categorical]

    def build(self, input_shape) -> None:
        if self._bins is not None:
            self.numerical_kernel = self.add_weight(
                name="numerical_kernel", shape=(len(self.numerical), self._bins.bins, self.num_towers),
                initializer="zeros")
        self.bias = self.add_weight(name="bias", shape=(self.num_towers,), initializer="zeros")
        super().build(input_shape)

    def call(self, inputs: Dict[str, tf.Tensor]) -> tf.Tensor:
        batch = tf.shape(inputs[self.input_names[0]])[0]
        logits = tf.broadcast_to(self.bias, [batch, self.num_towers])
        if self._bins is not None:
            values = tf.stack([tf.cast(inputs[spec["name"]], tf.float32) for spec in self.numerical], axis=-1)
            logits += tf.einsum("bft,ftk->bk", self._bins.encode(values), self.numerical_kernel)
        for name, lookup in self.lookups.items():
            logits += self.weights_by_id[name](lookup(inputs[name]))
        return logits

    def get_config(self) -> Dict:
        config = super().get_config()
        config.pop("dtype", None)  # always float32, set in __init__
        return {**config, "numerical": self.numerical, "categorical": self.categorical,
                "num_towers": self.num_towers}
