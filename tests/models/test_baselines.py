"""The field's multi-task baselines: PLE, ESMM, AITM and single-task, behind the same inputs, loss and export
as GRec. Per-type tests shared with GRec, MMoE and shared-bottom are parametrized in test_multi_task_ranker.py."""
import dataclasses
import os

import numpy as np
import pytest
import tensorflow as tf

import grec_tf  # noqa: F401
from grec_tf.config import load_config
from grec_tf.data.dataset import make_dataset
from grec_tf.data.feature_arrays import IMPRESSION_KEY, frame_to_arrays
from grec_tf.data.feature_statistics import compute_feature_statistics
from grec_tf.errors import ConfigError
from grec_tf.experiment import Experiment
from grec_tf.metrics import roc_auc
from grec_tf.models import AITMTowers, InformationTransfer, PLEBottom, product_logit
from grec_tf.serving.model_registry import ModelRegistry
from grec_tf.serving.rest_server import ServerThread
from grec_tf.serving.signatures import export_model
from tests.serving.conftest import Client
from tests.tiny_experiment import tiny_config, tiny_frame

FUNNEL = ["CTR", "CVR", "CTCVR"]
NEW_TYPES = ["ple", "esmm", "aitm", "single_task"]
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def funnel_config(**model):
    """The tiny experiment with the use cases of ESMM's chain (CTR, CVR, CTCVR)."""
    config = tiny_config(**{"aitm_chain": ["CTR", "CTCVR"], **model})
    return dataclasses.replace(config, data=dataclasses.replace(config.data, use_cases=FUNNEL))


def funnel_frame(rows: int, seed: int):
    """The tiny planted frame, its rows spread over the three funnel use cases."""
    frame = tiny_frame(rows, seed=seed)
    frame["use_case"] = np.random.default_rng(seed).choice(FUNNEL, rows)
    return frame


def batch_of(frame, config):
    arrays = frame_to_arrays(frame, config)
    return {k: tf.constant(v.astype(str) if v.dtype == object else v) for k, v in arrays.items()}


def build(config, frame):
    return Experiment(config, statistics=compute_feature_statistics(frame, config)).build_model()


@pytest.fixture(scope="module")
def frame():
    return funnel_frame(512, seed=3)


# ---- PLE ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("levels", [1, 3])
def test_ple_shapes_and_gates_sum_to_one(levels):
    bottom = PLEBottom(levels, num_towers=3, task_experts=2, shared_experts=3, hidden_dim=8, output_dim=6)
    out, gates = bottom(tf.random.normal([5, 4, 7]))
    assert out.shape == (5, 3, 6) and gates.shape == (5, 3, 2 + 3) and gates.dtype == tf.float32
    np.testing.assert_allclose(gates.numpy().sum(-1), 1.0, atol=1e-6)
    assert len(bottom.levels) == levels and not hasattr(bottom.levels[-1], "shared_gate")
    middle, _ = bottom.levels[0](tf.random.normal([5, 28])) if levels > 1 else (None, None)
    assert levels == 1 or middle.shape == (5, 3 + 1, 6)  # the shared row feeds the next level


def test_ple_tower_reads_only_its_own_and_the_shared_experts():
    bottom = PLEBottom(1, num_towers=2, task_experts=1, shared_experts=1, hidden_dim=4, output_dim=3)
    x = tf.random.normal([3, 2, 5])
    with tf.GradientTape() as tape:
        out, _ = bottom(x)
        tower_0 = tf.reduce_sum(out[:, 0])
    level = bottom.levels[0]
    grad = tape.gradient(tower_0, level.task_w_in).numpy()
    assert np.abs(grad[0]).sum() > 0 and np.abs(grad[1]).sum() == 0


# ---- ESMM -----------------------------------------------------------------------------------------
def test_product_logit_is_the_product_and_finite_at_extremes():
    values = np.array([-1e4, -300.0, -40.0, -3.0, 0.0, 2.5, 40.0, 300.0, 1e4], np.float32)
    a, b = (tf.constant(v) for v in np.meshgrid(values, values))
    with tf.GradientTape() as tape:
        tape.watch([a, b])
        logit = product_logit(a, b)
    grads = tape.gradient(logit, [a, b])
    assert np.all(np.isfinite(logit.numpy())) and all(np.all(np.isfinite(g.numpy())) for g in grads)
    sigmoid = lambda x: 0.5 * (1 + np.tanh(0.5 * np.asarray(x, np.float64)))  # noqa: E731
    np.testing.assert_allclose(sigmoid(logit.numpy()), sigmoid(a.numpy()) * sigmoid(b.numpy()), atol=1e-6)
    # Both probabilities near 1: the product's logit is about min(a, b) - log 2, not inf.
    assert float(product_logit(tf.constant(300.0), tf.constant(300.0))) == pytest.approx(300 - np.log(2), rel=1e-4)


