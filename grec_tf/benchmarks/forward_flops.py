"""Forward FLOPs per example of a trained ranker's bottom and towers, split by name scope (the ``routing`` and
``experts`` benchmarks price their variants with it)."""
from __future__ import annotations

from typing import Dict

import tensorflow as tf

from grec_tf.layers.shared_tokens import OWN, ROWS, SHARED, is_shared, shared_tokens
from grec_tf.profiling import count_flops_by_scope

#: rows of the test batch the profiler prices (FLOPs are reported per example)
FLOPS_BATCH = 256


def model_flops(model: tf.keras.Model, batch: Dict[str, tf.Tensor], shared: bool = False) -> Dict[str, float]:
    """Forward FLOPs per example (long row) of ``model``'s bottom and towers on ``batch`` (a dict of [B, ...]
    inputs): ``total`` and ``routing`` (ops whose name contains ``_router``; zero for models without a router).

    The encoders are left out: they are the same for every variant, and their string lookup tables cannot be
    frozen into the graph the profiler prices. The token stack is computed first, eagerly. The towers are priced as
    the model runs them: each row's own tower only (all of them for the chained ESMM / AITM towers).

    ``shared=False`` prices one example on its own (the dense [B, 5, D] stack: the model's cost per example, what
    the paper's FLOPs are). ``shared=True`` prices what training computes on ``batch``: with ``impression_key``
    the token mixer does its shared tokens' work once per impression of the batch
    (:meth:`~grec_tf.models.multi_task_ranker.MultiTaskRanker.encode_shared`), spread over the impression's rows."""
    if shared:
        encoded, rows = model.encode_shared(batch, training=False)
    else:
        encoded, rows = model.encode_impressions(batch, training=False), None
    tokens = model.task_tokens(encoded, batch["flow"], batch["use_case"], rows)
    stack = tokens["tokens"]
    parts = [stack[SHARED], stack[ROWS], stack[OWN]] if is_shared(stack) else [stack]

    @tf.function
    def forward(flow_id, use_case_id, *parts):
        tokens = shared_tokens(*parts) if len(parts) == 3 else parts[0]
        representation, _ = model.bottom(tokens, flow_id, use_case_id, training=False)
        return model.towers(representation, tower=model.tower_index(flow_id, use_case_id))

    count = int(tokens["flow_id"].shape[0])
    counts = count_flops_by_scope(forward, tokens["flow_id"], tokens["use_case_id"], *parts, scopes=("_router",))
    return {"total": counts["total"] / count, "routing": counts["_router"] / count}
