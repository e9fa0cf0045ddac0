"""Base of the routers whose route is a property of the task: task id = flow_id * num_use_cases + use_case_id.

Every row of a task takes the same route whatever its features, so :class:`~grec_tf.layers.SparseMoE` computes
the gate once per distinct task id in the batch (``tf.unique``; with jitter, one draw per distinct task) and runs
each route's experts once on that route's rows. Expert capacity does not apply: the route is a property of the
task, not of the load, so there is no overflow to drop.
"""
from typing import Optional

import tensorflow as tf

from grec_tf.layers.routers.base import Router



class TaskIdRouter(Router):
    """Router over task ids (abstract: subclasses define :meth:`route_gate_input` and build its embeddings).

    Args (besides :class:`~grec_tf.layers.routers.base.Router`'s):
      num_flows, num_use_cases: vocabulary sizes of flow_id and use_case_id (>= 1 each).
      route_embedding_dim: G, width of the embeddings the gate reads.
    """

    routes_by_task = True
    supports_capacity = False

    def __init__(self, num_experts: int, top_k: int, num_flows: int, num_use_cases: int,
                 route_embedding_dim: int = 16, **kwargs):
        super().__init__(num_experts, top_k, **kwargs)
        if int(num_flows) < 1 or int(num_use_cases) < 1 or int(route_embedding_dim) < 1:
            raise ValueError(f"{type(self).__name__} (routing {self.routing!r}): needs num_flows >= 1, "
                             f"num_use_cases >= 1 and route_embedding_dim >= 1, got num_flows={num_flows}, "
                             f"num_use_cases={num_use_cases}, route_embedding_dim={route_embedding_dim}")
        self.num_flows = int(num_flows)
        self.num_use_cases = int(num_use_cases)
        self.route_embedding_dim = int(route_embedding_dim)

    @property
    def num_routes(self) -> int:
        """Static upper bound on the number of distinct routes (task ids) in a batch."""
        return self.num_flows * self.num_use_cases

    def gate_input_width(self, input_width: int) -> int:
        return self.route_embedding_dim

    def route_ids(self, flow_id: Optional[tf.Tensor], use_case_id: Optional[tf.Tensor]) -> tf.Tensor:
        """[B] int32 task id ``flow_id * num_use_cases + use_case_id`` (the route key), for ids [B]."""
        if flow_id is None or use_case_id is None:
            raise ValueError(f"SparseMoE: routing {self.routing!r} needs flow_id and use_case_id")
        flow_id = tf.cast(tf.reshape(flow_id, [-1]), tf.int32)
        use_case_id = tf.cast(tf.reshape(use_case_id, [-1]), tf.int32)
        return flow_id * self.num_use_cases + use_case_id

    def route_gate_input(self, route_ids: tf.Tensor) -> tf.Tensor:
        """Gate input [R, G] float32 of task ids [R]."""
        raise NotImplementedError(f"{type(self).__name__} must define route_gate_input")

    def gate_input(self, x: tf.Tensor, flow_id: Optional[tf.Tensor] = None,
                   use_case_id: Optional[tf.Tensor] = None) -> tf.Tensor:
        """[B, 1, G]: each row's task route (x is not read)."""
        return self.route_gate_input(self.route_ids(flow_id, use_case_id))[:, tf.newaxis, :]

    def add_embedding(self, name: str, vocabulary: int) -> tf.Variable:
        """A [vocabulary, G] float32 embedding table of this router."""
        # "uniform" = U(-0.05, 0.05), tf.keras.layers.Embedding's default; a fresh initializer per table.
        return self.add_weight(name, shape=(vocabulary, self.route_embedding_dim), initializer="uniform")

    def get_config(self) -> dict:
        return {**super().get_config(), "num_flows": self.num_flows, "num_use_cases": self.num_use_cases,
                "route_embedding_dim": self.route_embedding_dim}
