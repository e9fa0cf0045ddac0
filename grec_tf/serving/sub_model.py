"""Per-task-sentence sub-models: a trained GRec model cut down to the experts and towers a few task sentences use.

With a task or task-sentence routing, every row of a task sentence (flow, use case) takes the same route: k of
the E experts with fixed gate weights. A deployment that serves only some task sentences needs only the union
of their routes' experts and their towers (Task-MoE's "extract smaller, ready-to-deploy sub-networks"):

    sub = build_sub_model(model, config, ["AAL/CVR", "EUP/CVR"])
    export_sub_model(model, config, ["AAL/CVR", "EUP/CVR"], "exports")       # or Experiment.export(...)

The sub-model is a :class:`SubModelRanker` whose bottom holds the kept experts (in their original order, so
each row sums its experts' outputs in the same order as the full model) behind a
:class:`~grec_tf.layers.routers.FrozenRouteRouter` (the routes as constants: no router weights), whose towers
are only the kept ones (:class:`KeptTowers`), and whose every other part (task embedding, encoders, token
mixer, attention pool) is the full model's own layer. When the kept task sentences share one route (e.g. one
task sentence), the MoE is a :class:`SingleRouteMoE`: its k experts run on the whole batch, with no dispatch
left to pay. On rows of the kept task sentences the sub-model computes what the full model computes; a row of any other (flow, use case), an unknown flow included, fails with an
InvalidArgumentError naming the kept ones (HTTP 400 from the REST server).

Token and sentence routings route by the row's features (the experts a task sentence uses depend on the
request), and MMoE / shared-bottom use every expert for every task: none of them has a sub-model.
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence, Tuple, Union

import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from grec_tf.config import TASK_ROUTINGS, ExperimentConfig
from grec_tf.data.input_specs import placeholder_batch
from grec_tf.errors import ConfigError
from grec_tf.layers import FeedForwardExperts, SparseMoE
from grec_tf.layers.routers import FrozenRouteRouter, frozen_routes
from grec_tf.models.bottoms import SparseMoEBottom
from grec_tf.models.multi_task_ranker import MultiTaskRanker, task_sentences_per_use_case
from grec_tf.models.multi_task_towers import GatheredOwnTower, MultiTaskTowers
from grec_tf.serving.signatures import save_serving_model
from grec_tf.serving.versioned_export import export_saved_model

TaskSentences = Union[str, Sequence[str]]


def parse_task_sentences(config: ExperimentConfig, task_sentences: TaskSentences) -> List[Tuple[str, str]]:
    """(flow, use case) pairs of "FLOW/USE_CASE" names (a list, or one comma-separated string), in the given
    order without repeats. Raises ConfigError naming a name that is not a configured task sentence."""
    if isinstance(task_sentences, str):
        task_sentences = task_sentences.split(",")
    configured = {f"{flow}/{use_case}": (flow, use_case)
                  for flow in config.data.flows for use_case in config.data.use_cases}
    names = list(dict.fromkeys(name.strip() for name in task_sentences))
    if not names or "" in names:
        raise ConfigError(f"task_sentences: expected one or more FLOW/USE_CASE names, got {list(task_sentences)!r}")
    unknown = [name for name in names if name not in configured]
    if unknown:
        raise ConfigError(f"task_sentences: {', '.join(map(repr, unknown))} is not a task sentence of this model; "
                          f"configured (data.flows x data.use_cases): {', '.join(configured)}")
    return [configured[name] for name in names]


def check_extractable(config: ExperimentConfig) -> None:
    """ConfigError saying why, unless the model's route is a constant per task sentence (GRec, task routing)."""
    m = config.model
    if m.type != "grec":
        raise ConfigError(f"model.type: a sub-model needs GRec's routed sparse MoE; {m.type!r} "
                          f"{'mixes all E experts for every task' if m.type == 'mmoe' else 'has no experts'}, "
                          f"so every expert is used by every task sentence and there is nothing to leave out")
    if m.routing not in TASK_ROUTINGS:
        raise ConfigError(f"model.routing: {m.routing!r} routes each {'token' if m.routing == 'token' else 'row'} "
                          f"by its features, so the experts a task sentence uses depend on the request; only "
                          f"{' and '.join(TASK_ROUTINGS)} routing fix one route per task sentence")


def served_use_cases(config: ExperimentConfig, pairs: Sequence[Tuple[str, str]]) -> List[str]:
    """The use cases of ``pairs`` in config order: the columns of a sub-model's ``score_all``."""
    kept = {use_case for _, use_case in pairs}
    return [use_case for use_case in config.data.use_cases if use_case in kept]


