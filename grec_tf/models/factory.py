"""The one bridge from an experiment's configuration to a model: :func:`build_ranker`.

Everything below this module takes plain, typed arguments or already-built layers; only here are config
keys read, and a value that cannot be honoured is reported with the key's path (``model.routing``...).
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Type

import numpy as np
import tensorflow as tf

from grec_tf.config import ROUTE_EMBEDDING_DIM_DEFAULT, ExperimentConfig, ModelConfig, TextEncoderConfig
from grec_tf.data.feature_statistics import FeatureStatistics, distinct_edges
from grec_tf.errors import ConfigError
from grec_tf.layers import (ROUTERS, FeedForwardExperts, MultiQueryAttention, ParallelTransformerBlock, Router,
                            SparseMoE)
from grec_tf.models.aitm_towers import AITMTowers
from grec_tf.models.bottoms import MMoEBottom, SharedBottom, SparseMoEBottom
from grec_tf.models.esmm_towers import ESMMTowers
from grec_tf.models.feature_group_encoder import FeatureGroupEncoder
from grec_tf.models.flow_task_embedding import FlowTaskEmbedding
from grec_tf.models.multi_task_ranker import MultiTaskRanker
from grec_tf.models.multi_task_towers import MultiTaskTowers
from grec_tf.models.ple import PLEBottom
from grec_tf.models.sequence_encoder import SequenceEncoder
from grec_tf.models.single_task_ranker import SingleTaskRanker, TaskSentenceNetworks
from grec_tf.models.task_sentence_embedding import TaskSentenceEmbedding
from grec_tf.models.wide_logits import WideLogits
from grec_tf.text import HubTextEncoder, SearchQueryEncoder

#: the roles of ``model.esmm``, in chain order: pCTCVR = pCTR x pCVR
ESMM_ROLES = ("ctr", "cvr", "ctcvr")

#: the model types whose towers are the use cases of one impression: their task token is the flow only
CHAINED_TYPES = ("esmm", "aitm")


def build_ranker(config: ExperimentConfig, statistics: FeatureStatistics) -> MultiTaskRanker:
    """The (uncompiled, unbuilt) model an experiment describes, with vocabularies and normalization from
    ``statistics`` (the training split's). Raises :class:`ConfigError` naming the key of a value that
    cannot be honoured."""
    m = config.model
    if m.type == "single_task":
        return build_single_task_ranker(config, statistics)
    if m.type in CHAINED_TYPES:
        task_embedding = FlowTaskEmbedding(config.data.flows, config.data.use_cases, m.d_model,
                                           name="task_sentence_embedding")
    else:
        task_embedding = TaskSentenceEmbedding(config.data.flows, config.data.use_cases, m.d_model,
                                               composition=m.task_token, name="task_sentence_embedding")
    num_flow_ids, num_use_case_ids = task_embedding.num_flow_ids, task_embedding.num_use_case_ids
    num_towers = num_use_case_ids if m.towers == "use_case" else num_flow_ids * num_use_case_ids
    item_encoder = build_group_encoder(config, statistics, "item")
    return MultiTaskRanker(
        task_embedding=task_embedding,
        bottom=build_bottom(m, num_flow_ids, num_use_case_ids, num_towers),
        towers=build_towers(m, config.data.use_cases, num_flow_ids),
        context_encoder=build_group_encoder(config, statistics, "context"),
        item_encoder=item_encoder,
        sequence_encoder=build_sequence_encoder(config, statistics, with_candidate=item_encoder is not None),
        text_encoders={f.name: build_text_encoder(m.text_encoder, statistics.text_vocabularies.get(f.name),
                                                  f.max_length, m.d_model)
                       for f in config.features if f.kind == "text"},
        tower_key=m.towers, loss_weights=loss_weights(m, config.data.use_cases),
        wide_logits=build_wide_logits(config, statistics, num_towers))


def build_wide_logits(config: ExperimentConfig, statistics: FeatureStatistics,
                      num_towers: int) -> Optional[WideLogits]:
    """``model.wide_logits``: the per-tower additive logit over the numericals' bins (raw units, the edges
    ``model.piecewise_linear_edges`` names) and the categorical and item ids; None when off or not applicable
    (chained towers) or without such features."""
    m = config.model
    if not m.wide_logits_applied:
        return None
    # distinct as the float32 values the layer computes with (two raw edges one float32 apart: an empty bin)
    numerical = [{"name": f.name, "edges": distinct_edges(piecewise_linear_raw_edges(
                     f.name, statistics, m.piecewise_linear_edges, reader="model.wide_logits"), np.float32)}
                 for f in config.features if f.kind == "numerical"]
    categorical = [{"name": f.name, "vocabulary": statistics.vocabularies[f.name], "num_oov": f.num_oov}
                   for f in config.features if f.kind in ("categorical", "item_id")]
    if not (numerical or categorical):
        return None
    return WideLogits(numerical, categorical, num_towers, name="wide_logits")


def build_single_task_ranker(config: ExperimentConfig, statistics: FeatureStatistics) -> SingleTaskRanker:
    """``single_task``: one shared_bottom ranker per task sentence (own encoders, MLP and tower), built from
    this config restricted to that flow and use case, behind one :class:`SingleTaskRanker`."""
    d, m = config.data, config.model
    networks = [build_ranker(dataclasses.replace(
        config, data=dataclasses.replace(d, flows=[flow], use_cases=[use_case]),
        model=dataclasses.replace(m, type="shared_bottom", towers="use_case", loss_weights={})), statistics)
        for flow in d.flows for use_case in d.use_cases]
    task_embedding = TaskSentenceEmbedding(d.flows, d.use_cases, m.d_model, name="task_sentence_embedding")
    return SingleTaskRanker(
        task_embedding=task_embedding, bottom=None,
        towers=TaskSentenceNetworks(networks, task_embedding.num_flow_ids, task_embedding.num_use_case_ids,
                                    name="task_sentence_networks"),
        tower_key="task_sentence", loss_weights=m.loss_weights)


def build_towers(m: ModelConfig, use_cases: List[str], num_flow_ids: int) -> tf.keras.layers.Layer:
    """The towers: plain MLP heads, or ESMM's / AITM's chained towers over the use cases ``model.esmm`` /
    ``model.aitm_chain`` name (one chain per flow when ``model.towers`` is task_sentence)."""
    num_use_case_ids = len(use_cases) + 1
    num_towers = num_use_case_ids if m.towers == "use_case" else num_flow_ids * num_use_case_ids
    groups = [0] if m.towers == "use_case" else [f * num_use_case_ids for f in range(num_flow_ids)]
    if m.type == "esmm":
        chain = [use_cases.index(name) + 1 for name in esmm_chain(m, use_cases)]
        return ESMMTowers(num_towers, m.tower_units, [[g + t for t in chain] for g in groups], name="towers")
    if m.type == "aitm":
        chain = [use_cases.index(name) + 1 for name in aitm_chain(m, use_cases)]
        return AITMTowers(num_towers, m.tower_units, [[g + t for t in chain] for g in groups],
                          calibration_weight=m.aitm_calibration_weight, name="towers")
    return MultiTaskTowers(num_towers, m.tower_units, name="towers")


def esmm_chain(m: ModelConfig, use_cases: List[str]) -> List[str]:
    """``[ctr, cvr, ctcvr]`` use-case names of ``model.esmm``, checked against ``data.use_cases``."""
    if sorted(m.esmm) != sorted(ESMM_ROLES):
        raise ConfigError(f"model.esmm: expected exactly the keys {list(ESMM_ROLES)}, got {sorted(m.esmm)}")
    for role in ESMM_ROLES:
        if m.esmm[role] not in use_cases:
            raise ConfigError(f"model.esmm.{role}: {m.esmm[role]!r} is not one of data.use_cases {use_cases}; "
                              f"esmm needs a click (ctr), post-click conversion (cvr) and click-and-conversion "
                              f"(ctcvr) use case")
    chain = [m.esmm[role] for role in ESMM_ROLES]
    if len(set(chain)) != len(chain):
        raise ConfigError(f"model.esmm: ctr, cvr and ctcvr must be three different use cases, got {m.esmm}")
    return chain


def aitm_chain(m: ModelConfig, use_cases: List[str]) -> List[str]:
    """``model.aitm_chain``, checked: at least two distinct ``data.use_cases``, and a tower hidden layer."""
    for i, name in enumerate(m.aitm_chain):
        if name not in use_cases:
            raise ConfigError(f"model.aitm_chain[{i}]: {name!r} is not one of data.use_cases {use_cases}")
    if len(m.aitm_chain) < 2 or len(set(m.aitm_chain)) != len(m.aitm_chain):
        raise ConfigError(f"model.aitm_chain: expected at least two different use cases in funnel order, got "
                          f"{m.aitm_chain}")
    if not m.tower_units:
        raise ConfigError("model.tower_units: aitm needs at least one hidden width (the tower representation "
                          "the information transfer attends over), got []")
    return list(m.aitm_chain)


def loss_weights(m: ModelConfig, use_cases: List[str]) -> Dict[str, float]:
    """``model.loss_weights``; under esmm the cvr use case weighs 0 unless named there (ESMM trains pCVR only
    through pCTCVR on the entire impression space)."""
    if m.type != "esmm":
        return dict(m.loss_weights)
    return {esmm_chain(m, use_cases)[1]: 0.0, **m.loss_weights}


def build_group_encoder(config: ExperimentConfig, statistics: FeatureStatistics,
                        group: str) -> Optional[FeatureGroupEncoder]:
    """Encoder of the ``group`` ("context" or "item") features into one token, or None without features."""
    features = [f for f in config.features if f.group == group]
    categorical = [{"name": f.name, "vocabulary": statistics.vocabularies[f.name], "num_oov": f.num_oov,
                    "embedding_dim": f.embedding_dim or config.model.embedding_dim}
                   for f in features if f.kind in ("categorical", "item_id")]
    numerical = [numerical_spec(f.name, statistics, config.model.numerical_embedding,
                                config.model.piecewise_linear_edges)
                 for f in features if f.kind == "numerical"]
    vectors = [{"name": f.name, "dim": f.dim} for f in features if f.kind == "embedding"]
    if not (categorical or numerical or vectors):
        return None
    return FeatureGroupEncoder(categorical, numerical, vectors, config.model.d_model,
                               numerical_embedding=config.model.numerical_embedding,
                               cross_layers=config.model.cross_layers, tokens=config.model.feature_tokens,
                               name=f"{group}_encoder")


def numerical_spec(name: str, statistics: FeatureStatistics, numerical_embedding: str,
                   piecewise_linear_edges: str = "quantile") -> Dict:
    """The encoder's spec of one numerical: its normalization moments and, for ``piecewise_linear``, its bin edges
    (the quantiles, or the tree edges for ``piecewise_linear_edges: tree``) mapped through the same normalization
    (Keras ``Normalization``: (x - mean) / max(std, 1e-7)), distinct as the float32 values the layer computes with."""
    mean, variance = statistics.moments[name]
    spec = {"name": name, "mean": mean, "variance": variance}
    if numerical_embedding == "piecewise_linear":
        scale = max(variance ** 0.5, 1e-7)
        raw = piecewise_linear_raw_edges(name, statistics, piecewise_linear_edges)
        spec["edges"] = distinct_edges([(edge - mean) / scale for edge in raw], np.float32)
    return spec


def piecewise_linear_raw_edges(name: str, statistics: FeatureStatistics, piecewise_linear_edges: str,
                               reader: str = "model.numerical_embedding: piecewise_linear") -> List[float]:
    """A numerical's bin edges in raw units, from the statistics ``model.piecewise_linear_edges`` names; a
    ConfigError names that key (tree edges) or the ``reader`` that asked for the quantiles."""
    key, kind, edges = (("model.piecewise_linear_edges: tree", "tree edges", statistics.tree_edges)
                        if piecewise_linear_edges == "tree" else (reader, "quantiles", statistics.quantiles))
    if name not in edges:
        raise ConfigError(f"{key} needs the {kind} of numerical {name!r}, which these feature statistics lack "
                          f"(saved before {kind} were computed: compute the statistics, or preprocess the folder, "
                          f"again)")
    return edges[name]


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
    """The shared bottom ``model.type`` names: GRec's routed sparse MoE, MMoE, PLE, or one shared MLP
    (shared_bottom, and esmm / aitm, whose difference from it is in the towers)."""
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
    if m.type == "ple":
        return PLEBottom(m.ple_levels, num_towers, m.task_experts, m.shared_experts, m.expert_hidden, m.d_model,
                         name="ple_bottom")
    if m.type in ("shared_bottom",) + CHAINED_TYPES:
        return SharedBottom(m.expert_hidden, m.d_model, name="shared_bottom")
    raise ConfigError(f"model.type: no model is built for {m.type!r}")


def validate_model_config(config: ExperimentConfig) -> None:
    """Checks the model keys that only the model side can check (the routing's name and what applies to it,
    the use cases of an esmm / aitm chain) without building anything, so a pipeline can fail before it loads data."""
    m, use_cases = config.model, config.data.use_cases
    if m.type == "grec":
        router_class(m)
    elif m.type == "esmm":
        esmm_chain(m, use_cases)
    elif m.type == "aitm":
        aitm_chain(m, use_cases)


__all__ = ["build_ranker", "build_single_task_ranker", "build_bottom", "build_towers", "build_router",
           "router_class", "build_group_encoder", "build_sequence_encoder", "build_text_encoder",
           "validate_model_config", "esmm_chain", "aitm_chain", "loss_weights"]
