"""FeatureGroupEncoder's numerical embeddings (linear, periodic PLR) and DCN-v2 cross layers: weights each option
adds, what it computes, that gradients reach its weights, and config values that fail naming the key."""
import math

import numpy as np
import pytest
import tensorflow as tf

import grec_tf  # noqa: F401
from grec_tf.data.feature_statistics import compute_feature_statistics
from grec_tf.errors import ConfigError
from grec_tf.experiment import Experiment
from grec_tf.layers import PeriodicEmbedding, PiecewiseLinearEmbedding
from grec_tf.models import FeatureGroupEncoder
from tests.models.test_multi_task_ranker import _batch
from tests.tiny_experiment import tiny_config, tiny_frame

D, WIDE, EMB = 8, 16, 4
CATEGORICAL = [{"name": "plan", "vocabulary": ["basic", "max"], "num_oov": 1, "embedding_dim": EMB}]
NUMERICAL = [{"name": "tenure", "mean": 20.0, "variance": 100.0}, {"name": "price", "mean": 5.0, "variance": 4.0}]
VECTORS = [{"name": "vec", "dim": 3}]
F = len(NUMERICAL)
INPUTS = {"plan": tf.constant(["max", "basic", "new", "max"]), "tenure": tf.constant([3.0, 20.0, 41.0, 7.5]),
          "price": tf.constant([1.0, 5.0, 9.0, 2.0]), "vec": tf.constant(np.arange(12, dtype=np.float32).reshape(4, 3))}


def encoder(**options) -> FeatureGroupEncoder:
    layer = FeatureGroupEncoder(CATEGORICAL, NUMERICAL, VECTORS, D, wide_units=WIDE, **options)
    layer(INPUTS)
    return layer


def linear_params() -> int:
    """Parameters of the default (linear) encoder, as main builds it: embedding, wide Dense, vector projection,
    output projection over the concatenation [B, EMB + WIDE + D]."""
    return 3 * EMB + (F * WIDE + WIDE) + (3 * D + D) + ((EMB + WIDE + D) * D + D)


def test_defaults_build_the_linear_encoder_weight_for_weight():
    layer = encoder()
    assert layer.count_params() == linear_params()
    assert sorted(w.name.split("/", 1)[1] for w in layer.weights if w.trainable) == sorted([
        "plan_embedding/embeddings:0", "wide/kernel:0", "wide/bias:0", "vec_projection/kernel:0",
        "vec_projection/bias:0", "output_projection/kernel:0", "output_projection/bias:0"])


def test_periodic_replaces_the_wide_dense_with_k_frequencies_and_a_dense_per_numerical():
    k, width = 5, 3
    layer = encoder(numerical_embedding="periodic", periodic={"frequencies": k, "sigma": 0.1, "width": width})
    per_numerical = k + 2 * k * width + width
    concat = EMB + F * width + D
    expected = linear_params() - (F * WIDE + WIDE) + F * per_numerical + (concat - (EMB + WIDE + D)) * D
    assert layer.count_params() == expected
    assert layer(INPUTS).shape == [4, D]


def test_periodic_embedding_is_sin_cos_of_the_frequencies_then_dense_relu_per_feature():
    k, width = 3, 2
    layer = PeriodicEmbedding(F, frequencies=k, sigma=1.0, width=width)
    layer.build(tf.TensorShape([None, F]))
    layer.bias.assign(np.random.default_rng(0).normal(size=(F, width)))  # a nonzero bias, so it is checked too
    c, kernel, bias = layer.frequency.numpy(), layer.kernel.numpy(), layer.bias.numpy()
    x = np.array([[0.5, -1.0], [2.0, 0.25]], np.float32)
    got = layer(x).numpy()
    angles = 2 * math.pi * c[None] * x[..., None]  # [B, F, K]
    periodic = np.concatenate([np.sin(angles), np.cos(angles)], -1)
    expected = np.maximum(np.einsum("bfk,fkw->bfw", periodic, kernel) + bias, 0).reshape(2, F * width)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert 0 < np.abs(c).max() <= 3.0  # truncated normal, sigma 1