@pytest.mark.parametrize("towers", ["use_case", "task_sentence"])
def test_esmm_ctcvr_probability_is_ctr_times_cvr(frame, towers):
    config = funnel_config(type="esmm", towers=towers)
    model = build(config, frame)
    p = tf.sigmoid(model(batch_of(frame.iloc[:64], config), every_tower=True)["logits"]).numpy()
    groups = [0] if towers == "use_case" else [g * (len(FUNNEL) + 1) for g in range(len(config.data.flows) + 1)]
    for g in groups:  # columns: 0 unknown use case, then CTR, CVR, CTCVR
        np.testing.assert_allclose(p[:, g + 3], p[:, g + 1] * p[:, g + 2], atol=1e-6)
    assert len(model.towers.towers.kernels[0].numpy()) == model.towers.num_towers - len(groups)  # no CTCVR MLP


def test_esmm_trains_cvr_only_through_ctcvr_unless_weighted(frame):
    config = funnel_config(type="esmm")
    model = build(config, frame)
    assert model.loss_weights == {"CVR": 0.0}
    batch = batch_of(frame.iloc[:128], config)
    with tf.GradientTape() as tape:
        loss = model.compute_loss(batch)
    out = model(batch)
    logits, labels = out["logit"].numpy().astype(np.float64), batch["label"].numpy()
    bce = np.maximum(logits, 0) - logits * labels + np.log1p(np.exp(-np.abs(logits)))
    use_case = batch["use_case"].numpy().astype(str)
    assert float(loss) == pytest.approx(bce[use_case == "CTR"].mean() + bce[use_case == "CTCVR"].mean(), rel=1e-4)
    # The CVR tower still learns, from the CTCVR rows (pCTCVR = pCTR x pCVR).
    cvr_kernel = model.towers.towers.kernels[-1]
    assert np.abs(tape.gradient(loss, cvr_kernel).numpy()[2]).sum() > 0
    weighted = build(funnel_config(type="esmm", loss_weights={"CVR": 0.5}), frame)
    assert weighted.loss_weights == {"CVR": 0.5}


def test_esmm_learns_the_planted_signal():
    train, test = funnel_frame(1536, seed=3), funnel_frame(512, seed=11)
    config = funnel_config(type="esmm")
    tf.keras.utils.set_random_seed(0)
    model = build(config, train)
    model.fit(make_dataset(frame_to_arrays(train, config), 64, shuffle=True, seed=0), epochs=4, verbose=0)
    p = model(batch_of(test, config))["probability"].numpy()
    scored = test["use_case"].to_numpy() != "CVR"  # CVR's planted label is not a conversion given a click
    assert roc_auc(test["label"].to_numpy()[scored], p[scored]) > 0.7


@pytest.mark.parametrize("use_cases, esmm, fragment", [
    (["CTR", "CVR"], None, r"model.esmm.ctcvr: 'CTCVR' is not one of data.use_cases \['CTR', 'CVR'\]"),
    (FUNNEL, {"ctr": "CTR", "cvr": "CVR"}, r"model.esmm: expected exactly the keys \['ctr', 'cvr', 'ctcvr'\]"),
    (FUNNEL, {"ctr": "CTR", "cvr": "CTR", "ctcvr": "CTCVR"}, "model.esmm: ctr, cvr and ctcvr must be three"),
])
def test_esmm_without_a_chain_names_the_key(use_cases, esmm, fragment):
    config = tiny_config(type="esmm", **({"esmm": esmm} if esmm else {}))
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, use_cases=use_cases))
    with pytest.raises(ConfigError, match=fragment):
        Experiment(config)


