"""Per-task-sentence sub-model export: the SavedModel of a few task sentences scores their rows exactly as the
full model does, holds only their experts (k/E of them for one task sentence) and towers, and refuses every
other (flow, use case) with a 400 naming the kept ones."""
import os

import numpy as np
import pytest
import tensorflow as tf

import grec_tf  # noqa: F401
from grec_tf.data.dataset import make_dataset
from grec_tf.data.feature_arrays import frame_to_arrays
from grec_tf.data.feature_statistics import compute_feature_statistics
from grec_tf.errors import ConfigError
from grec_tf.experiment import Experiment
from grec_tf.layers.routers import ROUTERS, FrozenRouteRouter
from grec_tf.serving.model_registry import ModelRegistry
from grec_tf.serving.rest_server import ServerThread
from grec_tf.serving.signatures import export_model
from grec_tf.serving.sub_model import (SingleRouteMoE, SubModelRanker, build_sub_model, saved_model_sizes,
                                      sub_model_sizes)
from grec_tf.training import run_folder
from pipelines import export as export_cli
from tests.serving.conftest import Client
from tests.tiny_experiment import tiny_config, tiny_frame

KEPT = ["AAL/CVR", "EUP/CVR"]
TRAIN = tiny_frame(256, seed=0)


def _experiment(**model) -> Experiment:
    config = tiny_config(**model)
    return Experiment(config, statistics=compute_feature_statistics(TRAIN, config))


def _inputs(config, task_sentences, rows: int = 64) -> dict:
    """Raw model inputs of the rows of ``task_sentences`` in a fresh tiny frame (numpy, strings as str)."""
    frame = tiny_frame(rows, seed=5)
    frame = frame[(frame.flow + "/" + frame.use_case).isin(task_sentences)].reset_index(drop=True)
    arrays = frame_to_arrays(frame, config, with_labels=False)
    return {k: v.astype(str) if v.dtype == object else v for k, v in arrays.items()}


def _tensors(inputs: dict) -> dict:
    return {k: tf.constant(v) for k, v in inputs.items()}


def _expert_params(model) -> int:
    return int(sum(np.prod(w.shape) for w in model.bottom.moe.experts.weights))


# Every pair of (routing, top_k, towers) values appears in one of these four models.
COMBINATIONS = [("task", 1, "use_case"), ("task", 2, "task_sentence"), ("task_sentence", 1, "task_sentence"),
                ("task_sentence", 2, "use_case")]


@pytest.mark.parametrize("routing,top_k,towers", COMBINATIONS)
def test_sub_model_saved_model_scores_its_task_sentences_like_the_full_model(tmp_path, routing, top_k, towers):
    experiment = _experiment(routing=routing, top_k=top_k, towers=towers)
    model = experiment.build_model()
    inputs = _inputs(experiment.config, KEPT)
    full = model(_tensors(inputs), training=False)
    path = experiment.export(model, str(tmp_path), task_sentences=KEPT)
    assert path == os.path.join(str(tmp_path), "grec", "1")

    loaded = tf.saved_model.load(path)
    served = loaded.signatures["serving_default"](**_tensors(inputs))["probability"].numpy()
    np.testing.assert_allclose(served, full["probability"].numpy(), rtol=0, atol=1e-6)
    scored = loaded.signatures["score_all"](**{k: v for k, v in _tensors(inputs).items() if k != "use_case"})
    assert scored["use_cases"].numpy().astype(str).tolist() == [["CVR"]] * len(served)  # the kept use cases
    np.testing.assert_allclose(scored["probabilities"].numpy()[:, 0], served, rtol=0, atol=1e-6)

    # The experts kept are exactly those the full model dispatched these rows to.
    used = np.flatnonzero(full["routing"].numpy().sum(axis=0))
    sizes = saved_model_sizes(path)
    assert sizes["expert_params"] * 4 == _expert_params(model) * len(used)
    tower_count = 1 if towers == "use_case" else 2  # the CVR tower, or the AAL/CVR and EUP/CVR towers
    sub = build_sub_model(model, experiment.config, KEPT)
    assert sub.towers.towers.num_towers == tower_count
    assert sub.bottom.moe.router.weights == []  # the routes are constants
    # two task sentences routed alike need no dispatch either
    assert isinstance(sub.bottom.moe, SingleRouteMoE) == sub.bottom.moe.router.has_one_route