def test_each_cross_layer_adds_a_full_rank_kernel_and_is_the_identity_at_zero():
    plain, crossed = encoder(), encoder(cross_layers=2)
    width = EMB + WIDE + D
    assert crossed.count_params() - plain.count_params() == 2 * (width * width + width)
    for weight in plain.weights:  # same parts, same weights
        [twin] = [w for w in crossed.weights if w.name.split("/", 1)[1] == weight.name.split("/", 1)[1]]
        twin.assign(weight)
    # x_{i+1} = x0 * (W x_i + b) + x_i: with W = 0, b = 0 each layer passes x_i through
    cross_weights = [w for cross in crossed.crosses for w in cross.weights]
    saved = [w.numpy() for w in cross_weights]
    for w in cross_weights:
        w.assign(tf.zeros_like(w))
    np.testing.assert_allclose(crossed(INPUTS).numpy(), plain(INPUTS).numpy(), atol=1e-6)
    for w, value in zip(cross_weights, saved):
        w.assign(value)
    assert np.abs(crossed(INPUTS).numpy() - plain(INPUTS).numpy()).max() > 1e-3


@pytest.mark.parametrize("options, weight_names", [
    ({"numerical_embedding": "periodic"}, ["periodic/frequencies", "periodic/kernel"]),
    ({"cross_layers": 2}, ["cross_0/", "cross_1/"]),
    ({"numerical_embedding": "piecewise_linear"}, ["piecewise_linear/kernel", "piecewise_linear/bias"]),
    ({"feature_tokens": "feature"}, ["_token/kernel"]),
])
def test_gradients_reach_the_new_weights_of_both_encoders(options, weight_names):
    frame = tiny_frame(128, seed=5)
    config = tiny_config(**options)
    model = Experiment(config, statistics=compute_feature_statistics(frame, config)).build_model()
    batch = _batch(frame, config, 64)
    model(batch)
    for encoder_layer in (model.context_encoder, model.item_encoder):
        new = [w for w in encoder_layer.trainable_weights if any(n in w.name for n in weight_names)]
        assert len(new) >= len(weight_names)
        with tf.GradientTape() as tape:
            loss = model.compute_loss(batch, training=True)
        for weight, grad in zip(new, tape.gradient(loss, new)):
            assert grad is not None and float(tf.reduce_max(tf.abs(grad))) > 0, weight.name


@pytest.mark.parametrize("key, value, fragment", [
    ("numerical_embedding", "spline",
     "model.numerical_embedding: expected one of ['linear', 'periodic', 'piecewise_linear']"),
    ("cross_layers", -1, "model.cross_layers: expected >= 0"),
    ("cross_layers", 1.5, "model.cross_layers: expected an integer"),
])
def test_a_bad_value_fails_naming_the_key(key, value, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        tiny_config(**{key: value})


@pytest.mark.parametrize("options, fragment", [
    ({"numerical_embedding": "spline"}, "numerical_embedding: expected one of"),
    ({"cross_layers": -1}, "cross_layers: expected an integer >= 0"),
])
def test_the_layer_checks_its_options(options, fragment):
    with pytest.raises(ValueError, match=fragment):
        FeatureGroupEncoder(CATEGORICAL, NUMERICAL, VECTORS, D, **options)


def test_periodic_embedding_config_round_trip_and_float32_under_mixed_precision():
    layer = PeriodicEmbedding(F, frequencies=4, sigma=0.5, width=3, name="plr")
    x = tf.constant([[0.5, -1.0], [2.0, 0.25]])
    expected = layer(x).numpy()
    config = layer.get_config()
    rebuilt = tf.keras.layers.deserialize(tf.keras.layers.serialize(layer))
    assert type(rebuilt) is PeriodicEmbedding and rebuilt.get_config() == config
    rebuilt(x)
    rebuilt.set_weights(layer.get_weights())
    np.testing.assert_array_equal(rebuilt(x).numpy(), expected)
    tf.keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        assert PeriodicEmbedding(F)(x).dtype == tf.float32
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")


def test_piecewise_linear_bins_are_clipped_inside_and_extrapolate_at_the_ends():
    layer = PiecewiseLinearEmbedding([[0.0, 1.0, 3.0], [-1.0, 0.0, 1.0, 2.0]], width=3)
    x = tf.constant([[-1.0, 0.5], [2.0, 5.0], [4.0, -2.0]])
    expected = [[[-1, 0, 0], [1, 0.5, 0]],  # feature 0 has two bins: its third reads 0
                [[1, 0.5, 0], [1, 1, 4]],
                [[1, 1.5, 0], [-1, 0, 0]]]
    np.testing.assert_allclose(layer.encode(x).numpy(), expected, rtol=1e-6)
    out = layer(x).numpy()
    kernel, bias = layer.kernel.numpy(), layer.bias.numpy()
    want = np.maximum(np.einsum("bft,ftw->bfw", np.array(expected, np.float32), kernel) + bias, 0).reshape(3, 6)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)
    assert kernel.shape == (2, 3, 3)
    rebuilt = PiecewiseLinearEmbedding.from_config(layer.get_config())
    assert rebuilt.edges == layer.edges and rebuilt.width == 3


