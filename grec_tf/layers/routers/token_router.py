"""Token routing: every token x[b, s] is routed on its own features."""
from typing import Optional

import tensorflow as tf

from grec_tf.layers.routers.base import Router, register_router


@register_router("token")
class TokenRouter(Router):
    """Routes each token on its features: gate input [B, S, D] (a unit per token). See
    :class:`~grec_tf.layers.routers.base.Router` for the arguments."""

    def gate_input(self, x: tf.Tensor, flow_id: Optional[tf.Tensor] = None,
                   use_case_id: Optional[tf.Tensor] = None) -> tf.Tensor:
        return tf.cast(x, tf.float32)
