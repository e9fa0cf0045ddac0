"""Task-sentence routing (GRec, paper eq. 8): the gate reads mean(flow_embedding, use_case_embedding).

The task sentence is the (flow, use case) pair; composing its route from the two embeddings gives a pair never
seen in training a deterministic route from what was learned for its flow and its use case.
"""
import tensorflow as tf

from grec_tf.layers.routers.base import register_router
from grec_tf.layers.routers.task_id_router import TaskIdRouter


@register_router("task_sentence")
class TaskSentenceRouter(TaskIdRouter):
    """Gate input = 0.5 * (flow_embedding[flow_id] + use_case_embedding[use_case_id]), tables
    [num_flows, G] and [num_use_cases, G]. See :class:`~grec_tf.layers.routers.task_id_router.TaskIdRouter`
    for the arguments."""

    def build(self, input_shape) -> None:
        super().build(input_shape)  # the kernel first: weight order kernel, embeddings
        self.flow_embedding = self.add_embedding("flow_embedding", self.num_flows)
        self.use_case_embedding = self.add_embedding("use_case_embedding", self.num_use_cases)

    def route_gate_input(self, route_ids: tf.Tensor) -> tf.Tensor:
        flows = route_ids // self.num_use_cases
        use_cases = route_ids % self.num_use_cases
        return 0.5 * (tf.gather(self.flow_embedding, flows) + tf.gather(self.use_case_embedding, use_cases))
