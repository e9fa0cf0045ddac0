"""Sparse top-k Mixture-of-Experts with token, sentence, task and task-sentence routing (GRec, SPEC §3.5).

Shapes (B batch, S tokens per example, D width, E experts, k selected, F = hidden_dim):
  x [B, S, D], flow_id [B] int, use_case_id [B] int -> y [B, S, D] (= x + MoE(x), residual),
  optionally with dispatch [B, E] float32: fraction of the row's tokens processed by each expert.

Routings (what the router sees; router logits, softmax and losses are float32):
  * ``token``: each token x[b, s] is routed on its own features.
  * ``sentence``: example b is routed on mean_s x[b, s]; all its tokens go to the same experts.
  * ``task``: example b is routed on a learned embedding of task id = flow_id * num_use_cases + use_case_id.
  * ``task_sentence`` (GRec, paper eq. 8): routed on mean(flow_embedding[flow_id], use_case_embedding[use_case_id]),
    so a (flow, use case) pair never seen in training still gets a deterministic route.

Only the selected experts are computed. Token/sentence routing dispatch assignments per expert (sort by
expert with ``tf.dynamic_partition``, gather, one matmul per expert, ``unsorted_segment_sum`` back), with
optional expert capacity ``ceil(capacity_factor * units * k / E)`` where a unit is a token (token routing) or
an example (sentence routing); assignments past capacity are dropped and, if all of a unit's assignments are
dropped, the unit comes out equal to its input (residual). Task routings compute the gate once per distinct
route in the batch (``tf.unique``) and run each route's k experts, fused into one batched feed-forward, once on
that route's rows. No capacity applies to task routings (the route is a property of the task, not of load).

Auxiliary losses (added with ``add_loss``, already multiplied by their weights; over routing decisions, one
per token for token routing and one per example otherwise):
  * load balance ``E * sum_e f_e * P_e`` (f_e: fraction of assignments to e before capacity, P_e: mean router
    probability of e), weight ``load_balance_weight``;
  * router z-loss ``mean logsumexp(logits)^2``, weight ``z_loss_weight``.
Multiplicative jitter: in training only, the router input is multiplied by U(1 - jitter, 1 + jitter) (for task
routings, one draw per distinct route, so rows of a route still share it).
"""
import math

import tensorflow as tf

from grec_tf.layers.expert_dispatch import dispatch_by_expert, dispatch_by_route
from grec_tf.layers.top_k_gate import load_balance_loss, router_z_loss, top_k_gate

ROUTINGS = ("token", "sentence", "task", "task_sentence")
TASK_ROUTINGS = ("task", "task_sentence")


def _expert_initializer(fan_in: int, fan_out: int) -> tf.keras.initializers.Initializer:
    limit = math.sqrt(6.0 / (fan_in + fan_out))  # Glorot-uniform of one expert's matrix
    return tf.keras.initializers.RandomUniform(-limit, limit)


