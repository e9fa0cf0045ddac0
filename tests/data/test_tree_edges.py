"""Target-aware bin edges (PLE-T): the trees find a planted label step that the quantiles miss on a zero-inflated
column, one tree per task sentence, NaN rows skipped, a seeded per-task sample; and the statistics that hold them."""
import dataclasses

import numpy as np
import pytest

from grec_tf.config import PIECEWISE_LINEAR_BINS
from grec_tf.data import tree_edges as tree_module
from grec_tf.data.feature_statistics import FeatureStatistics, compute_feature_statistics, quantile_edges
from grec_tf.data.tree_edges import split_thresholds, tree_edges
from tests.tiny_experiment import tiny_config, tiny_frame


def zero_inflated(rows: int, step: float, seed: int = 0):
    """A capital-gain-like column (90% zeros, the rest lognormal around 5000) and labels ``value > step`` with 5%
    of them flipped."""
    rng = np.random.default_rng(seed)
    values = np.where(rng.random(rows) < 0.9, 0.0, rng.lognormal(np.log(5000.0), 1.0, rows)).astype(np.float32)
    labels = (values > step) ^ (rng.random(rows) < 0.05)
    return values, labels.astype(np.int64)


def stepped(rows: int, step: float, seed: int):
    """Values uniform in [0, 10) and the noise-free labels ``value > step``."""
    values = np.random.default_rng(seed).uniform(0.0, 10.0, rows)
    return values, (values > step).astype(np.int64)


def nearest(edges, value: float) -> float:
    return float(np.min(np.abs(np.asarray(edges) - value)))


def test_trees_put_an_edge_at_the_label_step_where_the_quantiles_do_not():
    values, labels = zero_inflated(40_000, 7000.0)
    edges = tree_edges(values, labels, np.zeros(len(values)), PIECEWISE_LINEAR_BINS)
    quantiles = quantile_edges(values, PIECEWISE_LINEAR_BINS)
    assert nearest(edges, 7000.0) < 70.0 < nearest(quantiles, 7000.0)  # within 1% of the step; the quantiles not
    assert len(quantiles) <= 6  # the zeros take 43 of the 48 bins
    assert np.all(np.diff(edges) > 0) and np.all(np.isfinite(edges))
    assert edges[0] == values.min() and edges[-1] == pytest.approx(values.max())
    assert len(edges) <= PIECEWISE_LINEAR_BINS + 1


def test_each_task_sentence_adds_its_own_step_and_a_constant_label_adds_nothing():
    (a, a_labels), (b, b_labels) = stepped(4000, 3.0, seed=1), stepped(4000, 7.0, seed=2)
    values, labels = np.r_[a, b], np.r_[a_labels, b_labels]
    tasks = np.r_[["AAL/CTR"] * len(a), ["AAL/CVR"] * len(b)]
    edges = tree_edges(values, labels, tasks, PIECEWISE_LINEAR_BINS)
    assert len(edges) == 4 and nearest(edges, 3.0) < 0.02 and nearest(edges, 7.0) < 0.02  # min, 3, 7, max
    constant = np.random.default_rng(3).uniform(1.0, 9.0, 4000)  # inside the others' range: min and max stay
    with_constant = tree_edges(np.r_[values, constant], np.r_[labels, np.zeros(4000, np.int64)],
                               np.r_[tasks, ["EUP/CTR"] * 4000], PIECEWISE_LINEAR_BINS)
    assert with_constant == edges
    assert split_thresholds(constant, np.ones(4000), 8) == []


def test_nan_rows_are_skipped_and_an_empty_column_gives_one_bin():
    values, labels = stepped(4000, 3.0, seed=4)
    tasks = np.zeros(len(values))
    expected = tree_edges(values, labels, tasks, PIECEWISE_LINEAR_BINS)
    spoiled = np.r_[values, np.full(500, np.nan), np.full(3, np.inf)]  # NaN rows labelled to move the step if read
    got = tree_edges(spoiled, np.r_[labels, np.ones(503, np.int64)], np.zeros(len(spoiled)), PIECEWISE_LINEAR_BINS)
    assert got == expected and np.all(np.isfinite(got))
    assert tree_edges(np.full(10, np.nan), np.arange(10) % 2, np.zeros(10), PIECEWISE_LINEAR_BINS) == [0.0, 1.0]


def test_tasks_above_the_cap_are_sampled_with_the_seed(monkeypatch):
    monkeypatch.setattr(tree_module, "TREE_SAMPLE_ROWS", 1000)
    fitted = []
    real = tree_module.split_thresholds
    monkeypatch.setattr(tree_module, "split_thresholds",
                        lambda values, labels, leaves, seed=0: fitted.append(len(values)) or real(values, labels,
                                                                                                 leaves, seed))
    (a, a_labels), (b, b_labels) = stepped(5000, 3.0, seed=5), stepped(600, 7.0, seed=6)
    values, labels, tasks = np.r_[a, b], np.r_[a_labels, b_labels], np.r_[np.zeros(5000), np.ones(600)]
    edges = tree_edges(values, labels, tasks, PIECEWISE_LINEAR_BINS, seed=11)
    assert fitted == [1000, 600]  # the big task capped, the small one whole
    assert nearest(edges, 3.0) < 0.05 and nearest(edges, 7.0) < 0.05
    assert tree_edges(values, labels, tasks, PIECEWISE_LINEAR_BINS, seed=11) == edges  # deterministic
    others = {tuple(tree_edges(values, labels, tasks, PIECEWISE_LINEAR_BINS, seed=s)) for s in range(4)}
    assert len(others) > 1  # another seed, another sample of the big task


def test_statistics_hold_tree_edges_of_every_numerical_from_the_label_column():
    frame = tiny_frame(2000, seed=7).rename(columns={"label": "clicked"})
    frame["clicked"] = (frame["tenure"] > 30.0).astype(np.int64)  # every task sentence steps at tenure 30
    frame["label"] = 1 - frame["clicked"]  # a decoy under the default name: not read
    config = tiny_config()
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, label_column="clicked"))
    statistics = compute_feature_statistics(frame, config)
    assert set(statistics.tree_edges) == set(statistics.quantiles) == {"tenure", "price"}
    assert nearest(statistics.tree_edges["tenure"], 30.0) < 0.5
    assert statistics.tree_edges["price"][0] == pytest.approx(frame["price"].min())
    assert FeatureStatistics.from_dict(statistics.to_dict()) == statistics


def test_statistics_saved_before_tree_edges_still_load():
    saved = {"vocabularies": {"plan": ["max"]}, "moments": {"tenure": [1.0, 2.0]}, "text_vocabularies": {},
             "quantiles": {"tenure": [0.0, 1.0]}}
    statistics = FeatureStatistics.from_dict(saved)
    assert statistics.tree_edges == {} and statistics.quantiles == {"tenure": [0.0, 1.0]}
