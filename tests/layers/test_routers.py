"""Routers as components: the registry, argument validation, and a new strategy plugged in from outside."""
import grec_tf  # noqa: F401
import numpy as np
import pytest
import tensorflow as tf

from grec_tf.layers import (ROUTERS, FeedForwardExperts, Router, SentenceRouter, SparseMoE, TaskRouter,
                            TaskSentenceRouter, TokenRouter, dense_moe_reference, make_router, register_router)
from grec_tf.layers.routers import TaskIdRouter

B, S, D, F, E = 20, 3, 8, 16, 5
FLOWS, USE_CASES = 3, 2


def _inputs(batch=B):
    rng = np.random.default_rng(0)
    return (tf.constant(rng.standard_normal((batch, S, D)), tf.float32),
            tf.constant(rng.integers(0, FLOWS, batch), tf.int32), tf.constant(rng.integers(0, USE_CASES, batch)))


def test_registry_holds_the_four_strategies_in_order():
    assert ROUTERS == {"token": TokenRouter, "sentence": SentenceRouter, "task": TaskRouter,
                       "task_sentence": TaskSentenceRouter}
    assert list(ROUTERS) == ["token", "sentence", "task", "task_sentence"]  # the benchmark reports in this order
    assert [cls.routing for cls in ROUTERS.values()] == list(ROUTERS)
    assert [cls.routes_by_task for cls in ROUTERS.values()] == [False, False, True, True]
    assert [cls.supports_capacity for cls in ROUTERS.values()] == [True, True, False, False]
    for cls in ROUTERS.values():
        assert tf.keras.utils.get_registered_name(cls) == f"grec_tf>{cls.__name__}"


def test_make_router_builds_the_named_router_and_names_unknown_ones():
    router = make_router("task_sentence", num_experts=8, top_k=4, num_flows=4, num_use_cases=5,
                         route_embedding_dim=16, jitter=0.1)
    assert isinstance(router, TaskSentenceRouter)
    assert (router.num_experts, router.top_k, router.num_flows, router.num_use_cases, router.route_embedding_dim,
            router.jitter) == (8, 4, 4, 5, 16, 0.1)
    # The task vocabulary is dropped for routers that do not read it: one call serves every routing.
    token = make_router("token", num_experts=8, top_k=2, num_flows=4, num_use_cases=5, route_embedding_dim=16)
    assert isinstance(token, TokenRouter) and not hasattr(token, "num_flows")
    with pytest.raises(TypeError):
        make_router("token", num_experts=8, top_k=2, no_such_argument=1)
    with pytest.raises(ValueError, match=r"'expert_choice'.*token, sentence, task, task_sentence"):
        make_router("expert_choice", num_experts=8, top_k=2)


def test_router_arguments_are_validated_at_construction():
    with pytest.raises(ValueError, match="top_k"):
        TokenRouter(4, 5)
    with pytest.raises(ValueError, match="top_k"):
        SentenceRouter(4, 0)
    with pytest.raises(ValueError, match="router math is float32.*'mixed_bfloat16'"):
        TokenRouter(4, 2, dtype="mixed_bfloat16")
    assert TokenRouter(4, 2, dtype=tf.float32).dtype == "float32"
    with pytest.raises(ValueError, match="jitter"):
        TokenRouter(4, 2, jitter=1.0)
    with pytest.raises(ValueError, match="load_balance_weight"):
        TokenRouter(4, 2, load_balance_weight=-0.1)
    with pytest.raises(ValueError, match=r"TaskRouter \(routing 'task'\).*num_flows=0"):
        TaskRouter(4, 2, num_flows=0, num_use_cases=2)
    with pytest.raises(ValueError, match="route_embedding_dim=0"):
        TaskSentenceRouter(4, 2, num_flows=2, num_use_cases=2, route_embedding_dim=0)
    with pytest.raises(ValueError, match="activation='no_such_activation'"):
        FeedForwardExperts(4, 8, activation="no_such_activation")
    with pytest.raises(ValueError, match="already registered to TokenRouter"):
        register_router("token")(type("OtherTokenRouter", (TokenRouter,), {}))


