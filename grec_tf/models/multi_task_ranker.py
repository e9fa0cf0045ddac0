"""The multi-task ranking model: encoders -> token stack -> bottom -> towers, one TFRS ranking task per use case.

Where it sits: :func:`grec_tf.models.factory.build_ranker` builds one from an experiment's config and its
training-split statistics; every part arrives here already built (Merlin-style injected blocks), so the
same class is GRec (a routed sparse-MoE bottom) or a baseline (MMoE, shared-bottom) depending only on the
bottom it is given.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import tensorflow as tf
import tensorflow_recommenders as tfrs

from grec_tf.data.feature_arrays import IMPRESSION_KEY
from grec_tf.layers.shared_tokens import shared_tokens
from grec_tf.models.task_sentence_embedding import TaskSentenceEmbedding

#: the tokens of the stack, in order (S = 5; with per-feature tokens the context and item tokens are one per feature)
TOKENS = ("sequence", "context", "search", "item", "task")
#: the tokens the encoders compute from the features alone (the same for every task sentence of an impression)
ENCODED_TOKENS = TOKENS[:-1]
#: batch entries the encoders do not read
NOT_ENCODED = ("use_case", "label", IMPRESSION_KEY)
TOWER_KEYS = ("use_case", "task_sentence")


def task_sentences_per_use_case(flow: tf.Tensor, use_cases: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """(flow, use_case) [B * U] string of every row [B] paired with every use case [U], row-major (row i, use
    case u at i * U + u): the rows ``score_use_cases`` scores."""
    return (tf.repeat(flow, tf.shape(use_cases)[0], axis=0),
            tf.tile(use_cases, [tf.shape(flow)[0]]))


class TrainedExamples:
    """Long rows and impressions the train step has seen in this process, counted in the graph so that
    ``steps_per_execution > 1`` and batches of varying size are counted right.

    A plain holder (not a Keras layer or trackable): the counters stay out of the model's weights and
    checkpoints, so a restored run counts only what it trains itself. ``impressions`` adds the distinct
    ``impression_key`` values of each batch (the rows of a batch without keys count as one impression each):
    an impression whose rows fall into two batches counts twice, as it is encoded twice.
    """

    def __init__(self):
        # SUM: under a distribution strategy every replica adds the rows of its own part of the batch
        self.rows = tf.Variable(0, dtype=tf.int64, trainable=False, aggregation=tf.VariableAggregation.SUM)
        self.impressions = tf.Variable(0, dtype=tf.int64, trainable=False,
                                       aggregation=tf.VariableAggregation.SUM)

    def count(self, batch: Dict[str, tf.Tensor]) -> None:
        """Adds one batch (a dict of [B, ...] tensors with ``flow``)."""
        rows = tf.shape(batch["flow"], out_type=tf.int64)[0]
        self.rows.assign_add(rows)
        if IMPRESSION_KEY in batch:
            self.impressions.assign_add(tf.size(tf.unique(batch[IMPRESSION_KEY]).y, out_type=tf.int64))
        else:
            self.impressions.assign_add(rows)

    def numpy(self) -> Dict[str, int]:
        """``{"rows": ..., "impressions": ...}`` so far."""
        return {"rows": int(self.rows.numpy()), "impressions": int(self.impressions.numpy())}


class MultiTaskRanker(tfrs.models.Model):
    """One model for every (flow, use case) task sentence.

    Args:
      task_embedding: flow/use-case lookup and the task token (width D).
      bottom: maps tokens [B, S, D] (+ route ids) to the towers' input ([B, H] or [B, T, H]) and a routing
        tensor or None (e.g. :class:`~grec_tf.models.bottoms.SparseMoEBottom`).
      towers: T MLP heads, T = number of use-case ids (``tower_key="use_case"``) or of (flow, use case) ids:
        ``towers(x)`` -> logits [B, T] of every tower, ``towers(x, tower=index)`` -> logits [B] of each row's own
        (:class:`~grec_tf.models.multi_task_towers.MultiTaskTowers`, or a ``GatheredOwnTower`` layer there).
      context_encoder, item_encoder: feature-group encoders -> [B, D] (None when the group has no features).
      sequence_encoder: viewed sequences -> [B, D], or None.
      text_encoders: text feature name -> encoder of raw strings [B] -> [B, D]; their sum is the search token.
      wide_logits: raw features -> logits [B, T] added to every tower's logit (the wide part of Wide & Deep,
        :class:`~grec_tf.models.wide_logits.WideLogits`), or None.
      tower_key: "use_case" (one tower per use case) or "task_sentence" (one per flow x use case).
      loss_weights: use case -> weight of its loss in the total (default 1).

    Inputs: a dict with ``flow`` and ``use_case`` [B] string and every declared feature (raw values, see
    :mod:`grec_tf.data.input_specs`), plus ``label`` [B] float for training and optionally ``impression_key``
    [B] int64 (equal for rows with equal features): with it the task-independent encoders run once per
    impression, not once per (impression, task sentence) row (:meth:`encode_impressions`).

    Loss: one ``tfrs.tasks.Ranking`` per use case (sigmoid cross-entropy over that use case's rows,
    averaged over them, times its loss weight); the MoE auxiliary losses reach the total through
    ``self.losses`` (added as regularization, as TFRS does).

    Under a ``tf.distribute`` strategy with R replicas the gradients of the replicas' losses are summed, so each
    replica's loss is its rows' share of the global batch's loss: a use case's summed loss is divided by that use
    case's rows over all replicas, and the auxiliary losses (means over the replica's own rows) by R. The step's
    logs are global values (metrics are synchronized, losses summed over replicas), so Keras keeps the first
    replica's (``distribute_reduction_method = "first"``).
    """

    def __init__(self, task_embedding: TaskSentenceEmbedding, bottom: tf.keras.layers.Layer,
                 towers: tf.keras.layers.Layer, context_encoder: Optional[tf.keras.layers.Layer] = None,
                 item_encoder: Optional[tf.keras.layers.Layer] = None,
                 sequence_encoder: Optional[tf.keras.layers.Layer] = None,
                 text_encoders: Optional[Dict[str, tf.keras.layers.Layer]] = None, tower_key: str = "use_case",
                 loss_weights: Optional[Dict[str, float]] = None,
                 wide_logits: Optional[tf.keras.layers.Layer] = None, **kwargs):
        super().__init__(**kwargs)
        if tower_key not in TOWER_KEYS:
            raise ValueError(f"MultiTaskRanker: tower_key must be one of {TOWER_KEYS}, got {tower_key!r}")
        expected_towers = (task_embedding.num_use_case_ids if tower_key == "use_case"
                           else task_embedding.num_flow_ids * task_embedding.num_use_case_ids)
        if towers.num_towers != expected_towers:
            raise ValueError(f"MultiTaskRanker: tower_key={tower_key!r} needs {expected_towers} towers, "
                             f"got {towers.num_towers}")
        self.task_embedding, self.bottom, self.towers = task_embedding, bottom, towers
        self.context_encoder, self.item_encoder = context_encoder, item_encoder
        self.sequence_encoder, self.wide_logits = sequence_encoder, wide_logits
        self.text_encoders = dict(text_encoders or {})
        self.tower_key = tower_key
        self.loss_weights = {str(k): float(v) for k, v in (loss_weights or {}).items()}
        self.ranking_tasks = {
            uc: tfrs.tasks.Ranking(
                loss=tf.keras.losses.BinaryCrossentropy(from_logits=True, reduction=tf.keras.losses.Reduction.SUM),
                metrics=[tf.keras.metrics.AUC(from_logits=True, name=f"{uc}_auc")],
                name=f"{uc}_ranking")
            for uc in self.use_cases}
        self.use_case_losses = {uc: tf.keras.metrics.Mean(name=f"{uc}_loss") for uc in self.use_cases}
        # TFRS reports the last batch's loss; this is the epoch mean (what early stopping watches).
        self.task_loss = tf.keras.metrics.Mean(name="task_loss")
        self.distribute_reduction_method = "first"
        self.trained_examples = TrainedExamples()

    @property
    def flows(self) -> List[str]:
        return self.task_embedding.flows

    @property
    def use_cases(self) -> List[str]:
        return self.task_embedding.use_cases

    @property
    def d_model(self) -> int:
        return self.task_embedding.d_model

    _PARTS = ("task_embedding", "bottom", "towers", "context_encoder", "item_encoder", "sequence_encoder",
              "wide_logits")

    def get_config(self) -> Dict:
        parts = {name: tf.keras.layers.serialize(getattr(self, name)) if getattr(self, name) is not None else None
                 for name in self._PARTS}
        texts = {name: tf.keras.layers.serialize(layer) for name, layer in self.text_encoders.items()}
        return {**parts, "text_encoders": texts, "tower_key": self.tower_key, "loss_weights": self.loss_weights}

    @classmethod
    def from_config(cls, config: Dict) -> "MultiTaskRanker":
        config = dict(config)
        for name in cls._PARTS:
            if config.get(name) is not None:
                config[name] = tf.keras.layers.deserialize(config[name])
        config["text_encoders"] = {name: tf.keras.layers.deserialize(layer)
                                   for name, layer in (config.get("text_encoders") or {}).items()}
        return cls(**config)

    # -- forward -----------------------------------------------------------------------------------
    def encode(self, features: Dict[str, tf.Tensor], training=None) -> tf.Tensor:
        """The task-independent tokens [B, P, D] (``ENCODED_TOKENS``: sequence, context, search, item; P = 4, or
        :attr:`num_encoded_tokens` with per-feature context or item tokens) of every row: everything that does
        not depend on the task sentence (``flow`` gives only the batch size)."""
        batch = tf.shape(features["flow"])[0]
        zeros = tf.zeros([batch, self.d_model], self.compute_dtype)
        item = self.item_encoder(features) if self.item_encoder else zeros
        # target attention's candidate is one vector: the mean of per-feature item tokens
        candidate = tf.reduce_mean(item, axis=1) if len(item.shape) == 3 else item
        tokens = {
            "sequence": (self.sequence_encoder(features, candidate=candidate, training=training)
                         if self.sequence_encoder else zeros),
            "context": self.context_encoder(features) if self.context_encoder else zeros,
            "search": (tf.add_n([tf.cast(encoder(features[name], training=training), self.compute_dtype)
                                 for name, encoder in self.text_encoders.items()])
                       if self.text_encoders else zeros),
            "item": item,
        }
        # an encoder with per-feature tokens gives [B, F, D] where the others give [B, D]
        stack = tf.concat([tf.cast(tokens[name] if len(tokens[name].shape) == 3 else tokens[name][:, None],
                                   self.compute_dtype) for name in ENCODED_TOKENS], axis=1)
        return tf.ensure_shape(stack, [None, self.num_encoded_tokens, self.d_model])

    @property
    def num_encoded_tokens(self) -> int:
        """P, the task-independent tokens of a row: 4, or more when an encoder gives one token per feature."""
        group_tokens = sum(encoder.num_tokens if encoder is not None else 1  # a missing group: one zero token
                           for encoder in (self.context_encoder, self.item_encoder))
        return group_tokens + 2  # + sequence and search

    def encode_shared(self, features: Dict[str, tf.Tensor],
                      training=None) -> Tuple[tf.Tensor, Optional[tf.Tensor]]:
        """:meth:`encode` once per impression: ``(encoded [N, 4, D], rows [B] int32)``, row i's tokens being
        ``encoded[rows[i]]``, when ``features`` has ``impression_key`` [B] (rows with equal keys have equal model
        inputs, see :func:`grec_tf.data.feature_arrays.impression_keys`; the first row of each key is encoded).
        Dropout inside the encoders then draws one mask per impression instead of one per row. Without the key
        (serving) every row is encoded: ``(encoded [B, 4, D], None)``."""
        if IMPRESSION_KEY not in features:
            return self.encode(features, training=training), None
        keys, rows = tf.unique(features[IMPRESSION_KEY], out_idx=tf.int32)
        first = tf.math.unsorted_segment_min(tf.range(tf.size(rows)), rows, tf.size(keys))
        inputs = {name: tf.gather(value, first) for name, value in features.items()
                  if name not in NOT_ENCODED}
        return self.encode(inputs, training=training), rows

    def encode_impressions(self, features: Dict[str, tf.Tensor], training=None) -> tf.Tensor:
        """:meth:`encode` of every row [B, 4, D], computed once per impression (:meth:`encode_shared`)."""
        encoded, rows = self.encode_shared(features, training=training)
        return encoded if rows is None else tf.gather(encoded, rows)

    def task_tokens(self, encoded: tf.Tensor, flow: tf.Tensor, use_case: tf.Tensor,
                    rows: Optional[tf.Tensor] = None) -> Dict[str, tf.Tensor]:
        """Route ids ``flow_id``, ``use_case_id`` [B] int64 and the token stack ``tokens``: the encoded tokens
        followed by the task token of each row's (flow, use case). ``encoded`` is [B, 4, D], or [N, 4, D] with
        ``rows`` [B] int32 naming each row's; then a bottom that ``takes_shared_tokens`` gets the factored stack
        (:mod:`grec_tf.layers.shared_tokens`), any other the dense [B, S=5, D]."""
        flow_id, use_case_id, task_token = self.task_embedding(flow, use_case)
        own = tf.cast(task_token, self.compute_dtype)[:, None, :]
        if rows is not None and getattr(self.bottom, "takes_shared_tokens", False):
            return {"flow_id": flow_id, "use_case_id": use_case_id, "tokens": shared_tokens(encoded, rows, own)}
        if rows is not None:
            encoded = tf.gather(encoded, rows)
        stack = tf.ensure_shape(tf.concat([encoded, own], axis=1), [None, self.num_encoded_tokens + 1, self.d_model])
        return {"flow_id": flow_id, "use_case_id": use_case_id, "tokens": stack}

    def tokens(self, features: Dict[str, tf.Tensor], training=None) -> Dict[str, tf.Tensor]:
        """Route ids ``flow_id``, ``use_case_id`` [B] int64 and the dense token stack ``tokens`` [B, S=5, D]."""
        encoded = self.encode_impressions(features, training=training)
        return self.task_tokens(encoded, features["flow"], features["use_case"])

    def tower_index(self, flow_id: tf.Tensor, use_case_id: tf.Tensor) -> tf.Tensor:
        """[B] index of each row's own tower."""
        if self.tower_key == "use_case":
            return use_case_id
        return flow_id * self.task_embedding.num_use_case_ids + use_case_id

    def call(self, features: Dict[str, tf.Tensor], training=None, score_use_cases: Optional[tf.Tensor] = None,
             every_tower: bool = False) -> Dict[str, tf.Tensor]:
        """Returns ``logit`` and ``probability`` [B] of each row's own task sentence, route ids ``flow_id``,
        ``use_case_id`` [B], and ``routing`` [B, E] (expert weights, GRec and MMoE).

        ``score_use_cases`` [U] string: score every row for each of these use cases instead of ``use_case``
        (which may then be absent); the rows of the outputs are then B x U, row-major (row i, use case u at
        i * U + u), and the encoders still run once per input row.

        ``every_tower``: also return ``logits`` [B, T] of every tower (``logit`` is then gathered from them);
        by default only each row's own tower runs (see :meth:`score`)."""
        encoded, rows = self.encode_shared(features, training=training)
        wide = self.wide_logits(features) if self.wide_logits is not None else None  # [B, T], one per input row
        if score_use_cases is None:
            flow, use_case = features["flow"], features["use_case"]
        else:  # use_case may be absent: every row is scored for each of score_use_cases, its tokens shared
            rows = tf.range(tf.shape(encoded)[0]) if rows is None else rows
            rows = tf.repeat(rows, tf.shape(score_use_cases)[0], axis=0)
            flow, use_case = task_sentences_per_use_case(features["flow"], score_use_cases)
            if wide is not None:
                wide = tf.repeat(wide, tf.shape(score_use_cases)[0], axis=0)
        tokens = self.task_tokens(encoded, flow, use_case, rows)
        if wide is not None:
            tokens["wide_logits"] = wide
        return self.score(tokens, training=training, every_tower=every_tower)

    def score(self, tokens: Dict[str, tf.Tensor], training=None, every_tower: bool = False) -> Dict[str, tf.Tensor]:
        """The task-dependent part of :meth:`call` on :meth:`task_tokens`' output: bottom, then the row's own
        tower. A long row carries the label of one task sentence and a served row asks for one, so no other
        tower runs (1/T of the towers' work; the chained ESMM / AITM towers still compute the towers a row's own
        depends on) unless ``every_tower`` asks for their ``logits`` [B, T] too. ``tokens["wide_logits"]`` [B, T],
        when present, is added to the towers' logits."""
        representation, routing = self.bottom(tokens["tokens"], tokens["flow_id"], tokens["use_case_id"],
                                              training=training)
        index = self.tower_index(tokens["flow_id"], tokens["use_case_id"])
        out = {"flow_id": tokens["flow_id"], "use_case_id": tokens["use_case_id"]}
        wide = tokens.get("wide_logits")
        if every_tower:
            out["logits"] = self.towers(representation)
            if wide is not None:
                out["logits"] += tf.cast(wide, out["logits"].dtype)
            logit = tf.gather(out["logits"], index, batch_dims=1)
        else:
            logit = self.towers(representation, tower=index)
            if wide is not None:
                logit += tf.cast(tf.gather(wide, index, batch_dims=1), logit.dtype)
        out.update(logit=logit, probability=tf.sigmoid(logit))
        if routing is not None:
            if len(routing.shape) == 3:  # MMoE: the gate of the row's own tower
                routing = tf.gather(routing, index, batch_dims=1)
            out["routing"] = tf.cast(routing, tf.float32)
        return out

    def compute_loss(self, inputs: Dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        """This replica's share of the global batch's task loss (the whole loss on one replica). The loss
        metrics record the global batch's values, whatever the number of replicas."""
        out = self(inputs, training=training)
        labels = tf.cast(inputs["label"], tf.float32)
        weights = [tf.cast(tf.equal(out["use_case_id"], u + 1), tf.float32) for u in range(len(self.use_cases))]
        summed = tf.stack([self.ranking_tasks[use_case](labels=labels[:, None], predictions=out["logit"][:, None],
                                                        sample_weight=weights[u], training=training)
                           for u, use_case in enumerate(self.use_cases)])  # [U] this replica's summed losses
        rows = tf.stack([tf.reduce_sum(weight) for weight in weights])  # [U] this replica's rows per use case
        global_summed, global_rows = tf.unstack(replica_sum(tf.stack([summed, rows])))  # [U] each
        replicas = _replicas_in_sync()
        total, share = tf.constant(0.0), tf.constant(0.0)
        for u, use_case in enumerate(self.use_cases):
            weight = self.loss_weights.get(use_case, 1.0)
            share += weight * tf.math.divide_no_nan(summed[u], global_rows[u])
            mean = tf.math.divide_no_nan(global_summed[u], global_rows[u])
            # every replica records the global mean; the weights over replicas add up to one batch's
            self.use_case_losses[use_case].update_state(mean, sample_weight=tf.minimum(global_rows[u], 1.0) / replicas)
            total += weight * mean
        self.task_loss.update_state(total, sample_weight=tf.cast(tf.shape(labels)[0], tf.float32))
        return share

    def train_step(self, inputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        """TFRS's step with the auxiliary losses scaled per replica (see the class doc), counting the batch into
        :attr:`trained_examples` first."""
        self.trained_examples.count(inputs)
        with tf.GradientTape() as tape:
            loss = self.compute_loss(inputs, training=True)
            regularization_loss = self._auxiliary_loss_share()
            total_loss = loss + regularization_loss
        gradients = tape.gradient(total_loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables))
        return self._step_logs(loss, regularization_loss)

    def test_step(self, inputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        return self._step_logs(self.compute_loss(inputs, training=False), self._auxiliary_loss_share())

    def _auxiliary_loss_share(self) -> tf.Tensor:
        return tf.reduce_sum([tf.reduce_sum(loss) for loss in self.losses]) / _replicas_in_sync()

    def _step_logs(self, loss: tf.Tensor, regularization_loss: tf.Tensor) -> Dict[str, tf.Tensor]:
        """Every metric's result, and the batch's ``loss``, ``regularization_loss`` and ``total_loss`` summed
        over replicas."""
        logs = {metric.name: metric.result() for metric in self.metrics}
        loss, regularization_loss = replica_sum(loss), replica_sum(regularization_loss)
        return {**logs, "loss": loss, "regularization_loss": regularization_loss,
                "total_loss": loss + regularization_loss}


def _replicas_in_sync() -> int:
    """Replicas of the current ``tf.distribute`` replica context (1 outside one)."""
    context = tf.distribute.get_replica_context()
    return context.num_replicas_in_sync if context is not None else 1


def replica_sum(value: tf.Tensor) -> tf.Tensor:
    """``value`` summed over the replicas of the current ``tf.distribute`` replica context (itself with one
    replica, or outside a replica context)."""
    if _replicas_in_sync() == 1:
        return value
    return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, value)