def test_esmm_on_adult_fails_before_loading_data():
    config = load_config(os.path.join(REPO, "configs/adult.yaml"), ["model.type=esmm", "data.path=/nonexistent"])
    with pytest.raises(ConfigError, match=r"model.esmm.ctr: 'CTR' is not one of data.use_cases "
                                          r"\['income', 'never_married'\]"):
        Experiment(config)


# ---- AITM -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("model, fragment", [
    ({"aitm_chain": ["CTR", "BUY"]}, r"model.aitm_chain\[1\]: 'BUY' is not one of data.use_cases"),
    ({"aitm_chain": ["CTR"]}, "model.aitm_chain: expected at least two different use cases"),
    ({"aitm_chain": ["CTR", "CVR"], "tower_units": []}, "model.tower_units: aitm needs at least one hidden"),
])
def test_aitm_chain_errors_name_the_key(model, fragment):
    with pytest.raises(ConfigError, match=fragment):
        Experiment(tiny_config(type="aitm", **model))


def test_aitm_transfers_along_the_chain_only():
    towers = AITMTowers(4, [6, 5], chains=[[1, 3]], calibration_weight=0.0)
    x = tf.random.normal([8, 7])
    towers(x)
    with tf.GradientTape(persistent=True) as tape:
        logits = towers(x)
        columns = tf.unstack(logits, axis=1)
    own = lambda t: tape.gradient(columns[t], towers.encoder_kernel).numpy()  # noqa: E731
    # CTCVR (3) reads CTR's (1) representation through the transfer; CTR reads nothing from CTCVR.
    assert np.abs(own(3)[1]).sum() > 0 and np.abs(own(1)[3]).sum() == 0
    assert np.abs(own(2)[[0, 1, 3]]).sum() == 0  # a tower outside the chain keeps its own representation
    z, attention = InformationTransfer(6)(tf.random.normal([8, 6]), tf.random.normal([8, 6]))
    assert z.shape == (8, 6)
    np.testing.assert_allclose(attention.numpy().sum(-1), 1.0, atol=1e-6)


def test_aitm_calibrator_penalizes_a_later_step_more_likely_than_the_previous():
    towers = AITMTowers(3, [4], chains=[[1, 2]], calibration_weight=0.6)
    x = tf.random.normal([16, 5])
    logits = towers(x).numpy()
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    expected = 0.6 * np.maximum(p[:, 2] - p[:, 1], 0).mean()
    assert len(towers.losses) == 1 and float(towers.losses[0]) == pytest.approx(expected, rel=1e-5, abs=1e-7)
    quiet = AITMTowers(3, [4], chains=[[1, 2]], calibration_weight=0.0)
    quiet(x)
    assert quiet.losses == []


def test_aitm_calibrator_reaches_the_training_loss(frame):
    config = funnel_config(type="aitm", aitm_chain=["CTR", "CVR", "CTCVR"], aitm_calibration_weight=5.0)
    model = build(config, frame)
    model(batch_of(frame.iloc[:64], config))
    assert len(model.losses) == 1 and float(model.losses[0]) >= 0
    assert [len(c) for c in model.towers.chains] == [3]


# ---- single-task ----------------------------------------------------------------------------------
def test_single_task_shares_no_variable_between_task_sentences(frame):
    config = funnel_config(type="single_task")
    model = build(config, frame)
    networks = model.towers.networks
    assert len(networks) == len(config.task_sentences)
    owned = [{id(v) for v in network.trainable_variables} for network in networks]
    assert all(not owned[i] & owned[j] for i in range(len(owned)) for j in range(i))
    assert {id(v) for v in model.trainable_variables} == set().union(*owned)  # params = sum over networks
    rows = frame[(frame["flow"] == "EUP") & (frame["use_case"] == "CVR")].iloc[:16]
    with tf.GradientTape(persistent=True) as tape:
        loss = model.compute_loss(batch_of(rows, config))
    mine = config.task_sentences.index("EUP/CVR")
    for i, network in enumerate(networks):
        grads = tape.gradient(loss, network.trainable_variables)
        moved = sum(float(tf.reduce_sum(tf.abs(tf.convert_to_tensor(g)))) for g in grads if g is not None)
        assert (moved > 0) == (i == mine), (i, moved)


