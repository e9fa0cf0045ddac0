"""The one bridge from an experiment's configuration to a model: :func:`build_ranker`.

Everything below this module takes plain, typed arguments or already-built layers; only here are config
keys read, and a value that cannot be honoured is reported with the key's path (``model.routing``...).
"""
from __future__ import annotations

from typing import List, Optional, Type

import tensorflow as tf

from grec_tf.config import ROUTE_EMBEDDING_DIM_DEFAULT, ExperimentConfig, ModelConfig, TextEncoderConfig
from grec_tf.data.feature_statistics import FeatureStatistics
from grec_tf.errors import ConfigError
from grec_tf.layers import (ROUTERS, FeedForwardExperts, MultiQueryAttention, ParallelTransformerBlock, Router,
                            SparseMoE)
from grec_tf.models.bottoms import MMoEBottom, SharedBottom, SparseMoEBottom
from grec_tf.models.feature_group_encoder import FeatureGroupEncoder
from grec_tf.models.multi_task_ranker import MultiTaskRanker
from grec_tf.models.multi_task_towers import MultiTaskTowers
from grec_tf.models.sequence_encoder import SequenceEncoder
from grec_tf.models.task_sentence_embedding import TaskSentenceEmbedding
from grec_tf.text import HubTextEncoder, SearchQueryEncoder

def build_ranker(config: ExperimentConfig, statistics: FeatureStatistics) -> MultiTaskRanker:
    """The (uncompiled, unbuilt) model an experiment describes, with vocabularies and normalization from
    ``statistics`` (the training split's). Raises :class:`ConfigError` naming the key of a value that
    cannot be honoured."""
    m = config.model
    task_embedding = TaskSentenceEmbedding(config.data.flows, config.data.use_cases, m.d_model,
                                           name="task_sentence_embedding")
    num_towers = (task_embedding.num_use_case_ids if m.towers == "use_case"
                  else task_embedding.num_flow_ids * task_embedding.num_use_case_ids)
    item_encoder = build_group_encoder(config, statistics, "item")
    return MultiTaskRanker(
        task_embedding=task_embedding,
        bottom=build_bottom(m, task_embedding.num_flow_ids, task_embedding.num_use_case_ids, num_towers),
        towers=MultiTaskTowers(num_towers, m.tower_units, name="towers"),
        context_encoder=build_group_encoder(config, statistics, "context"),
        item_encoder=item_encoder,
        sequence_encoder=build_sequence_encoder(config, statistics, with_candidate=item_encoder is not None),
        text_encoders={f.name: build_text_encoder(m.text_encoder, statistics.text_vocabularies.get(f.name),
                                                  f.max_length, m.d_model)
                       for f in config.features if f.kind == "text"},
        tower_key=m.towers, loss_weights=m.loss_weights)


def build_group_encoder(config: ExperimentConfig, statistics: FeatureStatistics,
                        group: str) -> Optional[FeatureGroupEncoder]:
    """Encoder of the ``group`` ("context" or "item") features into one token, or None without features."""
    features = [f for f in config.features if f.group == group]
    categorical = [{"name": f.name, "vocabulary": statistics.vocabularies[f.name], "num_oov": f.num_oov,
                    "embedding_dim": f.embedding_dim or config.model.embedding_dim}
                   for f in features if f.kind in ("categorical", "item_id")]
    numerical = [{"name": f.name, "mean": statistics.moments[f.name][0], "variance": statistics.moments[f.name][1]}
                 for f in features if f.kind == "numerical"]
    vectors = [{"name": f.name, "dim": f.dim} for f in features if f.kind == "embedding"]
    if not (categorical or numerical or vectors):
        return None
    return FeatureGroupEncoder(categorical, numerical, vectors, config.model.d_model, name=f"{group}_encoder")


def build_sequence_encoder(config: ExperimentConfig, statistics: FeatureStatistics,
                           with_candidate: bool) -> Optional[SequenceEncoder]:
    """Encoder of every ``sequence`` feature into one token (target attention needs an item candidate)."""
    m = config.model
    sequences = [{"name": f.name, "vocabulary": statistics.vocabularies[f.name], "num_oov": f.num_oov,
                  "max_length": f.max_length} for f in config.features if f.kind == "sequence"]
    if not sequences:
        return None
    return SequenceEncoder(sequences, m.d_model, num_blocks=m.sequence_blocks, num_heads=m.num_heads,
                           dropout=m.dropout, target_attention=m.target_attention and with_candidate,
                           name="sequence_encoder")


