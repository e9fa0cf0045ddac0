"""Router base class and the registry of routing strategies.

A router decides, for each routing unit, which k of the E experts run and with which weights. It reads
float32 gate inputs ``[U, G]`` (U units, G gate-input width), computes logits ``[U, E]`` with its own kernel
``[G, E]``, keeps the k largest softmax entries renormalized to sum 1, adds its weighted auxiliary losses and,
in training, multiplies its gate input by ``U(1 - jitter, 1 + jitter)``. The router's math is float32 whatever
the mixed-precision policy (its dtype is always float32).

What a unit is depends on the strategy, and the class attributes tell :class:`~grec_tf.layers.SparseMoE`:

* ``routes_by_task = False``: :meth:`Router.gate_input` maps the MoE input ``[B, S, D]`` to ``[B, S_u, G]``
  with S_u = S (every token is a unit) or S_u = 1 (every example is a unit); the MoE runs each expert once on
  the units that chose it, with optional expert capacity.
* ``routes_by_task = True`` (:class:`~grec_tf.layers.routers.task_id_router.TaskIdRouter`): a row's route depends
  only on its task id; the gate is computed once per distinct task id of the batch and each route's experts
  run once on that route's rows. Expert capacity does not apply (``supports_capacity = False``).

A new strategy is one subclass decorated with :func:`register_router`, which names it in :data:`ROUTERS`
(the ``routing`` string) and registers it with Keras for serialization.
"""
import inspect
from typing import Callable, ClassVar, Dict, Optional, Tuple, Type

import tensorflow as tf

from grec_tf.layers.top_k_gate import load_balance_loss, router_z_loss, top_k_gate

ROUTERS: Dict[str, "Type[Router]"] = {}
# Only task-id routers read these; make_router drops them for routers that do not take them.
TASK_VOCABULARY_ARGS = ("num_flows", "num_use_cases", "route_embedding_dim")


def register_router(routing: str) -> Callable[[type], type]:
    """Class decorator: ``ROUTERS[routing] = cls``, ``cls.routing = routing``, Keras-serializable as grec_tf>Name."""
    def register(cls: type) -> type:
        if routing in ROUTERS and ROUTERS[routing] is not cls:
            raise ValueError(f"register_router: routing {routing!r} is already registered to "
                             f"{ROUTERS[routing].__name__}, cannot register {cls.__name__}")
        cls.routing = routing
        ROUTERS[routing] = cls
        return tf.keras.utils.register_keras_serializable(package="grec_tf")(cls)
    return register


def make_router(routing: str, **kwargs) -> "Router":
    """The router registered as ``routing``, constructed with ``kwargs``.

    ``num_flows``, ``num_use_cases`` and ``route_embedding_dim`` are dropped for routers that do not take them,
    so one call serves every routing; any other argument the router does not take raises TypeError.
    """
    if routing not in ROUTERS:
        raise ValueError(f"unknown router {routing!r}; registered routers (ROUTERS): {', '.join(ROUTERS)}")
    cls = ROUTERS[routing]
    accepted = inspect.signature(cls.__init__).parameters
    return cls(**{k: v for k, v in kwargs.items() if k not in TASK_VOCABULARY_ARGS or k in accepted})