@pytest.fixture(scope="module")
def one_task_sentence(tmp_path_factory):
    """A trained task-sentence-routed run (E=4, k=2), its full export and its AAL/CVR sub-model exported by
    ``pipelines.export``."""
    root = tmp_path_factory.mktemp("one")
    experiment = _experiment(routing="task_sentence", top_k=2)
    config, model = experiment.config, experiment.build_model()
    model.fit(make_dataset(frame_to_arrays(TRAIN, config), 64, shuffle=True, seed=0), epochs=1, verbose=0)
    run = str(root / "run")
    os.makedirs(run)
    run_folder.save_config(config, run)
    run_folder.save_statistics(experiment.statistics, run)
    model.save_weights(os.path.join(run, run_folder.FINAL_WEIGHTS))
    full_dir = export_model(model, config, str(root / "full"))
    sub_exports = str(root / "sub")
    assert export_cli.main(["--run", run, "--export_dir", sub_exports, "--task_sentences", "AAL/CVR"]) == 0
    return {"run": run, "model": model, "config": config, "full_dir": full_dir,
            "sub_exports": sub_exports, "sub_dir": os.path.join(sub_exports, "grec", "1")}


def test_one_task_sentence_holds_k_of_e_experts_and_fewer_parameters_and_bytes(one_task_sentence):
    sizes = sub_model_sizes(one_task_sentence["full_dir"], one_task_sentence["sub_dir"])
    assert sizes["full"]["expert_params"] == _expert_params(one_task_sentence["model"])
    assert sizes["ratio"]["expert_params"] == 2 / 4  # exactly k / E
    # what was left out: the other experts, the router's kernel and embeddings, the other towers
    assert sizes["full"]["params"] - sizes["sub"]["params"] > sizes["full"]["expert_params"] / 2
    assert sizes["sub"]["bytes"] < sizes["full"]["bytes"]
    # one route: its k experts run on the whole batch, without dispatch
    sub = build_sub_model(one_task_sentence["model"], one_task_sentence["config"], ["AAL/CVR"])
    assert isinstance(sub.bottom.moe, SingleRouteMoE) and sub.bottom.moe.num_experts == 2
    print("\nsub-model sizes (tiny, E=4, k=2, one task sentence):", sizes)


def _rows(inputs: dict) -> list:
    return [{k: v[i].tolist() for k, v in inputs.items()} for i in range(len(inputs["flow"]))]


def test_rest_server_serves_the_kept_task_sentence_and_refuses_the_others(one_task_sentence):
    config, model = one_task_sentence["config"], one_task_sentence["model"]
    registry = ModelRegistry("grec", os.path.join(one_task_sentence["sub_exports"], "grec"), poll_seconds=60)
    server = ServerThread(registry, port=0).start()
    try:
        client = Client(server.port)
        kept = _inputs(config, ["AAL/CVR"])
        expected = model(_tensors(kept), training=False)["probability"].numpy()
        status, body = client.post("/v1/models/grec:predict", {"instances": _rows(kept)})
        assert status == 200, body
        np.testing.assert_allclose(np.array(body["predictions"]), expected, rtol=0, atol=1e-6)
        columnar = {k: v.tolist() for k, v in kept.items() if k != "use_case"}
        status, body = client.post("/v1/models/grec:predict", {"signature_name": "score_all", "inputs": columnar})
        assert status == 200, body
        np.testing.assert_allclose(np.array(body["outputs"]["probabilities"])[:, 0], expected, rtol=0, atol=1e-6)

        for flow, use_case in [("AAL", "CTR"), ("EUP", "CVR"), ("never-seen-flow", "CVR")]:
            row = {**_rows(kept)[0], "flow": flow, "use_case": use_case}
            status, body = client.post("/v1/models/grec:predict", {"instances": [_rows(kept)[1], row]})
            assert status == 400, body
            assert "serves only the task sentences AAL/CVR" in body["error"] and f"{flow}/{use_case}" in body["error"]
        other_flow = {**columnar, "flow": ["EUP"] * len(columnar["flow"])}
        status, body = client.post("/v1/models/grec:predict", {"signature_name": "score_all", "inputs": other_flow})
        assert status == 400 and "EUP/CVR" in body["error"], body
    finally:
        server.stop()