@pytest.mark.parametrize("edges, fragment", [([[1.0]], "at least two"), ([[0.0, 2.0, 1.0]], "strictly increasing"),
                                             ([], "at least one feature")])
def test_piecewise_linear_checks_its_edges(edges, fragment):
    with pytest.raises(ValueError, match=fragment):
        PiecewiseLinearEmbedding(edges)


def test_quantile_edges_are_distinct_training_quantiles():
    from grec_tf.data.feature_statistics import quantile_edges

    skewed = np.r_[np.zeros(90), np.arange(1, 11) * 100.0, np.nan, np.inf]  # a capital-gain-like column
    edges = quantile_edges(skewed, 20)  # 21 quantiles of 100 finite values: the 18 up to q = 0.85 are 0
    assert len(edges) == 4 and edges[0] == 0.0 and edges[-1] == 1000.0 and np.all(np.diff(edges) > 0)
    assert quantile_edges(np.full(5, 3.0), 8) == [3.0, 4.0]  # constant: one bin
    assert quantile_edges(np.array([np.nan]), 8) == [0.0, 1.0]


def test_piecewise_linear_statistics_and_edges_follow_the_normalization():
    from grec_tf.data.feature_statistics import FeatureStatistics
    from grec_tf.models.factory import numerical_spec

    frame = tiny_frame(256, seed=2)
    statistics = compute_feature_statistics(frame, tiny_config())  # any encoding: one statistics serve both
    assert set(statistics.quantiles) == {"tenure", "price"} and len(statistics.quantiles["tenure"]) > 10
    assert compute_feature_statistics(frame, tiny_config(numerical_embedding="piecewise_linear")) == statistics
    spec = numerical_spec("tenure", statistics, "piecewise_linear")
    mean, variance = statistics.moments["tenure"]
    np.testing.assert_allclose(spec["edges"], (np.array(statistics.quantiles["tenure"]) - mean) / variance ** 0.5,
                               rtol=1e-6)
    assert "edges" not in numerical_spec("tenure", statistics, "linear")
    older = FeatureStatistics(vocabularies=statistics.vocabularies, moments=statistics.moments)  # saved before
    with pytest.raises(ConfigError, match="piecewise_linear needs the quantiles of numerical 'tenure'"):
        numerical_spec("tenure", older, "piecewise_linear")
    with pytest.raises(ValueError, match="piecewise_linear needs the bin edges of every numerical"):
        FeatureGroupEncoder(CATEGORICAL, NUMERICAL, VECTORS, D, numerical_embedding="piecewise_linear")


def test_a_tree_edges_model_reads_the_tree_edges_trains_and_serves(tmp_path):
    from grec_tf.data.dataset import make_dataset
    from grec_tf.data.feature_arrays import frame_to_arrays
    from grec_tf.models.factory import numerical_spec
    from tests.models.test_multi_task_ranker import assert_round_trips_and_serves

    frame = tiny_frame(2048, seed=5)  # ~512 rows a task sentence: room for leaves of 64 rows on either side
    flipped = np.random.default_rng(5).random(len(frame)) < 0.1
    frame["label"] = ((frame["tenure"] > 25.0) ^ flipped).astype(np.int64)  # a step for the trees to find
    config = tiny_config(numerical_embedding="piecewise_linear", piecewise_linear_edges="tree")
    statistics = compute_feature_statistics(frame, config)
    model = Experiment(config, statistics=statistics).build_model()
    (edges,) = model.context_encoder.wide.edges  # the context group's one numerical: tenure
    assert edges == numerical_spec("tenure", statistics, "piecewise_linear", "tree")["edges"]
    assert edges != numerical_spec("tenure", statistics, "piecewise_linear")["edges"]  # not the quantiles
    mean, variance = statistics.moments["tenure"]
    np.testing.assert_allclose(edges, (np.array(statistics.tree_edges["tenure"]) - mean) / variance ** 0.5, rtol=1e-6)
    assert len(edges) < len(statistics.quantiles["tenure"])  # a few tree edges, not 49 quantiles
    assert np.min(np.abs(np.array(statistics.tree_edges["tenure"]) - 25.0)) < 1.0  # one at the step
    before = [w.numpy().copy() for w in model.context_encoder.wide.trainable_weights]
    history = model.fit(make_dataset(frame_to_arrays(frame.iloc[:64], config), 64), epochs=1, verbose=0)
    assert np.isfinite(history.history["total_loss"][0])
    assert any(not np.allclose(a, b.numpy()) for a, b in zip(before, model.context_encoder.wide.trainable_weights))
    assert_round_trips_and_serves(model, config, _batch(frame, config, 64), tmp_path)


