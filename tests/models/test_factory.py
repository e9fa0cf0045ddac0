"""build_ranker, the one bridge from config to model: routing plug-ins, and errors that name the key."""
import numpy as np
import pytest
import tensorflow as tf

import grec_tf  # noqa: F401
from grec_tf.data.feature_statistics import compute_feature_statistics
from grec_tf.errors import ConfigError
from grec_tf.experiment import Experiment
from grec_tf.layers import ROUTERS, Router
from grec_tf.layers.routers.base import register_router
from grec_tf.layers.routers.task_id_router import TaskIdRouter
from grec_tf.models.factory import build_ranker
from tests.tiny_experiment import tiny_config, tiny_frame


class FirstTokenRouter(Router):
    """A fifth strategy, written the way a user would: each example is routed on its first token only."""

    def gate_input(self, x, flow_id=None, use_case_id=None):
        return tf.cast(x[:, :1, :], tf.float32)


class FlowRouter(TaskIdRouter):
    """A task routing keyed by the flow alone (no capacity, like every task routing)."""

    def build(self, input_shape):
        super().build(input_shape)
        self.flow_embedding = self.add_embedding("flow_embedding", self.num_flows)

    def route_gate_input(self, route_ids):
        return tf.gather(self.flow_embedding, route_ids // self.num_use_cases)


@pytest.fixture(scope="module", autouse=True)
def plug_ins():
    for name, cls in (("test_first_token", FirstTokenRouter), ("test_flow", FlowRouter)):
        register_router(name)(cls)
    yield
    for name in ("test_first_token", "test_flow"):
        ROUTERS.pop(name, None)


@pytest.fixture(scope="module")
def frame():
    return tiny_frame(384, seed=4)


def test_a_registered_router_is_selected_by_name_and_trains(frame):
    config = tiny_config(routing="test_first_token")
    model = Experiment(config, statistics=compute_feature_statistics(frame, config)).build_model()
    assert type(model.bottom.moe.router) is FirstTokenRouter
    from grec_tf.data.dataset import make_dataset
    from grec_tf.data.feature_arrays import frame_to_arrays

    before = [w.numpy().copy() for w in model.bottom.moe.router.trainable_weights]
    history = model.fit(make_dataset(frame_to_arrays(frame, config), 64), epochs=1, verbose=0)
    assert np.isfinite(history.history["total_loss"][0])
    assert any(not np.allclose(a, b.numpy()) for a, b in zip(before, model.bottom.moe.router.trainable_weights))


def test_task_routers_get_the_route_vocabularies_and_default_embedding_width(frame):
    config = tiny_config(routing="task_sentence")
    model = build_ranker(config, compute_feature_statistics(frame, config))
    router = model.bottom.moe.router
    assert (router.num_flows, router.num_use_cases) == (len(config.data.flows) + 1, len(config.data.use_cases) + 1)
    assert router.route_embedding_dim == 16
    wide = build_ranker(tiny_config(routing="task", route_embedding_dim=5), compute_feature_statistics(frame, config))
    assert wide.bottom.moe.router.route_embedding_dim == 5


def test_unknown_routing_names_the_key_and_the_registered_routers(frame):
    with pytest.raises(ConfigError, match=r"model.routing: expected one of \[.*'task_sentence'.*\], got 'random'"):
        Experiment(tiny_config(routing="random"))


def test_capacity_with_a_plug_in_task_routing_names_the_key():
    with pytest.raises(ConfigError, match="model.capacity_factor: expert capacity does not apply to routing "
                                          "'test_flow'"):
        Experiment(tiny_config(routing="test_flow", capacity_factor=1.5))


def test_expert_activation_reaches_the_experts(frame):
    config = tiny_config(activation="relu")
    model = build_ranker(config, compute_feature_statistics(frame, config))
    assert model.bottom.moe.experts.activation == "relu"