def test_cli_names_an_unknown_task_sentence_and_the_configured_ones(one_task_sentence, tmp_path, capsys):
    code = export_cli.main(["--run", one_task_sentence["run"], "--export_dir", str(tmp_path),
                            "--task_sentences", "AAL/CVR,NSE/CVR"])
    assert code == 2
    error = capsys.readouterr().err
    assert "'NSE/CVR' is not a task sentence" in error
    assert "AAL/CTR, AAL/CVR, EUP/CTR, EUP/CVR" in error
    assert not os.path.exists(os.path.join(str(tmp_path), "grec"))


@pytest.mark.parametrize("model,why", [
    ({"routing": "token"}, "model.routing: 'token' routes each token by its features"),
    ({"routing": "sentence"}, "model.routing: 'sentence' routes each row by its features"),
    ({"type": "mmoe"}, "model.type: a sub-model needs GRec's routed sparse MoE; 'mmoe' mixes all E experts"),
    ({"type": "shared_bottom"}, "'shared_bottom' has no experts"),
])
def test_models_without_a_fixed_route_per_task_sentence_have_no_sub_model(tmp_path, model, why):
    experiment = _experiment(**model)
    full = experiment.build_model()
    with pytest.raises(ConfigError, match=why):
        experiment.export(full, str(tmp_path), task_sentences=["AAL/CVR"])
    assert not os.path.exists(os.path.join(str(tmp_path), experiment.config.model_name))


def test_task_sentences_are_checked_by_name():
    experiment = _experiment(routing="task")
    model = experiment.build_model()
    with pytest.raises(ConfigError, match=r"'AAL/XYZ' is not a task sentence.*AAL/CTR, AAL/CVR, EUP/CTR, EUP/CVR"):
        build_sub_model(model, experiment.config, "AAL/CVR,AAL/XYZ")
    with pytest.raises(ConfigError, match="expected one or more FLOW/USE_CASE names"):
        build_sub_model(model, experiment.config, [])
    sub = build_sub_model(model, experiment.config, "EUP/CTR, EUP/CTR")  # a comma-separated string; repeats once
    assert sub.names == ["EUP/CTR"]
    assert SubModelRanker.from_config(sub.get_config()).names == ["EUP/CTR"]  # serializable, every new layer
    with pytest.raises(ValueError, match="already a sub-model"):
        build_sub_model(sub, experiment.config, "EUP/CTR")


def test_frozen_route_router_is_not_a_training_strategy_and_round_trips():
    assert "frozen_route" not in ROUTERS
    router = FrozenRouteRouter(3, 2, num_flows=3, num_use_cases=3, task_ids=[4, 8], route_experts=[[2, 0], [1, 2]],
                               route_gates=[[0.75, 0.25], [0.5, 0.5]], task_sentences=["AAL/CTR", "EUP/CVR"])
    clone = FrozenRouteRouter.from_config(router.get_config())
    gates, experts = clone(clone.route_gate_input(tf.constant([8, 4, 8])))
    np.testing.assert_array_equal(experts.numpy(), [[1, 2], [2, 0], [1, 2]])
    np.testing.assert_array_equal(gates.numpy(), [[0.5, 0.5], [0.75, 0.25], [0.5, 0.5]])
    probs = tf.nn.softmax(clone.logits(clone.route_gate_input(tf.constant([4])))).numpy()
    np.testing.assert_allclose(probs, [[0.25, 0.0, 0.75]], atol=1e-7)  # the dense reference sees the same route
    with pytest.raises(tf.errors.InvalidArgumentError, match="routes only the task sentences AAL/CTR, EUP/CVR"):
        clone.route_gate_input(tf.constant([4, 5]))
    with pytest.raises(ValueError, match="route of EUP/CVR needs 2 distinct experts"):
        FrozenRouteRouter(3, 2, 3, 3, task_ids=[4, 8], route_experts=[[2, 0], [1, 1]],
                          route_gates=[[0.5, 0.5]] * 2, task_sentences=["AAL/CTR", "EUP/CVR"])