@tf.keras.utils.register_keras_serializable(package="grec_tf")
class KeptTowers(GatheredOwnTower, tf.keras.layers.Layer):
    """Some towers of a :class:`MultiTaskTowers`, in the full model's tower numbering.

    Args:
      towers: the kept towers, T' of them.
      tower_ids: the full model's index of each (T' distinct ids < num_towers).
      num_towers: T, the full model's tower count (the index space of ``tower_index``).

    Call: x [B, H] -> logits [B, T] float32: column ``tower_ids[j]`` is kept tower j, the others are NaN
    (not computed); with ``tower`` [B] the logits [B] of each row's own column.
    """

    def __init__(self, towers: MultiTaskTowers, tower_ids: Sequence[int], num_towers: int, **kwargs):
        super().__init__(**kwargs)
        self.towers, self.tower_ids, self.num_towers = towers, [int(t) for t in tower_ids], int(num_towers)
        if towers.num_towers != len(self.tower_ids) or not all(0 <= t < self.num_towers for t in self.tower_ids):
            raise ValueError(f"KeptTowers: need one id in [0, {self.num_towers}) per kept tower "
                             f"({towers.num_towers}), got tower_ids={self.tower_ids}")

    def every_tower(self, x: tf.Tensor) -> tf.Tensor:
        kept = self.towers(x)  # [B, T']
        padded = tf.concat([kept, tf.fill([tf.shape(kept)[0], 1], float("nan"))], axis=1)
        columns = [self.tower_ids.index(t) if t in self.tower_ids else len(self.tower_ids)
                   for t in range(self.num_towers)]
        return tf.gather(padded, columns, axis=1)

    def get_config(self) -> Dict:
        return {**super().get_config(), "towers": tf.keras.layers.serialize(self.towers),
                "tower_ids": self.tower_ids, "num_towers": self.num_towers}

    @classmethod
    def from_config(cls, config: Dict) -> "KeptTowers":
        return cls(**{**config, "towers": tf.keras.layers.deserialize(config["towers"])})