class Router(tf.keras.layers.Layer):
    """Top-k softmax router over E experts (abstract: subclasses define :meth:`gate_input`).

    Args:
      num_experts: E.
      top_k: k experts per routing unit (1 <= k <= E); their gate weights are renormalized to sum 1.
      load_balance_weight: weight of the load-balancing loss ``E * sum_e f_e * P_e`` (0 disables it).
      z_loss_weight: weight of the router z-loss ``mean logsumexp(logits)^2`` (0 disables it).
      jitter: multiplicative gate-input jitter amplitude in [0, 1), training only (0 disables it).

    Call args:
      gate_input: [U, G] float32, one row per routing unit.
      counts: optional [U] float32, number of batch rows each unit stands for (the losses weight units by it).
      training: enables jitter (Python bool or boolean tensor).

    Returns:
      gates [U, k] float32 (largest first, sum 1) and experts [U, k] int32.
    """

    routing: ClassVar[str] = ""  # set by register_router
    routes_by_task: ClassVar[bool] = False
    supports_capacity: ClassVar[bool] = True

    def __init__(self, num_experts: int, top_k: int, load_balance_weight: float = 0.01,
                 z_loss_weight: float = 0.001, jitter: float = 0.0, **kwargs):
        where = type(self).__name__
        dtype = kwargs.pop("dtype", None) or "float32"
        if getattr(dtype, "name", dtype) != "float32":  # a string, tf.DType or Policy
            raise ValueError(f"{where}: router math is float32 under every precision policy (bfloat16 logits "
                             f"would reorder near-tied experts); got dtype={dtype!r}")
        kwargs.setdefault("name", "router")
        super().__init__(dtype="float32", **kwargs)
        if int(num_experts) < 1 or not 1 <= int(top_k) <= int(num_experts):
            raise ValueError(f"{where}: need num_experts >= 1 and top_k in [1, num_experts], got "
                             f"num_experts={num_experts}, top_k={top_k}")
        if load_balance_weight < 0 or z_loss_weight < 0:
            raise ValueError(f"{where}: load_balance_weight and z_loss_weight must be >= 0, got "
                             f"load_balance_weight={load_balance_weight}, z_loss_weight={z_loss_weight}")
        if not 0 <= jitter < 1:
            raise ValueError(f"{where}: jitter must be in [0, 1), got jitter={jitter}")
        self.num_experts = int(num_experts)
        self.top_k = int(top_k)
        self.load_balance_weight = float(load_balance_weight)
        self.z_loss_weight = float(z_loss_weight)
        self.jitter = float(jitter)

    def gate_input_width(self, input_width: int) -> int:
        """G, the width of the gate input for an MoE input of width D (features of x by default: G = D)."""
        return input_width

    def build(self, input_shape) -> None:
        """input_shape: the gate input's, [U, G]."""
        self.kernel = self.add_weight("kernel", shape=(int(tf.TensorShape(input_shape)[-1]), self.num_experts),
                                      initializer="glorot_uniform")
        super().build(input_shape)

    def gate_input(self, x: tf.Tensor, flow_id: Optional[tf.Tensor] = None,
                   use_case_id: Optional[tf.Tensor] = None) -> tf.Tensor:
        """Gate input per routing unit, [B, S_u, G] float32 (S_u = S or 1) for x [B, S, D] and ids [B]."""
        raise NotImplementedError(f"{type(self).__name__} must define gate_input")

    def logits(self, gate_input: tf.Tensor) -> tf.Tensor:
        """[U, G] float32 -> [U, E] float32 router logits."""
        return tf.matmul(gate_input, self.kernel)

    def row_logits(self, x: tf.Tensor, flow_id: Optional[tf.Tensor] = None,
                   use_case_id: Optional[tf.Tensor] = None) -> tf.Tensor:
        """Logits [B, S_u, E] float32 of every batch row's units (no jitter): the dense reference's gate."""
        gate_input = self.gate_input(x, flow_id, use_case_id)
        logits = self.logits(tf.reshape(gate_input, [-1, gate_input.shape[-1]]))
        return tf.reshape(logits, tf.concat([tf.shape(gate_input)[:2], [self.num_experts]], 0))

    def call(self, gate_input: tf.Tensor, counts: Optional[tf.Tensor] = None,
             training=None) -> Tuple[tf.Tensor, tf.Tensor]:
        logits = self.logits(self._maybe_jitter(gate_input, training))  # [U, E]
        probs, gates, experts = top_k_gate(logits, self.top_k)
        if self.load_balance_weight:
            self.add_loss(self.load_balance_weight * load_balance_loss(probs, experts, counts))
        if self.z_loss_weight:
            self.add_loss(self.z_loss_weight * router_z_loss(logits, counts))
        return gates, experts

    def _maybe_jitter(self, gate_input: tf.Tensor, training) -> tf.Tensor:
        if self.jitter <= 0 or training is None:
            return gate_input
        if not tf.is_tensor(training):
            return self._jitter(gate_input) if training else gate_input
        return tf.cond(tf.cast(training, tf.bool), lambda: self._jitter(gate_input), lambda: gate_input)

    def _jitter(self, gate_input: tf.Tensor) -> tf.Tensor:
        return gate_input * tf.random.uniform(tf.shape(gate_input), 1.0 - self.jitter, 1.0 + self.jitter)

    def get_config(self) -> dict:
        return {**super().get_config(), "num_experts": self.num_experts, "top_k": self.top_k,
                "load_balance_weight": self.load_balance_weight, "z_loss_weight": self.z_loss_weight,
                "jitter": self.jitter}
