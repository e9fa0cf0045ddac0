"""Task sentence (flow, use case) -> route ids and the task token."""
from __future__ import annotations

from typing import Dict, List, Tuple

import tensorflow as tf

from grec_tf.config import TASK_TOKEN_COMPOSITIONS


@tf.keras.utils.register_keras_serializable(package="grec_tf")
class TaskSentenceEmbedding(tf.keras.layers.Layer):
    """Looks up the flow and use case of each row and embeds the pair.

    Ids: index 0 is the out-of-vocabulary slot, so an unknown flow still gets a (learned) route;
    known flows are 1..F in config order, use cases 1..U.

    Args:
      flows, use_cases: the vocabularies, in config order.
      d_model: D, the token's width.
      composition: ``mean``: token = mean(flow embedding, use-case embedding), both D wide - the task
        sentence representation of the paper's eq. 8, where the two words share every dimension; ``concat``:
        token = [flow embedding (D - D // 2 wide), use-case embedding (D // 2 wide)], each word in its own
        dimensions (half the embedding parameters).

    Call: ``flow`` [B] string, ``use_case`` [B] string. Returns ``(flow_id [B] int64,
    use_case_id [B] int64, token [B, D])``.
    """

    def __init__(self, flows: List[str], use_cases: List[str], d_model: int, composition: str = "mean",
                 **kwargs):
        super().__init__(**kwargs)
        if composition not in TASK_TOKEN_COMPOSITIONS:
            raise ValueError(f"task_token: expected one of {list(TASK_TOKEN_COMPOSITIONS)}, got {composition!r}")
        if composition == "concat" and d_model < 2:
            raise ValueError(f"task_token: concat needs d_model >= 2 (one dimension per word), got {d_model}")
        self.flows, self.use_cases, self.d_model = list(flows), list(use_cases), d_model
        self.composition = composition
        use_case_width = d_model // 2 if composition == "concat" else d_model
        self.flow_lookup = tf.keras.layers.StringLookup(vocabulary=self.flows, num_oov_indices=1, name="flow_lookup")
        self.use_case_lookup = tf.keras.layers.StringLookup(vocabulary=self.use_cases, num_oov_indices=1,
                                                            name="use_case_lookup")
        self.flow_embedding = tf.keras.layers.Embedding(
            len(self.flows) + 1, d_model - use_case_width if composition == "concat" else d_model,
            name="flow_embedding")
        self.use_case_embedding = tf.keras.layers.Embedding(len(self.use_cases) + 1, use_case_width,
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
        flow_vector, use_case_vector = self.flow_embedding(flow_id), self.use_case_embedding(use_case_id)
        if self.composition == "concat":
            return flow_id, use_case_id, tf.concat([flow_vector, use_case_vector], axis=-1)
        return flow_id, use_case_id, 0.5 * (flow_vector + use_case_vector)

    def get_config(self) -> Dict:
        return {**super().get_config(), "flows": self.flows, "use_cases": self.use_cases, "d_model": self.d_model,
                "composition": self.composition}