@tf.keras.utils.register_keras_serializable(package="grec_tf")
class SparseMoE(tf.keras.layers.Layer):
    """Sparse top-k MoE layer (each expert a feed-forward D -> F -> D) with a residual connection.

    Args:
      num_experts: E.
      top_k: k experts per routing decision (1 <= k <= E); their gate weights are renormalized to sum 1.
      hidden_dim: expert hidden width F.
      routing: "token", "sentence", "task" or "task_sentence".
      num_flows, num_use_cases: vocabulary sizes of flow_id and use_case_id (required by task routings).
      route_embedding_dim: width of the task / flow / use-case embeddings the task routers read.
      capacity_factor: > 0 enables expert capacity for token/sentence routing.
      load_balance_weight, z_loss_weight: weights of the auxiliary losses.
      jitter: multiplicative router-input jitter amplitude, training only (0 disables).
      activation: expert hidden activation (any Keras activation name).

    Call args:
      x: [B, S, D].
      flow_id, use_case_id: [B] int32/int64 (task routings only).
      training: enables jitter.
      return_routing: also return dispatch [B, E] float32, the fraction of each row's tokens processed by each
        expert after capacity (for utilization logging; rows sum to k unless tokens were dropped).

    Returns:
      y [B, S, D], or (y, dispatch).
    """

    def __init__(self, num_experts: int, top_k: int, hidden_dim: int, routing: str, num_flows: int = 0,
                 num_use_cases: int = 0, route_embedding_dim: int = 16, capacity_factor: float = 0.0,
                 load_balance_weight: float = 0.01, z_loss_weight: float = 0.001, jitter: float = 0.0,
                 activation: str = "gelu", **kwargs):
        super().__init__(**kwargs)
        if routing not in ROUTINGS:
            raise ValueError(f"SparseMoE: routing must be one of {ROUTINGS}, got {routing!r}")
        if not 1 <= int(top_k) <= int(num_experts):
            raise ValueError(f"SparseMoE: top_k must be in [1, num_experts={num_experts}], got {top_k}")
        if routing in TASK_ROUTINGS and (int(num_flows) < 1 or int(num_use_cases) < 1):
            raise ValueError(f"SparseMoE: routing {routing!r} needs num_flows >= 1 and num_use_cases >= 1, "
                             f"got num_flows={num_flows}, num_use_cases={num_use_cases}")
        if capacity_factor < 0 or not 0 <= jitter < 1:
            raise ValueError("SparseMoE: capacity_factor must be >= 0 and jitter in [0, 1), got "
                             f"capacity_factor={capacity_factor}, jitter={jitter}")
        self.num_experts = int(num_experts)
        self.top_k = int(top_k)
        self.hidden_dim = int(hidden_dim)
        self.routing = routing
        self.num_flows = int(num_flows)
        self.num_use_cases = int(num_use_cases)
        self.route_embedding_dim = int(route_embedding_dim)
        self.capacity_factor = float(capacity_factor)
        self.load_balance_weight = float(load_balance_weight)
        self.z_loss_weight = float(z_loss_weight)
        self.jitter = float(jitter)
        self.activation = activation
        self._activation_fn = tf.keras.activations.get(activation)
        # Router math in float32 whatever the layer's policy: float32 sublayers.
        self.router = tf.keras.layers.Dense(self.num_experts, use_bias=False, dtype="float32", name="router")
        if routing == "task":
            self.task_embedding = tf.keras.layers.Embedding(
                self.num_flows * self.num_use_cases, self.route_embedding_dim, dtype="float32",
                name="task_embedding")
        elif routing == "task_sentence":
            self.flow_embedding = tf.keras.layers.Embedding(
                self.num_flows, self.route_embedding_dim, dtype="float32", name="flow_embedding")
            self.use_case_embedding = tf.keras.layers.Embedding(
                self.num_use_cases, self.route_embedding_dim, dtype="float32", name="use_case_embedding")

    def build(self, input_shape):
        width = int(tf.TensorShape(input_shape)[-1])
        e, f = self.num_experts, self.hidden_dim
        self.kernel_in = self.add_weight("expert_kernel_in", shape=(e, width, f),
                                         initializer=_expert_initializer(width, f))
        self.bias_in = self.add_weight("expert_bias_in", shape=(e, f), initializer="zeros")
        self.kernel_out = self.add_weight("expert_kernel_out", shape=(e, f, width),
                                          initializer=_expert_initializer(f, width))
        self.bias_out = self.add_weight("expert_bias_out", shape=(e, width), initializer="zeros")
        sublayers = [(self.router, (None, self.route_embedding_dim if self.routing in TASK_ROUTINGS else width))]
        if self.routing == "task":
            sublayers.append((self.task_embedding, (None,)))
        elif self.routing == "task_sentence":
            sublayers += [(self.flow_embedding, (None,)), (self.use_case_embedding, (None,))]
        for sublayer, shape in sublayers:
            with tf.name_scope(sublayer.name):  # variable names like ".../router/kernel:0"
                sublayer.build(shape)
        super().build(input_shape)

    # ----------------------------------------------------------------------------------------------------------
    def route_ids(self, flow_id, use_case_id):
        """[B] int32 task id flow_id * num_use_cases + use_case_id (the route key of task routings)."""
        if flow_id is None or use_case_id is None:
            raise ValueError(f"SparseMoE: routing {self.routing!r} needs flow_id and use_case_id")
        flow_id = tf.cast(tf.reshape(flow_id, [-1]), tf.int32)
        use_case_id = tf.cast(tf.reshape(use_case_id, [-1]), tf.int32)
        return flow_id * self.num_use_cases + use_case_id

    def route_gate_input(self, task_ids):
        """Router input [R, route_embedding_dim] float32 for task ids [R] (task routings)."""
        if self.routing == "task":
            return self.task_embedding(task_ids)
        flows = task_ids // self.num_use_cases
        use_cases = task_ids % self.num_use_cases
        return 0.5 * (self.flow_embedding(flows) + self.use_case_embedding(use_cases))  # paper eq. 8

    def _jitter(self, gate_input, training):
        if not training or self.jitter <= 0:
            return gate_input
        return gate_input * tf.random.uniform(tf.shape(gate_input), 1.0 - self.jitter, 1.0 + self.jitter)

    def _expert_weights(self):
        dtype = self.compute_dtype
        return (tf.cast(self.kernel_in, dtype), tf.cast(self.bias_in, dtype),
                tf.cast(self.kernel_out, dtype), tf.cast(self.bias_out, dtype))

    def _add_aux_losses(self, logits, probs, experts, counts=None):
        if self.load_balance_weight:
            self.add_loss(self.load_balance_weight * load_balance_loss(probs, experts, counts))
        if self.z_loss_weight:
            self.add_loss(self.z_loss_weight * router_z_loss(logits, counts))

    def call(self, x, flow_id=None, use_case_id=None, training=None, return_routing=False):
        x = tf.convert_to_tensor(x)
        if x.dtype != self.compute_dtype:
            x = tf.cast(x, self.compute_dtype)
        if training is None:
            training = False
        elif not tf.is_tensor(training):
            training = bool(training)
        if self.routing in TASK_ROUTINGS:
            y, dispatch = self._call_task(x, flow_id, use_case_id, training)
        else:
            y, dispatch = self._call_sparse(x, training)
        y = x + y
        return (y, dispatch) if return_routing else y

    def _call_sparse(self, x, training):
        batch, tokens, width = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
        if self.routing == "token":
            units = tf.reshape(x, [-1, 1, width])
            gate_input = tf.cast(tf.reshape(x, [-1, width]), tf.float32)
        else:
            units = x
            gate_input = tf.reduce_mean(tf.cast(x, tf.float32), axis=1)
        gate_input = self._maybe_jitter(gate_input, training)
        logits = self.router(gate_input)  # [U, E] float32
        probs, gates, experts = top_k_gate(logits, self.top_k)
        self._add_aux_losses(logits, probs, experts)
        capacity = None
        if self.capacity_factor > 0:
            num_units = tf.cast(tf.shape(units)[0], tf.float32)
            capacity = tf.cast(tf.math.ceil(self.capacity_factor * num_units * self.top_k / self.num_experts),
                               tf.int32)
        y, kept = dispatch_by_expert(units, experts, gates, *self._expert_weights(),
                                     activation=self._activation_fn, num_experts=self.num_experts,
                                     capacity=capacity)
        dispatch = tf.reduce_sum(tf.one_hot(experts, self.num_experts, dtype=tf.float32)
                                 * tf.cast(kept, tf.float32)[..., tf.newaxis], axis=1)  # [U, E]
        if self.routing == "token":
            dispatch = tf.reduce_mean(tf.reshape(dispatch, [batch, tokens, self.num_experts]), axis=1)
        return tf.reshape(y, tf.shape(x)), dispatch

    def _call_task(self, x, flow_id, use_case_id, training):
        task_ids = self.route_ids(flow_id, use_case_id)
        routes, route_index = tf.unique(task_ids)  # gate once per distinct route in the batch
        gate_input = self._maybe_jitter(self.route_gate_input(routes), training)
        logits = self.router(gate_input)  # [R, E] float32
        probs, gates, experts = top_k_gate(logits, self.top_k)
        counts = tf.math.unsorted_segment_sum(tf.ones_like(route_index, tf.float32), route_index,
                                              tf.shape(routes)[0])
        self._add_aux_losses(logits, probs, experts, counts)
        y = dispatch_by_route(x, route_index, self.num_flows * self.num_use_cases, experts, gates,
                              *self._expert_weights(), activation=self._activation_fn)
        route_dispatch = tf.reduce_sum(tf.one_hot(experts, self.num_experts, dtype=tf.float32), axis=1)
        return y, tf.gather(route_dispatch, route_index)

    def _maybe_jitter(self, gate_input, training):
        if self.jitter <= 0:
            return gate_input
        if isinstance(training, bool):
            return self._jitter(gate_input, training)
        return tf.cond(tf.cast(training, tf.bool), lambda: self._jitter(gate_input, True), lambda: gate_input)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(num_experts=self.num_experts, top_k=self.top_k, hidden_dim=self.hidden_dim,
                      routing=self.routing, num_flows=self.num_flows, num_use_cases=self.num_use_cases,
                      route_embedding_dim=self.route_embedding_dim, capacity_factor=self.capacity_factor,
                      load_balance_weight=self.load_balance_weight, z_loss_weight=self.z_loss_weight,
                      jitter=self.jitter, activation=self.activation)
        return config
