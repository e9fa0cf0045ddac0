"""The task token of the models whose towers are the use cases (ESMM, AITM): the flow only."""
from __future__ import annotations

from typing import Tuple

import tensorflow as tf

from grec_tf.models.task_sentence_embedding import TaskSentenceEmbedding


@tf.keras.utils.register_keras_serializable(package="grec_tf")
class FlowTaskEmbedding(TaskSentenceEmbedding):
    """:class:`TaskSentenceEmbedding` whose token is the flow embedding alone.

    ESMM and AITM read one representation of the impression and let every use-case tower score it: pCTCVR is
    pCTR x pCVR of the *same* input, and AITM transfers between the towers of one input. With the use case in
    the token, the rows of one impression would have different inputs and a tower would be trained on rows of
    other use cases than the ones it scores. The use-case id is still looked up: it picks the row's tower.

    Call: ``flow`` [B] string, ``use_case`` [B] string -> ``(flow_id [B], use_case_id [B], token [B, D])``.
    """

    def call(self, flow: tf.Tensor, use_case: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        flow_id = self.flow_lookup(flow)
        return flow_id, self.use_case_lookup(use_case), self.flow_embedding(flow_id)
