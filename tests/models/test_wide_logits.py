"""The wide part (``model.wide_logits``): a per-tower additive logit over bins and ids, in the layer and in a model."""
import numpy as np
import pytest
import tensorflow as tf

import grec_tf  # noqa: F401
from grec_tf.data.feature_arrays import frame_to_arrays
from grec_tf.data.feature_statistics import compute_feature_statistics
from grec_tf.errors import ConfigError
from grec_tf.experiment import Experiment
from grec_tf.models.factory import build_wide_logits
from grec_tf.models.wide_logits import WideLogits
from grec_tf.serving.sub_model import build_sub_model
from tests.models.test_multi_task_ranker import assert_round_trips_and_serves
from tests.tiny_experiment import tiny_config, tiny_frame

NUMERICAL = [{"name": "age", "edges": [0.0, 10.0, 30.0]}, {"name": "gain", "edges": [0.0, 100.0]}]
CATEGORICAL = [{"name": "plan", "vocabulary": ["basic", "max"], "num_oov": 1}]
FEATURES = {"age": tf.constant([5.0, 20.0, 40.0, -10.0]), "gain": tf.constant([50.0, 0.0, 200.0, 100.0]),
            "plan": tf.constant(["max", "basic", "unknown", "max"])}


def _layer(num_towers: int = 3) -> WideLogits:
    layer = WideLogits(NUMERICAL, CATEGORICAL, num_towers)
    layer(FEATURES)
    return layer


def test_starts_at_zero_then_adds_a_piecewise_linear_function_per_numerical_and_a_weight_per_id():
    layer = _layer()
    np.testing.assert_array_equal(layer(FEATURES).numpy(), np.zeros((4, 3)))
    kernel = np.zeros((2, 2, 3), np.float32)
    kernel[0, :, 0] = [1.0, 2.0]  # age's two bins, tower 0
    kernel[1, 0, 1] = 3.0  # gain's one bin, tower 1
    layer.numerical_kernel.assign(kernel)
    ids = np.zeros((3, 3), np.float32)
    ids[:, 2] = [7.0, 10.0, 20.0]  # tower 2: the OOV bucket first, then basic, max
    layer.weights_by_id["plan"].embeddings.assign(ids)
    layer.bias.assign([0.5, 0.0, 0.0])
    # age bins: [0, 10) and [10, 30), the first extrapolating below, the last above
    age_bins = np.array([[0.5, 0.0], [1.0, 0.5], [1.0, 1.5], [-1.0, 0.0]])
    gain_bin = np.array([0.5, 0.0, 2.0, 1.0])
    expected = np.stack([0.5 + age_bins @ [1.0, 2.0], 3.0 * gain_bin, [20.0, 10.0, 7.0, 20.0]], axis=1)
    np.testing.assert_allclose(layer(FEATURES).numpy(), expected, rtol=1e-6)
    clone = WideLogits.from_config(layer.get_config())
    clone(FEATURES)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(clone(FEATURES).numpy(), expected, rtol=1e-6)


def test_the_layer_checks_its_arguments():
    with pytest.raises(ValueError, match="WideLogits: expected num_towers >= 1 and at least one"):
        WideLogits([], [], 2)
    with pytest.raises(ValueError, match="WideLogits: feature 0's edges must be at least two strictly increasing"):
        WideLogits([{"name": "age", "edges": [3.0, 1.0]}], [], 2)


def _model(**model):
    frame = tiny_frame(256, seed=5)
    config = tiny_config(wide_logits=True, **model)
    experiment = Experiment(config, statistics=compute_feature_statistics(frame, config))
    arrays = frame_to_arrays(frame, config)
    batch = {k: tf.constant(v.astype(str) if v.dtype == object else v) for k, v in arrays.items()}
    return experiment, experiment.build_model(), batch