@tf.keras.utils.register_keras_serializable(package="grec_tf")
class SubModelRanker(MultiTaskRanker):
    """A :class:`MultiTaskRanker` restricted to ``task_sentences``, (flow, use case) pairs: a row of any other
    (flow, use case) fails with InvalidArgumentError naming them. Built by :func:`build_sub_model`."""

    def __init__(self, *args, task_sentences: Sequence[Sequence[str]] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.task_sentences = [[str(flow), str(use_case)] for flow, use_case in task_sentences]

    @property
    def names(self) -> List[str]:
        """The served task sentences as "FLOW/USE_CASE"."""
        return [f"{flow}/{use_case}" for flow, use_case in self.task_sentences]

    def call(self, features: Dict[str, tf.Tensor], training=None, score_use_cases: Optional[tf.Tensor] = None,
             every_tower: bool = False) -> Dict[str, tf.Tensor]:
        flow, use_case = ((features["flow"], features["use_case"]) if score_use_cases is None
                          else task_sentences_per_use_case(features["flow"], score_use_cases))
        flows, use_cases = zip(*self.task_sentences)
        served = tf.reduce_any(tf.logical_and(tf.equal(flow[:, None], tf.constant(flows)[None, :]),
                                              tf.equal(use_case[:, None], tf.constant(use_cases)[None, :])),
                               axis=1)  # [B] (or [B * U] rows scored)
        # The names of the refused rows are computed only when there are some.
        check = tf.cond(tf.reduce_all(served), lambda: tf.constant(True),
                        lambda: self._refuse(flow, use_case, served))
        with tf.control_dependencies([check]):
            features = {**features, "flow": tf.identity(features["flow"])}
        return super().call(features, training=training, score_use_cases=score_use_cases, every_tower=every_tower)

    def _refuse(self, flow: tf.Tensor, use_case: tf.Tensor, served: tf.Tensor) -> tf.Tensor:
        asked = tf.unique(tf.boolean_mask(tf.strings.join([flow, use_case], separator="/"), ~served)).y
        failed = tf.debugging.Assert(False, [
            f"this sub-model serves only the task sentences {', '.join(self.names)} (flow/use_case); "
            f"rows asked for:", asked], summarize=8)
        with tf.control_dependencies([failed]):
            return tf.constant(False)

    def get_config(self) -> Dict:
        return {**super().get_config(), "task_sentences": [list(pair) for pair in self.task_sentences]}


@tf.keras.utils.register_keras_serializable(package="grec_tf")
class SingleRouteMoE(SparseMoE):
    """A :class:`SparseMoE` whose :class:`FrozenRouteRouter` holds one route (one task sentence, or several
    routed alike) over exactly its k experts: every row runs every expert, so each runs once on the whole batch,
    with no dispatch (no partition, gather or segment sum). Each row's result is the dispatched one: every
    expert's output times the row's gate, summed in expert order.

    Shapes as :class:`SparseMoE`: x [B, S, D] -> y [B, S, D] (and dispatch [B, E], all ones).
    """

    def __init__(self, experts: FeedForwardExperts, router: FrozenRouteRouter, **kwargs):
        super().__init__(experts, router, **kwargs)
        if not router.has_one_route or router.top_k != experts.num_experts:
            raise ValueError(f"SingleRouteMoE: needs one frozen route over all of its {experts.num_experts} "
                             f"experts, got routes {router.route_experts} with top_k={router.top_k}")

    def _call_by_route(self, x, flow_id, use_case_id, training):
        route_ids = self.router.route_ids(flow_id, use_case_id)
        gates, _ = self.router(self.router.route_gate_input(route_ids))  # [B, k]; refuses other task ids
        slot = {expert: j for j, expert in enumerate(self.router.route_experts[0])}
        batch, tokens, width = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
        rows = tf.reshape(x, [-1, width])  # [B * S, D]
        kernel_in, bias_in, kernel_out, bias_out = self.experts.weights_as(x.dtype)
        y = None
        for e in range(self.num_experts):
            hidden = self.experts.activation_fn(tf.matmul(rows, kernel_in[e]) + bias_in[e])
            out = tf.reshape(tf.matmul(hidden, kernel_out[e]) + bias_out[e], [batch, tokens * width])
            out = out * tf.cast(gates[:, slot[e]], x.dtype)[:, tf.newaxis]
            y = out if y is None else y + out
        return tf.reshape(y, tf.shape(x)), tf.ones([batch, self.num_experts], tf.float32)


def build_sub_model(model: MultiTaskRanker, config: ExperimentConfig,
                    task_sentences: TaskSentences) -> SubModelRanker:
    """The built sub-model of a trained GRec ``model`` for ``task_sentences`` ("FLOW/USE_CASE" names): the
    union of their routes' experts behind their frozen routes, their towers, the full model's other layers.
    Raises ConfigError for a routing or model type without a sub-model, or for an unknown task sentence."""
    check_extractable(config)
    pairs = parse_task_sentences(config, task_sentences)
    bottom = model.bottom
    if isinstance(model, SubModelRanker):
        raise ValueError(f"build_sub_model: the model is already a sub-model (of {', '.join(model.names)});"
                         f" cut the full model instead")
    if not isinstance(bottom, SparseMoEBottom) or not bottom.moe.router.routes_by_task:
        raise ValueError(f"build_sub_model: the model's bottom is {type(bottom).__name__} with router "
                         f"{type(getattr(getattr(bottom, 'moe', None), 'router', None)).__name__}; expected a "
                         f"SparseMoEBottom routed by task (config.model does not describe this model)")
    names = [f"{flow}/{use_case}" for flow, use_case in pairs]
    flow_id, use_case_id, _ = model.task_embedding(tf.constant([f for f, _ in pairs]),
                                                   tf.constant([u for _, u in pairs]))
    route_ids = bottom.moe.router.route_ids(flow_id, use_case_id).numpy().tolist()
    tower_ids = sorted(set(model.tower_index(flow_id, use_case_id).numpy().tolist()))
    route_experts, route_gates = frozen_routes(bottom.moe.router, route_ids)
    kept_experts = sorted({e for experts in route_experts for e in experts})
    router = FrozenRouteRouter(
        len(kept_experts), bottom.moe.top_k, bottom.moe.router.num_flows, bottom.moe.router.num_use_cases,
        task_ids=route_ids, route_experts=[[kept_experts.index(e) for e in row] for row in route_experts],
        route_gates=route_gates, task_sentences=names, name="frozen_route_router")
    sub = SubModelRanker(**_sub_model_parts(model, router, kept_experts, tower_ids), task_sentences=pairs,
                         tower_key=model.tower_key, loss_weights=model.loss_weights, name=model.name,
                         dtype=model.dtype_policy)
    sub(_batch_of(config, pairs), training=False)  # creates the new variables before they are filled
    _copy_weights(model, sub, kept_experts, tower_ids)
    return sub


def _sub_model_parts(model: MultiTaskRanker, router: FrozenRouteRouter, kept_experts: List[int],
                     tower_ids: List[int]) -> Dict:
    """The constructor arguments of the sub-model: new bottom MoE and towers, the full model's other layers."""
    bottom, moe = model.bottom, model.bottom.moe
    experts = FeedForwardExperts.from_config({**moe.experts.get_config(), "num_experts": len(kept_experts)})
    sub_moe = (SingleRouteMoE if router.has_one_route else SparseMoE)(experts, router, name=moe.name,
                                                                      dtype=moe.dtype_policy)
    towers = MultiTaskTowers.from_config({**model.towers.get_config(), "num_towers": len(tower_ids)})
    parts = {name: getattr(model, name) for name in MultiTaskRanker._PARTS}
    return {**parts, "text_encoders": model.text_encoders,
            "bottom": SparseMoEBottom(bottom.mixer, sub_moe, bottom.pool_attention, name=bottom.name,
                                      dtype=bottom.dtype_policy),
            "towers": KeptTowers(towers, tower_ids, model.towers.num_towers, name=model.towers.name,
                                 dtype=model.towers.dtype_policy)}


def _batch_of(config: ExperimentConfig, pairs: Sequence[Tuple[str, str]]) -> Dict[str, tf.Tensor]:
    """A placeholder batch with one row per kept task sentence (other task sentences fail in the sub-model)."""
    batch = placeholder_batch(config, rows=len(pairs))
    batch["flow"] = tf.constant([flow for flow, _ in pairs])
    batch["use_case"] = tf.constant([use_case for _, use_case in pairs])
    return batch


def _copy_weights(model: MultiTaskRanker, sub: SubModelRanker, kept_experts: List[int],
                  tower_ids: List[int]) -> None:
    """The kept experts' and towers' rows of the full model's stacked weights, and the pool query."""
    full_experts, sub_experts = model.bottom.moe.experts, sub.bottom.moe.experts
    for name in ("kernel_in", "bias_in", "kernel_out", "bias_out"):
        getattr(sub_experts, name).assign(tf.gather(getattr(full_experts, name), kept_experts))
    full_towers, sub_towers = model.towers, sub.towers.towers
    for full, kept in zip(full_towers.kernels + full_towers.biases, sub_towers.kernels + sub_towers.biases):
        kept.assign(tf.gather(full, tower_ids))
    sub.bottom.pool_query.assign(model.bottom.pool_query)


def export_sub_model(model: MultiTaskRanker, config: ExperimentConfig, task_sentences: TaskSentences,
                     export_dir: str, version: Optional[int] = None) -> str:
    """Exports the sub-model of ``task_sentences`` like :func:`~grec_tf.serving.signatures.export_model` (same
    model name, signatures and inputs; ``score_all`` scores the kept task sentences' use cases); returns the
    version folder."""
    sub = build_sub_model(model, config, task_sentences)
    use_cases = served_use_cases(config, parse_task_sentences(config, task_sentences))
    return export_saved_model(lambda path: save_serving_model(sub, config, path, use_cases=use_cases), export_dir,
                              config.model_name, version)


def saved_model_sizes(path: str) -> Dict[str, int]:
    """What a SavedModel folder holds: ``params`` (values of its trainable variables, the model's weights),
    ``expert_params`` (those of its sparse-MoE experts), ``other_values`` (values of the other variables, e.g.
    optimizer slots and metric state) and ``bytes`` (every file of the folder)."""
    saved = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as handle:
        saved.ParseFromString(handle.read())
    sizes = {"params": 0, "expert_params": 0, "other_values": 0}
    for node in saved.meta_graphs[0].object_graph_def.nodes:
        if node.WhichOneof("kind") != "variable":
            continue
        values = 1
        for dim in node.variable.shape.dim:
            values *= dim.size
        sizes["params" if node.variable.trainable else "other_values"] += values
        if node.variable.trainable and "experts" in node.variable.name.split("/")[:-1]:
            sizes["expert_params"] += values
    sizes["bytes"] = sum(os.path.getsize(os.path.join(root, name))
                         for root, _, files in os.walk(path) for name in files)
    return sizes


def sub_model_sizes(full_dir: str, sub_dir: str) -> Dict[str, Dict[str, float]]:
    """``{"full": sizes, "sub": sizes, "ratio": sub / full}`` of two SavedModel folders (see
    :func:`saved_model_sizes`); a one-task-sentence sub-model's ``ratio["expert_params"]`` is k / E."""
    full, sub = saved_model_sizes(full_dir), saved_model_sizes(sub_dir)
    return {"full": full, "sub": sub, "ratio": {key: sub[key] / full[key] if full[key] else float("nan")
                                                for key in full}}
