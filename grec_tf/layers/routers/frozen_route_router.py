"""Frozen routes: the route of each kept task id is a constant (k expert indices and gate weights), no weights.

A task or task-sentence router routes every row of a task id alike, so once trained its route for a given
(flow, use case) is a constant. A sub-model that serves only some task sentences (see
:mod:`grec_tf.serving.sub_model`) keeps the experts those routes use and replaces the router by this one,
holding the routes as graph constants: no route embeddings, no router kernel, no softmax left to compute.

A row of a task id that was not frozen has no route: the layer fails with an InvalidArgumentError naming the
frozen task sentences (a 400 from the REST server).

This class is not in :data:`~grec_tf.layers.routers.ROUTERS` (the strategies ``model.routing`` can train): it
is made from a trained router, never from a configuration.
"""
from typing import List, Optional, Sequence, Tuple

import tensorflow as tf

from grec_tf.layers.routers.task_id_router import TaskIdRouter
from grec_tf.layers.top_k_gate import top_k_gate

#: the router options that a frozen route has no use for (no training: no losses, no jitter, no embeddings)
_TRAINING_OPTIONS = ("load_balance_weight", "z_loss_weight", "jitter", "route_embedding_dim")


@tf.keras.utils.register_keras_serializable(package="grec_tf")
class FrozenRouteRouter(TaskIdRouter):
    """Constant routes of some task ids (task id = flow_id * num_use_cases + use_case_id).

    Args:
      num_experts: E, the experts of the MoE it routes (the kept ones; expert indices below are into them).
      top_k: k.
      num_flows, num_use_cases: vocabulary sizes of flow_id and use_case_id (as the trained router's).
      task_ids: the R frozen task ids, distinct.
      route_experts: [R][k] expert indices (< E) of each frozen task id.
      route_gates: [R][k] their gate weights (each row sums to 1).
      task_sentences: R names ("FLOW/USE_CASE") of the frozen task ids, for error messages.

    The gate input of a route is its one-hot position among the R frozen ids, [U, R] float32.
    """

    routing = "frozen_route"

    def __init__(self, num_experts: int, top_k: int, num_flows: int, num_use_cases: int,
                 task_ids: Sequence[int], route_experts: Sequence[Sequence[int]],
                 route_gates: Sequence[Sequence[float]], task_sentences: Sequence[str], **kwargs):
        for option in _TRAINING_OPTIONS:  # a round trip through get_config brings them back
            kwargs.pop(option, None)
        super().__init__(num_experts, top_k, num_flows, num_use_cases, load_balance_weight=0.0,
                         z_loss_weight=0.0, jitter=0.0, **kwargs)
        self.task_ids = [int(r) for r in task_ids]
        self.route_experts = [[int(e) for e in row] for row in route_experts]
        self.route_gates = [[float(g) for g in row] for row in route_gates]
        self.task_sentences = [str(name) for name in task_sentences]
        self._check_routes()

    def _check_routes(self) -> None:
        where = f"FrozenRouteRouter ({', '.join(self.task_sentences)})"
        counts = {len(self.task_ids), len(self.route_experts), len(self.route_gates), len(self.task_sentences)}
        if len(counts) != 1 or not self.task_ids:
            raise ValueError(f"{where}: task_ids, route_experts, route_gates and task_sentences need one entry "
                             f"per frozen route (at least one), got lengths {sorted(counts)}")
        if len(set(self.task_ids)) != len(self.task_ids) or not all(
                0 <= r < self.num_routes for r in self.task_ids):
            raise ValueError(f"{where}: task_ids must be distinct task ids in [0, {self.num_routes}), "
                             f"got {self.task_ids}")
        for name, experts, gates in zip(self.task_sentences, self.route_experts, self.route_gates):
            if (len(experts) != self.top_k or len(gates) != self.top_k or len(set(experts)) != self.top_k
                    or not all(0 <= e < self.num_experts for e in experts)):
                raise ValueError(f"{where}: route of {name} needs {self.top_k} distinct experts in "
                                 f"[0, {self.num_experts}) and {self.top_k} gates, got experts {experts}, "
                                 f"gates {gates}")

    @property
    def num_frozen_routes(self) -> int:
        """R, the number of frozen task ids."""
        return len(self.task_ids)

    @property
    def has_one_route(self) -> bool:
        """Whether every frozen task id takes the same experts with the same gates."""
        return len({(tuple(e), tuple(g)) for e, g in zip(self.route_experts, self.route_gates)}) == 1

    def gate_input_width(self, input_width: int) -> int:
        return self.num_frozen_routes

    def build(self, input_shape) -> None:
        # No kernel and no embeddings: the routes are constants. (Skips Router.build, which adds the kernel.)
        tf.keras.layers.Layer.build(self, input_shape)

    def route_gate_input(self, route_ids: tf.Tensor) -> tf.Tensor:
        """[R_b] task ids -> [R_b, R] one-hot position among the frozen ids; fails for a task id not frozen."""
        slots = tf.constant([self.task_ids.index(r) if r in self.task_ids else -1
                             for r in range(self.num_routes)], tf.int32)
        slot = tf.gather(slots, route_ids)
        check = tf.debugging.Assert(tf.reduce_all(slot >= 0), [
            f"this model routes only the task sentences {', '.join(self.task_sentences)} (the experts of the "
            f"others were not exported); got task ids (flow_id * {self.num_use_cases} + use_case_id):",
            tf.boolean_mask(route_ids, slot < 0)], summarize=8)
        with tf.control_dependencies([check]):
            return tf.one_hot(slot, self.num_frozen_routes, dtype=tf.float32)

    def _frozen(self, gate_input: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
        slot = tf.argmax(gate_input, axis=-1, output_type=tf.int32)
        gates = tf.gather(tf.constant(self.route_gates, tf.float32), slot)
        return gates, tf.gather(tf.constant(self.route_experts, tf.int32), slot)

    def logits(self, gate_input: tf.Tensor) -> tf.Tensor:
        """[U, R] -> [U, E]: log of the frozen gate weights, -inf for the experts a route does not use (their
        top-k softmax is the frozen route, for the dense reference and :meth:`row_logits`)."""
        gates, experts = self._frozen(gate_input)
        weights = tf.reduce_sum(tf.one_hot(experts, self.num_experts, dtype=tf.float32) * gates[..., None], axis=1)
        return tf.math.log(weights)

    def call(self, gate_input: tf.Tensor, counts: Optional[tf.Tensor] = None,
             training=None) -> Tuple[tf.Tensor, tf.Tensor]:
        """The frozen gates [U, k] float32 and experts [U, k] int32 of gate inputs [U, R] (no losses, no jitter)."""
        return self._frozen(gate_input)

    def get_config(self) -> dict:
        config = {k: v for k, v in super().get_config().items() if k not in _TRAINING_OPTIONS}
        return {**config, "task_ids": self.task_ids, "route_experts": self.route_experts,
                "route_gates": self.route_gates, "task_sentences": self.task_sentences}


def frozen_routes(router: TaskIdRouter, route_ids: List[int]) -> Tuple[List[List[int]], List[List[float]]]:
    """The routes a trained task-id router takes for ``route_ids`` (no jitter): ([R][k] experts, [R][k] gates),
    experts largest gate first, as its call computes them."""
    # Router.call without its losses: the logits and top-k gate it computes.
    _, gates, experts = top_k_gate(router.logits(router.route_gate_input(tf.constant(route_ids, tf.int32))),
                                   router.top_k)
    return experts.numpy().tolist(), gates.numpy().tolist()