def test_single_task_scores_each_row_with_its_own_network(frame):
    config = funnel_config(type="single_task")
    model = build(config, frame)
    batch = batch_of(frame.iloc[:48], config)
    logit = model(batch)["logit"].numpy()
    keys = [f"{f}/{u}" for f, u in zip(frame["flow"][:48], frame["use_case"][:48])]
    for i, key in enumerate(config.task_sentences):
        rows = np.array([k == key for k in keys])
        own = model.towers.networks[i](batch_of(frame.iloc[:48][rows], config))["logit"].numpy()
        np.testing.assert_allclose(logit[rows], own, atol=1e-6)
    assert sorted(m.name for m in model.metrics) == sorted(  # the networks' unused bookkeeping is left out
        [f"{u}_{kind}" for u in FUNNEL for kind in ("auc", "loss")] + ["task_loss"])


# ---- every new type: use-case masking, serialization, export ---------------------------------------
@pytest.mark.parametrize("model_type", NEW_TYPES)
def test_each_use_case_loss_uses_only_its_rows(frame, model_type):
    config = funnel_config(type=model_type)
    model = build(config, frame)
    batch = batch_of(frame.iloc[:96], config)
    model.compute_loss(batch)
    logits, labels = model(batch)["logit"].numpy().astype(np.float64), batch["label"].numpy()
    bce = np.maximum(logits, 0) - logits * labels + np.log1p(np.exp(-np.abs(logits)))
    use_case = batch["use_case"].numpy().astype(str)
    for u in FUNNEL:
        assert float(model.use_case_losses[u].result()) == pytest.approx(bce[use_case == u].mean(), rel=1e-4)


@pytest.fixture(scope="module")
def exported(frame, tmp_path_factory):
    """``model_type -> (config, model, SavedModel version folder, export_dir)``: each type is built and exported
    once for the tests below (an export traces the whole model; single_task's, one network per task sentence)."""
    cache = {}

    def get(model_type):
        if model_type not in cache:
            config = funnel_config(type=model_type)
            model = build(config, frame)
            export_dir = tmp_path_factory.mktemp(f"export_{model_type}")
            cache[model_type] = (config, model, export_model(model, config, str(export_dir)), export_dir)
        return cache[model_type]

    return get


@pytest.mark.parametrize("model_type", NEW_TYPES)
def test_get_config_and_saved_model_round_trip(frame, model_type, exported):
    config, model, path, _ = exported(model_type)
    batch = batch_of(frame.iloc[:40], config)
    expected = model(batch, training=False)["probability"].numpy()
    clone = type(model).from_config(model.get_config())
    clone(batch, training=False)
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone(batch, training=False)["probability"].numpy(), expected, atol=1e-6)
    loaded = tf.saved_model.load(path)
    assert set(loaded.signatures) == {"serving_default", "score_all"}
    inputs = {k: v for k, v in batch.items() if k not in ("label", IMPRESSION_KEY)}  # what serving takes
    np.testing.assert_allclose(loaded.signatures["serving_default"](**inputs)["probability"].numpy(), expected,
                               atol=1e-5)
    every = loaded.signatures["score_all"](**{k: v for k, v in inputs.items() if k != "use_case"})
    own = [FUNNEL.index(u) for u in batch["use_case"].numpy().astype(str)]
    np.testing.assert_allclose(every["probabilities"].numpy()[np.arange(40), own], expected, atol=1e-5)


@pytest.mark.parametrize("model_type", ["esmm", "single_task"])
def test_rest_server_serves_a_baseline(frame, model_type, exported):
    config, model, _, export_dir = exported(model_type)
    rows = frame.iloc[:6]
    arrays = frame_to_arrays(rows, config, with_labels=False)
    inputs = {k: v.astype(str) if v.dtype == object else v for k, v in arrays.items()}
    expected = model({k: tf.constant(v) for k, v in inputs.items()}, training=False)["probability"].numpy()
    server = ServerThread(ModelRegistry(model_type, str(export_dir / model_type), poll_seconds=60), port=0).start()
    try:
        instances = [{k: (v[i].tolist() if hasattr(v[i], "tolist") else v[i]) for k, v in inputs.items()}
                     for i in range(len(rows))]
        status, body = Client(server.port).post(f"/v1/models/{model_type}:predict", {"instances": instances})
        assert status == 200, body
        np.testing.assert_allclose(np.array(body["predictions"]), expected, atol=1e-5)
    finally:
        server.stop()
