"""The single-task baseline (the production setup GRec replaced): one independent model per task sentence.

:class:`SingleTaskRanker` is a :class:`MultiTaskRanker` whose towers slot holds :class:`TaskSentenceNetworks`:
one whole ranker (its own encoders, bottom and tower) per (flow, use case). Each row runs only its own task
sentence's network (``tf.dynamic_partition`` / ``tf.dynamic_stitch``), so no parameter is shared between task
sentences, while the loss, per-use-case metrics, outputs and serving are the multi-task ranker's: training,
evaluation and export treat it like any other model, and its parameter count is the sum over the networks.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import tensorflow as tf

from grec_tf.models.multi_task_ranker import MultiTaskRanker, task_sentences_per_use_case


@tf.keras.utils.register_keras_serializable(package="grec_tf")
class TaskSentenceNetworks(tf.keras.layers.Layer):
    """``networks[f * U + u]`` scores the rows of flow ``flows[f]`` and use case ``use_cases[u]``.

    A row is addressed like a task-sentence tower, ``flow_id * num_use_case_ids + use_case_id`` (ids 0 are
    the unknown flow / use case), so ``num_towers`` = num_flow_ids x num_use_case_ids. A row with an unknown
    flow (use case) is scored by the first flow's (use case's) network: it has no network of its own.

    Call: ``features`` (the ranker's input dict, [B] leading axis), ``tower_index`` [B] int -> logit [B] float32.
    """

    def __init__(self, networks: List[MultiTaskRanker], num_flow_ids: int, num_use_case_ids: int, **kwargs):
        super().__init__(**kwargs)
        if len(networks) != (num_flow_ids - 1) * (num_use_case_ids - 1):
            raise ValueError(f"TaskSentenceNetworks: expected one network per task sentence, "
                             f"{(num_flow_ids - 1) * (num_use_case_ids - 1)}, got {len(networks)}")
        self.networks = list(networks)
        self.num_flow_ids, self.num_use_case_ids = num_flow_ids, num_use_case_ids
        uses = num_use_case_ids - 1
        self.network_of_tower = [max(f - 1, 0) * uses + max(u - 1, 0)
                                 for f in range(num_flow_ids) for u in range(num_use_case_ids)]

    @property
    def num_towers(self) -> int:
        return self.num_flow_ids * self.num_use_case_ids

    def call(self, features: Dict[str, tf.Tensor], tower_index: tf.Tensor, training=None) -> tf.Tensor:
        part = tf.gather(tf.constant(self.network_of_tower, tf.int32), tf.cast(tower_index, tf.int32))
        n = len(self.networks)
        rows = tf.dynamic_partition(tf.range(tf.shape(part)[0]), part, n)
        parts = {name: tf.dynamic_partition(value, part, n) for name, value in features.items()}
        logits = [network({name: values[i] for name, values in parts.items()}, training=training)["logit"]
                  for i, network in enumerate(self.networks)]
        return tf.dynamic_stitch(rows, logits)

    def get_config(self) -> Dict:
        return {**super().get_config(), "networks": [network.get_config() for network in self.networks],
                "num_flow_ids": self.num_flow_ids, "num_use_case_ids": self.num_use_case_ids}

    @classmethod
    def from_config(cls, config: Dict) -> "TaskSentenceNetworks":
        config = dict(config)
        config["networks"] = [MultiTaskRanker.from_config(network) for network in config["networks"]]
        return cls(**config)


class SingleTaskRanker(MultiTaskRanker):
    """A :class:`MultiTaskRanker` built with ``towers`` = :class:`TaskSentenceNetworks`, ``bottom`` and the
    encoders None and ``tower_key="task_sentence"``: its task embedding only looks the route ids up.

    Outputs: ``logit``, ``probability`` [B] of the row's own network, ``flow_id``, ``use_case_id`` [B] (no
    ``logits`` of other towers, no ``routing``: a row runs one network only).
    """

    def call(self, features: Dict[str, tf.Tensor], training=None,
             score_use_cases: Optional[tf.Tensor] = None) -> Dict[str, tf.Tensor]:
        if score_use_cases is not None:  # no shared encoder: each (row, use case) runs its own network whole
            copies = tf.shape(score_use_cases)[0]
            flow, use_case = task_sentences_per_use_case(features["flow"], score_use_cases)
            features = {**{name: tf.repeat(value, copies, axis=0) for name, value in features.items()},
                        "flow": flow, "use_case": use_case}
        flow_id = self.task_embedding.flow_lookup(features["flow"])
        use_case_id = self.task_embedding.use_case_lookup(features["use_case"])
        logit = self.towers(features, self.tower_index(flow_id, use_case_id), training=training)
        return {"logit": logit, "probability": tf.sigmoid(logit), "flow_id": flow_id, "use_case_id": use_case_id}

    @property
    def metrics(self) -> list:
        # Each network is a whole MultiTaskRanker whose own loss bookkeeping is never updated (this model
        # computes the loss); its metrics carry this model's names, so they would shadow the real ones.
        nested = {id(metric) for network in self.towers.networks for metric in network.metrics}
        return [metric for metric in super().metrics if id(metric) not in nested]