def test_sparse_moe_validates_its_components():
    with pytest.raises(ValueError, match=r"experts.num_experts=4 must equal router.num_experts=6"):
        SparseMoE(FeedForwardExperts(4, 8), TokenRouter(6, 2))
    with pytest.raises(ValueError, match="capacity_factor must be >= 0"):
        SparseMoE(FeedForwardExperts(4, 8), TokenRouter(4, 2), capacity_factor=-1.0)
    for routing in ("task", "task_sentence"):
        router = make_router(routing, num_experts=4, top_k=2, num_flows=2, num_use_cases=2)
        with pytest.raises(ValueError, match=rf"only to token/sentence routing, not to routing '{routing}'.*"
                                             r"property of its task, not of the load"):
            SparseMoE(FeedForwardExperts(4, 8), router, capacity_factor=1.5)
    x, _, _ = _inputs()
    with pytest.raises(ValueError, match="flow_id"):
        SparseMoE(FeedForwardExperts(4, 8), TaskSentenceRouter(4, 2, num_flows=2, num_use_cases=2))(x)


@pytest.mark.parametrize("routing", ["token", "sentence", "task", "task_sentence"])
def test_row_logits_are_the_routers_gate_per_row(routing):
    x, flow, use_case = _inputs()
    layer = SparseMoE(FeedForwardExperts(E, F), make_router(routing, num_experts=E, top_k=2, num_flows=FLOWS,
                                                            num_use_cases=USE_CASES))
    layer(x, flow, use_case)
    router = layer.router
    logits = router.row_logits(x, flow, use_case).numpy()
    if routing == "token":
        gate_input = x.numpy()
    elif routing == "sentence":
        gate_input = x.numpy().mean(1, keepdims=True)
    elif routing == "task":
        gate_input = router.task_embedding.numpy()[flow.numpy() * USE_CASES + use_case.numpy()][:, None]
    else:
        gate_input = 0.5 * (router.flow_embedding.numpy()[flow.numpy()]
                            + router.use_case_embedding.numpy()[use_case.numpy()])[:, None]
    np.testing.assert_allclose(logits, gate_input @ router.kernel.numpy(), atol=1e-5)
    assert logits.shape == (B, S if routing == "token" else 1, E)


class FirstTokenRouter(Router):
    """Toy strategy: each example is routed on its first token only (all its tokens follow)."""

    def gate_input(self, x, flow_id=None, use_case_id=None):
        return tf.cast(x[:, :1], tf.float32)


class FlowRouter(TaskIdRouter):
    """Toy strategy routing by task: the route is the flow alone, read from a learned flow embedding."""

    @property
    def num_routes(self):
        return self.num_flows

    def build(self, input_shape):
        super().build(input_shape)
        self.flow_embedding = self.add_embedding("flow_embedding", self.num_flows)

    def route_ids(self, flow_id, use_case_id):
        return tf.cast(tf.reshape(flow_id, [-1]), tf.int32)

    def route_gate_input(self, route_ids):
        return tf.gather(self.flow_embedding, route_ids)


@pytest.fixture
def toy_routers():
    """Registers the toy routers for one test, then leaves ROUTERS as it was."""
    registered = {name: register_router(name)(cls) for name, cls in
                  (("first_token", FirstTokenRouter), ("flow", FlowRouter))}
    yield registered
    for name in registered:
        ROUTERS.pop(name)


@pytest.mark.parametrize("routing", ["first_token", "flow"])
def test_a_new_router_plugs_in_without_library_changes(routing, toy_routers):
    x, flow, use_case = _inputs()
    tf.random.set_seed(2)
    router = make_router(routing, num_experts=E, top_k=2, num_flows=FLOWS, num_use_cases=USE_CASES)
    assert type(router) is toy_routers[routing] and router.routing == routing
    layer = SparseMoE(FeedForwardExperts(E, F), router)
    y, dispatch = layer(x, flow, use_case, return_routing=True)
    np.testing.assert_allclose(y.numpy(), dense_moe_reference(layer, x, flow, use_case).numpy(), atol=1e-5)
    np.testing.assert_allclose(dispatch.numpy().sum(-1), 2.0)
    assert len(layer.losses) == 2
    # Its decisions follow its own rule: first token only / flow only.
    perturbed = tf.concat([x[:, :1], 10.0 * tf.random.normal([B, S - 1, D])], axis=1)
    other_use_case = (use_case + 1) % USE_CASES
    _, same = layer(perturbed if routing == "first_token" else x, flow, other_use_case, return_routing=True)
    np.testing.assert_array_equal(same.numpy(), dispatch.numpy())
    clone = SparseMoE.from_config(layer.get_config())
    assert type(clone.router) is toy_routers[routing]