def build_text_encoder(text: TextEncoderConfig, vocabulary: Optional[List[str]], max_tokens: int,
                       output_dim: int) -> tf.keras.layers.Layer:
    """Raw strings [B] -> [B, output_dim]: a WordPiece + transformer :class:`SearchQueryEncoder` over the
    training split's ``vocabulary``, or a :class:`HubTextEncoder` over ``text.handle`` (TF Hub or SavedModel)."""
    if text.type == "hub":
        if not text.handle:
            raise ConfigError("model.text_encoder.handle: required when model.text_encoder.type is 'hub'")
        return HubTextEncoder(text.handle, output_dim=output_dim, trainable=text.trainable)
    if not vocabulary:
        raise ConfigError("model.text_encoder: type 'transformer' needs a WordPiece vocabulary learned from the "
                          "training text (build_wordpiece_vocabulary), got none")
    if output_dim % text.num_heads:
        raise ConfigError(f"model.text_encoder.num_heads: {text.num_heads} does not divide the text encoder "
                          f"width {output_dim}")
    return SearchQueryEncoder(vocabulary, max_tokens=max_tokens, output_dim=output_dim,
                              num_layers=text.num_layers, num_heads=text.num_heads)


def router_class(m: ModelConfig) -> Type[Router]:
    """The router class ``model.routing`` names (any strategy registered in :data:`grec_tf.layers.ROUTERS`),
    after checking that ``route_embedding_dim`` and ``capacity_factor`` apply to it; builds nothing."""
    if m.routing not in ROUTERS:
        raise ConfigError(f"model.routing: expected one of {sorted(ROUTERS)}, got {m.routing!r}")
    cls = ROUTERS[m.routing]
    if m.route_embedding_dim is not None and not cls.routes_by_task:
        raise ConfigError(f"model.route_embedding_dim: applies only to routings that route by task, not to "
                          f"{m.routing!r}")
    if m.capacity_factor > 0 and not cls.supports_capacity:
        raise ConfigError(f"model.capacity_factor: expert capacity does not apply to routing {m.routing!r} "
                          f"(it routes every row of a task sentence alike); expected 0, got {m.capacity_factor}")
    return cls


def build_router(m: ModelConfig, num_flow_ids: int, num_use_case_ids: int) -> Router:
    """The router ``model.routing`` names, with the route vocabularies when it routes by task."""
    cls = router_class(m)
    kwargs = dict(num_experts=m.num_experts, top_k=m.top_k, load_balance_weight=m.load_balance_weight,
                  z_loss_weight=m.z_loss_weight, jitter=m.jitter)
    if cls.routes_by_task:
        kwargs.update(num_flows=num_flow_ids, num_use_cases=num_use_case_ids,
                      route_embedding_dim=m.route_embedding_dim or ROUTE_EMBEDDING_DIM_DEFAULT)
    return cls(**kwargs, name=f"{m.routing}_router")


def build_bottom(m: ModelConfig, num_flow_ids: int, num_use_case_ids: int, num_towers: int) -> tf.keras.layers.Layer:
    """The shared bottom ``model.type`` names: GRec's routed sparse MoE, MMoE or shared-bottom."""
    if m.type == "grec":
        key_dim = max(m.d_model // m.num_heads, 8)
        moe = SparseMoE(experts=FeedForwardExperts(m.num_experts, m.expert_hidden, activation=m.activation,
                                                   name="experts"),
                        router=build_router(m, num_flow_ids, num_use_case_ids),
                        capacity_factor=m.capacity_factor, name="sparse_moe")
        mixer = ParallelTransformerBlock(num_heads=m.num_heads, key_dim=key_dim, mlp_dim=2 * m.d_model,
                                         dropout=m.dropout, name="token_mixer")
        pool = MultiQueryAttention(num_heads=m.num_heads, key_dim=key_dim, name="attention_pool")
        return SparseMoEBottom(mixer, moe, pool, name="grec_bottom")
    if m.type == "mmoe":
        return MMoEBottom(m.num_experts, num_towers, m.expert_hidden, m.d_model, name="mmoe_bottom")
    if m.type == "shared_bottom":
        return SharedBottom(m.expert_hidden, m.d_model, name="shared_bottom")
    raise ConfigError(f"model.type: no model is built for {m.type!r}")


def validate_model_config(config: ExperimentConfig) -> None:
    """Checks the model keys that only the model side can check (the routing's name and what applies to it)
    without building anything, so a pipeline can fail before it loads data."""
    if config.model.type == "grec":
        router_class(config.model)


__all__ = ["build_ranker", "build_bottom", "build_router", "router_class", "build_group_encoder", "build_sequence_encoder",
           "build_text_encoder", "validate_model_config"]

