"""Sentence routing: example b is routed on the mean of its tokens; all its tokens go to the same experts."""
from typing import Optional

import tensorflow as tf

from grec_tf.layers.routers.base import Router, register_router


@register_router("sentence")
class SentenceRouter(Router):
    """Routes each example on mean_s x[b, s]: gate input [B, 1, D] (a unit per example). See
    :class:`~grec_tf.layers.routers.base.Router` for the arguments."""

    def gate_input(self, x: tf.Tensor, flow_id: Optional[tf.Tensor] = None,
                   use_case_id: Optional[tf.Tensor] = None) -> tf.Tensor:
        return tf.reduce_mean(tf.cast(x, tf.float32), axis=1, keepdims=True)
