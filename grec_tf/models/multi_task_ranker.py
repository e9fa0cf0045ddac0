"""The multi-task ranking model: GRec (sparse MoE with task-sentence routing) or a baseline bottom."""
from __future__ import annotations

from typing import Dict, Optional

import tensorflow as tf
import tensorflow_recommenders as tfrs

from grec_tf.config import ExperimentConfig
from grec_tf.data.feature_statistics import FeatureStatistics
from grec_tf.models.bottoms import MMoEBottom, SharedBottom, SparseMoEBottom
from grec_tf.models.feature_group_encoder import FeatureGroupEncoder
from grec_tf.models.multi_task_towers import MultiTaskTowers
from grec_tf.models.sequence_encoder import SequenceEncoder
from grec_tf.models.task_sentence_embedding import TaskSentenceEmbedding

TOKENS = ("sequence", "context", "search", "item", "task")


class MultiTaskRanker(tfrs.models.Model):
    """One model for every (flow, use case) task sentence.

    Inputs (a dict, as produced by :func:`grec_tf.data.feature_arrays.frame_to_arrays`): ``flow`` and
    ``use_case`` [B] string, every declared feature, and ``label`` [B] float for training.

    Pipeline: feature groups -> S=5 tokens [sequence, context, search, item, task] of width D ->
    bottom (``model.type``: GRec's routed sparse MoE, MMoE or shared-bottom) -> towers (one per use
    case, or per task sentence) -> the logit of each row's own task sentence.

    Loss: one ``tfrs.tasks.Ranking`` per use case (sigmoid cross-entropy over that use case's rows,
    averaged over them, times the configured loss weight); the MoE auxiliary losses reach the total
    through ``self.losses`` (TFRS adds them as regularization).
    """

    def __init__(self, config: ExperimentConfig, statistics: FeatureStatistics):
        super().__init__()
        self.config, self.statistics = config, statistics
        m = config.model
        D = m.d_model
        self.use_cases = list(config.data.use_cases)
        self.flows = list(config.data.flows)
        self.task_embedding = TaskSentenceEmbedding(self.flows, self.use_cases, D, name="task_sentence_embedding")

        def group_encoder(group: str) -> Optional[FeatureGroupEncoder]:
            feats = [f for f in config.features if f.group == group]
            categorical = [{"name": f.name, "vocabulary": statistics.vocabularies[f.name], "num_oov": f.num_oov,
                            "embedding_dim": f.embedding_dim or m.embedding_dim}
                           for f in feats if f.kind in ("categorical", "item_id")]
            numerical = [{"name": f.name, "mean": statistics.moments[f.name][0],
                          "variance": statistics.moments[f.name][1]} for f in feats if f.kind == "numerical"]
            vectors = [{"name": f.name, "dim": f.dim} for f in feats if f.kind == "embedding"]
            if not (categorical or numerical or vectors):
                return None
            return FeatureGroupEncoder(categorical, numerical, vectors, D, name=f"{group}_encoder")

        self.context_encoder = group_encoder("context")
        self.item_encoder = group_encoder("item")
        sequences = [{"name": f.name, "vocabulary": statistics.vocabularies[f.name], "num_oov": f.num_oov,
                      "max_length": f.max_length} for f in config.features if f.kind == "sequence"]
        target_attention = m.target_attention and self.item_encoder is not None
        self.sequence_encoder = (SequenceEncoder(sequences, D, num_blocks=m.sequence_blocks, num_heads=m.num_heads,
                                                 dropout=m.dropout, target_attention=target_attention,
                                                 name="sequence_encoder") if sequences else None)
        texts = [f for f in config.features if f.kind == "text"]
        self.text_features = [f.name for f in texts]
        self.text_encoders = []
        if texts:
            from grec_tf.text import make_text_encoder

            self.text_encoders = [make_text_encoder(m.text_encoder, statistics.text_vocabularies.get(f.name),
                                                    f.max_length, D) for f in texts]

        self.num_flow_ids = len(self.flows) + 1
        self.num_use_case_ids = len(self.use_cases) + 1
        # Tower 0 (and flow 0) is the out-of-vocabulary slot: an unknown use case gets an untrained tower
        # rather than silently borrowing a real one; training never routes rows there.
        self.num_towers = (self.num_use_case_ids if m.towers == "use_case"
                           else self.num_flow_ids * self.num_use_case_ids)
        if m.type == "grec":
            moe = dict(num_experts=m.num_experts, top_k=m.top_k, hidden_dim=m.expert_hidden, routing=m.routing,
                       num_flows=self.num_flow_ids, num_use_cases=self.num_use_case_ids,
                       capacity_factor=m.capacity_factor, load_balance_weight=m.load_balance_weight,
                       z_loss_weight=m.z_loss_weight, jitter=m.jitter)
            self.bottom = SparseMoEBottom(D, m.num_heads, moe, dropout=m.dropout, name="grec_bottom")
        elif m.type == "mmoe":
            self.bottom = MMoEBottom(m.num_experts, self.num_towers, m.expert_hidden, D, name="mmoe_bottom")
        else:
            self.bottom = SharedBottom(m.expert_hidden, D, name="shared_bottom")
        self.towers = MultiTaskTowers(self.num_towers, m.tower_units, name="towers")
        self.ranking_tasks = {
            uc: tfrs.tasks.Ranking(
                loss=tf.keras.losses.BinaryCrossentropy(from_logits=True, reduction=tf.keras.losses.Reduction.SUM),
                metrics=[tf.keras.metrics.AUC(from_logits=True, name=f"{uc}_auc")],
                name=f"{uc}_ranking")
            for uc in self.use_cases}
        self.use_case_losses = {uc: tf.keras.metrics.Mean(name=f"{uc}_loss") for uc in self.use_cases}
        # TFRS reports the last batch's loss; this is the epoch mean (what early stopping watches).
        self.task_loss = tf.keras.metrics.Mean(name="task_loss")

    def get_config(self) -> Dict:
        return {"config": self.config.to_dict(), "statistics": self.statistics.to_dict()}

    @classmethod
    def from_config(cls, values: Dict) -> "MultiTaskRanker":
        from grec_tf.config import parse_config

        return cls(parse_config(values["config"]), FeatureStatistics.from_dict(values["statistics"]))

    # -- forward -----------------------------------------------------------------------------------
    def tokens(self, features: Dict[str, tf.Tensor], training=None) -> Dict[str, tf.Tensor]:
        """Route ids and the token stack [B, S, D] of a feature dict."""
        flow_id, use_case_id, task_token = self.task_embedding(features["flow"], features["use_case"])
        zeros = tf.zeros_like(task_token)
        item = self.item_encoder(features) if self.item_encoder else zeros
        tokens = {
            "sequence": (self.sequence_encoder(features, candidate=item, training=training)
                         if self.sequence_encoder else zeros),
            "context": self.context_encoder(features) if self.context_encoder else zeros,
            "search": (tf.add_n([tf.cast(enc(features[name], training=training), task_token.dtype)
                                 for enc, name in zip(self.text_encoders, self.text_features)])
                       if self.text_encoders else zeros),
            "item": item,
            "task": task_token,
        }
        dtype = self.compute_dtype
        stack = tf.stack([tf.cast(tokens[name], dtype) for name in TOKENS], axis=1)
        stack = tf.ensure_shape(stack, [None, len(TOKENS), self.config.model.d_model])
        return {"flow_id": flow_id, "use_case_id": use_case_id, "tokens": stack}

    def tower_index(self, flow_id: tf.Tensor, use_case_id: tf.Tensor) -> tf.Tensor:
        if self.config.model.towers == "use_case":
            return use_case_id
        return flow_id * self.num_use_case_ids + use_case_id

    def call(self, features: Dict[str, tf.Tensor], training=None) -> Dict[str, tf.Tensor]:
        """Returns ``logit`` and ``probability`` [B] of each row's own task sentence, ``logits``
        [B, T] of every tower, route ids, and ``routing`` [B, E] (expert weights, GRec and MMoE)."""
        t = self.tokens(features, training=training)
        representation, routing = self.bottom(t["tokens"], t["flow_id"], t["use_case_id"], training=training)
        logits = self.towers(representation)
        index = self.tower_index(t["flow_id"], t["use_case_id"])
        logit = tf.gather(logits, index, batch_dims=1)
        out = {"logit": logit, "probability": tf.sigmoid(logit), "logits": logits,
               "flow_id": t["flow_id"], "use_case_id": t["use_case_id"]}
        if routing is not None:
            if len(routing.shape) == 3:  # MMoE: the gate of the row's own tower
                routing = tf.gather(routing, index, batch_dims=1)
            out["routing"] = tf.cast(routing, tf.float32)
        return out

    def compute_loss(self, inputs: Dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        out = self(inputs, training=training)
        labels = tf.cast(inputs["label"], tf.float32)
        total = tf.constant(0.0)
        for u, use_case in enumerate(self.use_cases):
            weight = tf.cast(tf.equal(out["use_case_id"], u + 1), tf.float32)
            rows = tf.reduce_sum(weight)
            summed = self.ranking_tasks[use_case](labels=labels[:, None], predictions=out["logit"][:, None],
                                                  sample_weight=weight, training=training)
            mean = tf.math.divide_no_nan(summed, rows)
            self.use_case_losses[use_case].update_state(mean, sample_weight=tf.minimum(rows, 1.0))
            total += self.config.model.loss_weights.get(use_case, 1.0) * mean
        self.task_loss.update_state(total, sample_weight=tf.cast(tf.shape(labels)[0], tf.float32))
        return total
