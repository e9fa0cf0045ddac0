"""Sparse top-k Mixture-of-Experts: a router picks k of E feed-forward experts, only those are computed (GRec).

``SparseMoE(experts=FeedForwardExperts(...), router=<a Router>)``; the strategies are the classes registered
in :data:`~grec_tf.layers.routers.ROUTERS` (token, sentence, task, task_sentence).

Shapes (B batch, S tokens per example, D width, E experts, k selected):
  x [B, S, D], flow_id [B] int, use_case_id [B] int -> y [B, S, D] (= x + MoE(x), residual),
  optionally with dispatch [B, E] float32: fraction of the row's tokens processed by each expert.

Two dispatch strategies, chosen by the router's ``routes_by_task``:
  * per unit (token / sentence routing: a unit is a token or an example, each with its own route): the
    (unit, slot) assignments are sorted by expert, each expert runs once on its units, with optional expert
    capacity ``ceil(capacity_factor * units * k / E)``. Assignments past capacity are dropped (all first choices
    are served before any second choice); a unit whose every assignment was dropped comes out equal to its
    input (residual).
  * per route (task / task-sentence routing: the route is a property of the task id): the gate is computed
    once per distinct task id in the batch (``tf.unique``); with at most E route ids each route's k experts run once
    on its rows, fused into one k F wide expert, with more the rows are dispatched by expert as above (see
    :mod:`~grec_tf.layers.expert_dispatch`). Capacity does not apply.

The router owns its auxiliary losses (load balance, z-loss; over routing decisions, one per token for token
routing and one per example otherwise: a route's decision counts once per row it serves) and its jitter.
"""
from typing import Optional

import tensorflow as tf

from grec_tf.layers.feed_forward_experts import FeedForwardExperts
from grec_tf.layers.routers import Router


