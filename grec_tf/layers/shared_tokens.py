"""Token stacks whose leading tokens several rows share.

A GRec row's leading tokens (sequence, context, search, item) depend on its impression only, its last token
(the task token) on its task sentence. Several rows share the leading tokens: the task sentences of one
impression in training, the use cases ``score_all`` scores for one served row. Such a stack can be given
factored, as a dict

    {"shared": [N, P, D], "rows": [B] int32 in [0, N), "own": [B, Q, D]}

standing for the dense stack ``concat([gather(shared, rows), own], axis=1)`` [B, P + Q, D]. A layer whose
``takes_shared_tokens`` is True (:class:`~grec_tf.layers.ParallelTransformerBlock`) accepts either form and does
each shared token's per-token work once per shared row (N) instead of once per row (B); any other layer gets
:func:`dense_tokens` of it.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Union

import tensorflow as tf

SHARED, ROWS, OWN = "shared", "rows", "own"
TokenStack = Union[tf.Tensor, Dict[str, tf.Tensor]]


def shared_tokens(shared: tf.Tensor, rows: tf.Tensor, own: tf.Tensor) -> Dict[str, tf.Tensor]:
    """The factored stack of ``shared`` [N, P, D], ``rows`` [B] (int, cast to int32) and ``own`` [B, Q, D]."""
    return {SHARED: shared, ROWS: tf.cast(rows, tf.int32), OWN: own}


def is_shared(tokens: Any) -> bool:
    """True for a factored stack (a mapping with the three keys), False for a dense [B, S, D] tensor."""
    return isinstance(tokens, Mapping) and set(tokens) == {SHARED, ROWS, OWN}


def dense_tokens(tokens: TokenStack) -> tf.Tensor:
    """The dense stack [B, S, D] of either form."""
    if not is_shared(tokens):
        return tokens
    return tf.concat([tf.gather(tokens[SHARED], tokens[ROWS]), tokens[OWN]], axis=1)


def token_width(input_shape: Any) -> int:
    """D, from the shape of a dense stack or the dict of shapes Keras gives ``build`` for a factored one."""
    if isinstance(input_shape, Mapping):
        input_shape = input_shape[OWN]
    return int(tf.TensorShape(input_shape)[-1])