@pytest.mark.parametrize("towers", ["use_case", "task_sentence"])
def test_each_row_gets_its_own_towers_wide_logit_in_every_output(towers):
    experiment, model, batch = _model(towers=towers, piecewise_linear_edges="tree")
    wide = model.wide_logits
    numericals = [f.name for f in experiment.config.features if f.kind == "numerical"]
    assert [spec["edges"] for spec in wide.numerical] == [experiment.statistics.tree_edges[n] for n in numericals]
    inputs = {k: v for k, v in batch.items() if k != "label"}
    before = model(inputs, every_tower=True)
    shift = np.arange(1, wide.num_towers + 1, dtype=np.float32)
    wide.bias.assign(shift)
    after = model(inputs, every_tower=True)
    index = model.tower_index(after["flow_id"], after["use_case_id"]).numpy()
    np.testing.assert_allclose((after["logit"] - before["logit"]).numpy(), shift[index], rtol=1e-5)
    every = np.broadcast_to(shift, (len(index), len(shift)))  # every tower of every row moves by its own bias
    np.testing.assert_allclose((after["logits"] - before["logits"]).numpy(), every, rtol=1e-5)
    # score_all's rows (each row once per use case) carry the same wide logits as scoring each use case alone
    use_cases = tf.constant(experiment.config.data.use_cases)
    scored = model({k: v for k, v in inputs.items() if k != "use_case"}, score_use_cases=use_cases)
    for u, use_case in enumerate(experiment.config.data.use_cases):
        alone = model({**inputs, "use_case": tf.fill(tf.shape(inputs["flow"]), use_case)})
        np.testing.assert_allclose(scored["logit"].numpy()[u::len(experiment.config.data.use_cases)],
                                   alone["logit"].numpy(), rtol=1e-5, atol=1e-5)


def test_a_wide_model_trains_its_wide_weights_round_trips_serves_and_cuts_sub_models(tmp_path):
    experiment, model, batch = _model(routing="task_sentence")
    model.fit(tf.data.Dataset.from_tensor_slices(batch).batch(64), epochs=1, verbose=0)
    assert np.abs(model.wide_logits.numerical_kernel.numpy()).sum() > 0  # it learns
    assert np.abs(model.wide_logits.weights_by_id["plan"].embeddings.numpy()).sum() > 0
    assert_round_trips_and_serves(model, experiment.config, batch, tmp_path)
    kept = batch["flow"].numpy().astype(str) == "AAL"
    rows = {k: tf.boolean_mask(v, kept) for k, v in batch.items() if k != "label"}
    rows["use_case"] = tf.fill(tf.shape(rows["flow"]), "CVR")
    sub = build_sub_model(model, experiment.config, ["AAL/CVR"])
    np.testing.assert_allclose(sub(rows)["probability"].numpy(), model(rows)["probability"].numpy(), atol=1e-6)


def test_chained_towers_get_no_wide_part():
    frame = tiny_frame(64, seed=1)
    for model_type, expected in (("esmm", type(None)), ("aitm", type(None)), ("mmoe", WideLogits)):
        config = tiny_config(type=model_type, wide_logits=True)
        assert type(build_wide_logits(config, compute_feature_statistics(frame, config), 2)) is expected


def test_wide_edges_are_distinct_in_float32_and_missing_ones_name_the_key():
    """Raw edges one float32 apart would be an empty bin (the layer refuses them); statistics without the edges
    are a ConfigError naming model.wide_logits."""
    config = tiny_config(wide_logits=True)
    statistics = compute_feature_statistics(tiny_frame(64, seed=1), config)
    statistics.quantiles["tenure"] = [0.0, 1.0, 1.0 + 1e-9, 2.0]  # 1.0 and 1.0 + 1e-9 are one float32
    wide = build_wide_logits(config, statistics, 2)
    assert wide.numerical[0] == {"name": "tenure", "edges": [0.0, 1.0, 2.0]}
    assert np.all(np.isfinite(wide({"tenure": tf.constant([1.0, 1.5]), "price": tf.constant([0.0, 1.0]),
                                    "plan": tf.constant(["max", "x"]), "item_id": tf.constant(["i1", "i2"]),
                                    "brand": tf.constant(["apple", "x"])}).numpy()))
    del statistics.quantiles["price"]
    with pytest.raises(ConfigError, match="model.wide_logits needs the quantiles of numerical 'price'"):
        build_wide_logits(config, statistics, 2)
