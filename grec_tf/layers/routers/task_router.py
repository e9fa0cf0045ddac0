"""Task routing: example b is routed on a learned embedding of its task id (one table row per (flow, use case))."""
import tensorflow as tf

from grec_tf.layers.routers.base import register_router
from grec_tf.layers.routers.task_id_router import TaskIdRouter


@register_router("task")
class TaskRouter(TaskIdRouter):
    """Gate input = task_embedding[flow_id * num_use_cases + use_case_id], table [num_flows * num_use_cases, G].
    See :class:`~grec_tf.layers.routers.task_id_router.TaskIdRouter` for the arguments."""

    def build(self, input_shape) -> None:
        super().build(input_shape)  # the kernel first: weight order kernel, embeddings
        self.task_embedding = self.add_embedding("task_embedding", self.num_routes)

    def route_gate_input(self, route_ids: tf.Tensor) -> tf.Tensor:
        return tf.gather(self.task_embedding, route_ids)
