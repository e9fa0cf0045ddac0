"""E feed-forward experts D -> F -> D: their weights and activation; :mod:`expert_dispatch` runs them sparsely.

Expert e computes ``act(x W_in[e] + b_in[e]) W_out[e] + b_out[e]`` with ``kernel_in`` [E, D, F], ``bias_in``
[E, F], ``kernel_out`` [E, F, D], ``bias_out`` [E, D]; D is the input width seen by :meth:`build`.
"""
import math
from typing import Callable, Optional, Tuple

import tensorflow as tf

from grec_tf.layers.activations import activation_fn
from grec_tf.layers.expert_dispatch import dispatch_by_expert, dispatch_by_route


def _expert_initializer(fan_in: int, fan_out: int) -> tf.keras.initializers.Initializer:
    limit = math.sqrt(6.0 / (fan_in + fan_out))  # Glorot-uniform of one expert's matrix, not of the [E, ...] stack
    return tf.keras.initializers.RandomUniform(-limit, limit)


@tf.keras.utils.register_keras_serializable(package="grec_tf")
class FeedForwardExperts(tf.keras.layers.Layer):
    """The experts of a :class:`~grec_tf.layers.SparseMoE`, which builds them and calls :meth:`by_unit` or
    :meth:`by_route` (not called as a layer itself).

    Args:
      num_experts: E (>= 1).
      hidden_dim: F, each expert's hidden width (>= 1).
      activation: hidden activation, any Keras activation name.
    """

    def __init__(self, num_experts: int, hidden_dim: int, activation: str = "gelu", **kwargs):
        kwargs.setdefault("name", "experts")
        super().__init__(**kwargs)
        if int(num_experts) < 1 or int(hidden_dim) < 1:
            raise ValueError(f"FeedForwardExperts: num_experts and hidden_dim must be >= 1, got "
                             f"num_experts={num_experts}, hidden_dim={hidden_dim}")
        try:
            self.activation_fn: Callable[[tf.Tensor], tf.Tensor] = activation_fn(activation)
        except ValueError as error:
            raise ValueError(f"FeedForwardExperts: unknown activation={activation!r} ({error})") from None
        self.num_experts = int(num_experts)
        self.hidden_dim = int(hidden_dim)
        self.activation = activation

    def build(self, input_shape) -> None:
        """input_shape: [..., D]."""
        width = int(tf.TensorShape(input_shape)[-1])
        e, f = self.num_experts, self.hidden_dim
        self.kernel_in = self.add_weight("kernel_in", shape=(e, width, f), initializer=_expert_initializer(width, f))
        self.bias_in = self.add_weight("bias_in", shape=(e, f), initializer="zeros")
        self.kernel_out = self.add_weight("kernel_out", shape=(e, f, width),
                                          initializer=_expert_initializer(f, width))
        self.bias_out = self.add_weight("bias_out", shape=(e, width), initializer="zeros")
        super().build(input_shape)

    def weights_as(self, dtype: tf.DType) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        """(kernel_in, bias_in, kernel_out, bias_out) cast to ``dtype`` (the MoE's compute dtype)."""
        return (tf.cast(self.kernel_in, dtype), tf.cast(self.bias_in, dtype),
                tf.cast(self.kernel_out, dtype), tf.cast(self.bias_out, dtype))

    def by_unit(self, units: tf.Tensor, experts: tf.Tensor, gates: tf.Tensor,
                capacity: Optional[tf.Tensor] = None) -> Tuple[tf.Tensor, tf.Tensor]:
        """Each unit's selected experts (units [U, S_u, D], experts/gates [U, k]) -> (y [U, S_u, D], kept [U, k]).
        See :func:`~grec_tf.layers.expert_dispatch.dispatch_by_expert`."""
        return dispatch_by_expert(units, experts, gates, *self.weights_as(units.dtype), activation=self.activation_fn,
                                  num_experts=self.num_experts, capacity=capacity)

    def by_route(self, rows: tf.Tensor, route_index: tf.Tensor, route_experts: tf.Tensor,
                 route_gates: tf.Tensor, num_routes: int) -> tf.Tensor:
        """Each row's route's experts on it (rows [B, S, D], route_index [B], route_experts/gates [R, k], R at most
        the static ``num_routes``) -> [B, S, D]. See :func:`~grec_tf.layers.expert_dispatch.dispatch_by_route`."""
        return dispatch_by_route(rows, route_index, route_experts, route_gates, *self.weights_as(rows.dtype),
                                 activation=self.activation_fn, num_routes=num_routes)

    def get_config(self) -> dict:
        return {**super().get_config(), "num_experts": self.num_experts, "hidden_dim": self.hidden_dim,
                "activation": self.activation}