def test_tree_edges_need_them_in_the_statistics_and_a_piecewise_linear_embedding():
    from grec_tf.data.feature_statistics import FeatureStatistics
    from grec_tf.models.factory import build_ranker

    config = tiny_config(numerical_embedding="piecewise_linear", piecewise_linear_edges="tree")
    statistics = compute_feature_statistics(tiny_frame(256, seed=2), config)
    older = FeatureStatistics(**{**statistics.to_dict(), "tree_edges": {}})  # saved before tree edges existed
    with pytest.raises(ConfigError, match="model.piecewise_linear_edges: tree needs the tree edges of numerical "
                                          "'price', which these feature statistics lack"):
        build_ranker(config, older)
    build_ranker(tiny_config(numerical_embedding="piecewise_linear"), older)  # quantile edges: still builds
    with pytest.raises(ConfigError, match="model.piecewise_linear_edges: 'tree' bins apply only to "
                                          "model.numerical_embedding 'piecewise_linear' or model.wide_logits .*, "
                                          "got numerical_embedding 'periodic', wide_logits false"):
        tiny_config(numerical_embedding="periodic", piecewise_linear_edges="tree")


def test_normalized_edges_stay_distinct_in_float32():
    """Raw edges distinct in float64 that one float32 value holds would give the layer an empty bin (0 / 0)."""
    from grec_tf.data.feature_statistics import FeatureStatistics
    from grec_tf.models.factory import numerical_spec

    raw = [0.0, 1.0, 1.0 + 1e-9, 2.0]  # 1.0 and 1.0 + 1e-9 are one float32
    statistics = FeatureStatistics(moments={"x": [0.0, 1.0]}, quantiles={"x": raw})
    edges = numerical_spec("x", statistics, "piecewise_linear")["edges"]
    assert edges == [0.0, 1.0, 2.0]
    layer = PiecewiseLinearEmbedding([edges], width=2)
    assert np.all(np.isfinite(layer(tf.constant([[1.0], [1.5]])).numpy()))
    with pytest.raises(ValueError, match="strictly increasing float32"):
        PiecewiseLinearEmbedding([raw])


@pytest.mark.parametrize("numerical_embedding", ["linear", "periodic"])
def test_feature_tokens_give_each_feature_a_token_of_its_own(numerical_embedding):
    layer = encoder(tokens="feature", numerical_embedding=numerical_embedding)
    out = layer(INPUTS).numpy()
    names = layer.input_names
    assert layer.num_tokens == len(names) and out.shape == (len(INPUTS[names[0]]), len(names), D)
    for changed, name in enumerate(names):  # a feature's new value moves its token and no other
        inputs = dict(INPUTS)
        value = INPUTS[name]
        inputs[name] = (tf.constant(["zz-unseen"] * len(value)) if value.dtype == tf.string
                        else tf.ones_like(value) * 7.0)
        moved = np.abs(layer(inputs).numpy() - out).max(axis=(0, 2))
        assert moved[changed] > 1e-4 and np.all(np.delete(moved, changed) == 0), name


def test_feature_tokens_reject_crosses():
    with pytest.raises(ValueError, match="cross_layers: crosses act on a group's concatenated features"):
        encoder(tokens="feature", cross_layers=1)
    with pytest.raises(ValueError, match="feature_tokens: expected one of"):
        encoder(tokens="field")
    with pytest.raises(ConfigError, match="model.cross_layers: .* model.feature_tokens 'feature' .* expected 0, got 2"):
        tiny_config(feature_tokens="feature", cross_layers=2)
    with pytest.raises(ConfigError, match="model.feature_tokens: expected one of"):
        tiny_config(feature_tokens="field")


def test_a_feature_token_model_stacks_every_feature_and_serves_the_same_scores(tmp_path):
    from tests.models.test_multi_task_ranker import assert_round_trips_and_serves

    frame = tiny_frame(128, seed=5)
    config = tiny_config(feature_tokens="feature", target_attention=True)
    model = Experiment(config, statistics=compute_feature_statistics(frame, config)).build_model()
    batch = _batch(frame, config, 64)
    # sequence, 2 context features (plan, tenure), search, 4 item features (item_id, brand, price, item_vec)
    assert model.num_encoded_tokens == 8 and model.encode(batch).shape == (64, 8, config.model.d_model)
    assert_round_trips_and_serves(model, config, batch, tmp_path)