@tf.keras.utils.register_keras_serializable(package="grec_tf")
class SparseMoE(tf.keras.layers.Layer):
    """Sparse top-k MoE layer with a residual connection.

    Args:
      experts: the E experts (built here from the input width).
      router: a :class:`~grec_tf.layers.routers.Router` over the same E experts (built here).
      capacity_factor: > 0 enables expert capacity; only for routers with ``supports_capacity``.

    Call args:
      x: [B, S, D].
      flow_id, use_case_id: [B] int32/int64 (read by task routers).
      training: enables the router's jitter.
      return_routing: also return dispatch [B, E] float32, the fraction of each row's tokens processed by each
        expert after capacity (for utilization logging; rows sum to k unless tokens were dropped).

    Returns:
      y [B, S, D], or (y, dispatch).
    """

    def __init__(self, experts: FeedForwardExperts, router: Router, capacity_factor: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if experts.num_experts != router.num_experts:
            raise ValueError(f"SparseMoE: experts.num_experts={experts.num_experts} must equal "
                             f"router.num_experts={router.num_experts} ({type(router).__name__})")
        if capacity_factor < 0:
            raise ValueError(f"SparseMoE: capacity_factor must be >= 0, got {capacity_factor}")
        if capacity_factor > 0 and not router.supports_capacity:
            raise ValueError(
                f"SparseMoE: capacity_factor={capacity_factor} applies only to token/sentence routing, not to "
                f"routing {router.routing!r}: it routes by task, so a row's route is a property of its task, not "
                f"of the load, and there is no overflow to drop. Use capacity_factor=0.")
        self.experts = experts
        self.router = router
        self.capacity_factor = float(capacity_factor)

    @property
    def num_experts(self) -> int:
        return self.experts.num_experts

    @property
    def top_k(self) -> int:
        return self.router.top_k

    def build(self, input_shape) -> None:
        width = int(tf.TensorShape(input_shape)[-1])
        sublayers = [(self.experts, tf.TensorShape(input_shape)),
                     (self.router, tf.TensorShape([None, self.router.gate_input_width(width)]))]
        for sublayer, shape in sublayers:
            if not sublayer.built:
                with tf.name_scope(sublayer.name):  # variable names like "sparse_moe/router/kernel:0"
                    sublayer.build(shape)
        super().build(input_shape)

    def call(self, x: tf.Tensor, flow_id: Optional[tf.Tensor] = None, use_case_id: Optional[tf.Tensor] = None,
             training=None, return_routing: bool = False):
        x = tf.convert_to_tensor(x)
        if x.dtype != self.compute_dtype:
            x = tf.cast(x, self.compute_dtype)
        if training is None:
            training = False
        elif not tf.is_tensor(training):
            training = bool(training)
        route = self._call_by_route if self.router.routes_by_task else self._call_by_unit
        y, dispatch = route(x, flow_id, use_case_id, training)
        y = x + y
        return (y, dispatch) if return_routing else y

    def _call_by_unit(self, x, flow_id, use_case_id, training):
        gate_input = self.router.gate_input(x, flow_id, use_case_id)  # [B, S_u, G], S_u = S or 1
        batch, units_per_row = tf.shape(gate_input)[0], tf.shape(gate_input)[1]
        # [B, S, D] -> [U, S / S_u, D] by reshapes only (no index arithmetic in the traced step).
        units = tf.reshape(x, [batch, units_per_row, -1, tf.shape(x)[2]])
        units = tf.reshape(units, tf.concat([[-1], tf.shape(units)[2:]], 0))
        gates, experts = self.router(tf.reshape(gate_input, [-1, gate_input.shape[-1]]), training=training)
        y, kept = self.experts.by_unit(units, experts, gates, self._capacity(tf.shape(units)[0]))
        dispatch = tf.reduce_sum(tf.one_hot(experts, self.num_experts, dtype=tf.float32)
                                 * tf.cast(kept, tf.float32)[..., tf.newaxis], axis=1)  # [U, E]
        if gate_input.shape[1] != 1:  # a row's dispatch is the mean over its units (with one unit, that unit's)
            dispatch = tf.reduce_mean(tf.reshape(dispatch, [batch, units_per_row, self.num_experts]), axis=1)
        return tf.reshape(y, tf.shape(x)), dispatch

    def _capacity(self, num_units: tf.Tensor) -> Optional[tf.Tensor]:
        if self.capacity_factor <= 0:
            return None
        return tf.cast(tf.math.ceil(self.capacity_factor * tf.cast(num_units, tf.float32) * self.top_k
                                    / self.num_experts), tf.int32)

    def _call_by_route(self, x, flow_id, use_case_id, training):
        routes, route_index = tf.unique(self.router.route_ids(flow_id, use_case_id))  # gate once per route
        counts = tf.math.unsorted_segment_sum(tf.ones_like(route_index, tf.float32), route_index,
                                              tf.shape(routes)[0])
        gates, experts = self.router(self.router.route_gate_input(routes), counts, training=training)  # [R, k]
        y = self.experts.by_route(x, route_index, experts, gates, self.router.num_routes)
        route_dispatch = tf.reduce_sum(tf.one_hot(experts, self.num_experts, dtype=tf.float32), axis=1)
        return y, tf.gather(route_dispatch, route_index)

    def compute_output_shape(self, input_shape) -> tf.TensorShape:
        return tf.TensorShape(input_shape)

    def get_config(self) -> dict:
        # The sublayers are built by SparseMoE.build from its own input shape: their build state is not config.
        sublayers = {name: {k: v for k, v in tf.keras.layers.serialize(layer).items() if k != "build_config"}
                     for name, layer in (("experts", self.experts), ("router", self.router))}
        return {**super().get_config(), **sublayers, "capacity_factor": self.capacity_factor}

    @classmethod
    def from_config(cls, config: dict) -> "SparseMoE":
        config = dict(config)
        for name in ("experts", "router"):
            config[name] = tf.keras.layers.deserialize(config[name])
        return cls(**config)
