"""Task sentence (flow, use case) -> route ids and the task token."""
from __future__ import annotations

from typing import Dict, List, Tuple

import tensorflow as tf


@tf.keras.utils.register_keras_serializable(package="grec_tf")
class TaskSentenceEmbedding(tf.keras.layers.Layer):
    """Looks up the flow and use case of each row and embeds the pair.

    Ids: index 0 is the out-of-vocabulary slot, so an unknown flow still gets a (learned) route;
    known flows are 1..F in config order, use cases 1..U.

    Call: ``flow`` [B] string, ``use_case`` [B] string. Returns ``(flow_id [B] int64,
    use_case_id [B] int64, token [B, D])`` with token = mean(flow embedding, use-case embedding),
    the task sentence representation of the paper's eq. 8.
    """

    def __init__(self, flows: List[str], use_cases: List[str], d_model: int, **kwargs):
        super().__init__(**kwargs)
        self.flows, self.use_cases, self.d_model = list(flows), list(use_cases), d_model
        self.flow_lookup = tf.keras.layers.StringLookup(vocabulary=self.flows, num_oov_indices=1, name="flow_lookup")
        self.use_case_lookup = tf.keras.layers.StringLookup(vocabulary=self.use_cases, num_oov_indices=1,
                                                            name="use_case_lookup")
        self.flow_embedding = tf.keras.layers.Embedding(len(self.flows) + 1, d_model, name="flow_embedding")
        self.use_case_embedding = tf.keras.layers.Embedding(len(self.use_cases) + 1, d_model,
                                                            name="use_case_embedding")

    @property
    def num_flow_ids(self) -> int:
        return len(self.flows) + 1

    @property
    def num_use_case_ids(self) -> int:
        return len(self.use_cases) + 1

    def call(self, flow: tf.Tensor, use_case: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        flow_id = self.flow_lookup(flow)
        use_case_id = self.use_case_lookup(use_case)
        token = 0.5 * (self.flow_embedding(flow_id) + self.use_case_embedding(use_case_id))
        return flow_id, use_case_id, token

    def get_config(self) -> Dict:
        return {**super().get_config(), "flows": self.flows, "use_cases": self.use_cases, "d_model": self.d_model}
