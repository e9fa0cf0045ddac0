"""Forward FLOPs per example of a trained ranker's bottom and towers, split by name scope (the ``routing`` and
``experts`` benchmarks price their variants with it)."""
from __future__ import annotations

from typing import Dict

import tensorflow as tf

from grec_tf.profiling import count_flops_by_scope

#: rows of the test batch the profiler prices (FLOPs are reported per example)
FLOPS_BATCH = 256


def model_flops(model: tf.keras.Model, batch: Dict[str, tf.Tensor]) -> Dict[str, float]:
    """Forward FLOPs per example of ``model``'s bottom and towers on ``batch`` (a dict of [B, ...] inputs):
    ``total`` and ``routing`` (ops whose name contains ``_router``; zero for models without a router).

    The encoders are left out: they are the same for every variant, and their string lookup tables cannot be
    frozen into the graph the profiler prices. The token stack is computed first, eagerly. The towers are priced as
    the model runs them: each row's own tower only (all of them for the chained ESMM / AITM towers)."""
    tokens = model.tokens(batch, training=False)

    @tf.function
    def forward(stack, flow_id, use_case_id):
        representation, _ = model.bottom(stack, flow_id, use_case_id, training=False)
        return model.towers(representation, tower=model.tower_index(flow_id, use_case_id))

    rows = int(tokens["tokens"].shape[0])
    counts = count_flops_by_scope(forward, tokens["tokens"], tokens["flow_id"], tokens["use_case_id"],
                                  scopes=("_router",))
    return {"total": counts["total"] / rows, "routing": counts["_router"] / rows}
