"""The LightGBM peer's table on a tiny frame with every feature kind, and one seeded model trained on it."""
import numpy as np
import pandas as pd
import pytest

from grec_tf.benchmarks.lightgbm_peer import TableEncoder, train_lightgbm
from grec_tf.metrics import roc_auc
from tests.tiny_experiment import tiny_config, tiny_frame


@pytest.fixture(scope="module")
def config():
    return tiny_config()


def test_table_has_every_feature_kind_encoded_from_the_training_split(config):
    train = tiny_frame(256, seed=0)
    encoder = TableEncoder.fit(train, config, top_n=3)
    # the words "apple", "phone", "cheap", "case" appear in training queries; the 3 most frequent are kept
    assert len(encoder.bags["query"]) == 3 and set(encoder.bags["query"]) <= {"apple", "phone", "cheap", "case"}
    assert encoder.embedding_dims == {"item_vec": 4}
    table = encoder.encode(train)
    assert len(table) == len(train) and list(table.index) == list(train.index)
    for name in ("flow", "use_case", "plan", "item_id", "brand"):
        assert isinstance(table[name].dtype, pd.CategoricalDtype), name
        assert list(table[name].cat.categories) == sorted(train[name].astype(str).unique())
    assert table["tenure"].dtype == np.float32 and np.allclose(table["tenure"], train["tenure"])
    vectors = np.stack(train["item_vec"])
    assert np.allclose(table[[f"item_vec__{i}" for i in range(4)]].to_numpy(), vectors)
    # bag counts: each kept id counted as often as it occurs in the row (a sequence may repeat an item)
    for row in (0, 7, 100):
        viewed = list(train["viewed"].iloc[row])
        for i, item in enumerate(encoder.bags["viewed"]):
            assert table[f"viewed__{i}"].iloc[row] == viewed.count(item)
        words = train["query"].iloc[row].split()
        for i, word in enumerate(encoder.bags["query"]):
            assert table[f"query__{i}"].iloc[row] == words.count(word)


def test_unseen_values_become_missing_and_unkept_ids_are_dropped(config):
    train = tiny_frame(128, seed=0)
    encoder = TableEncoder.fit(train, config, top_n=2)
    other = train.head(2).copy()
    other["plan"] = ["never-seen", "max"]
    other["viewed"] = [np.array(["zzz", "zzz"], dtype=object), np.array([], dtype=object)]
    table = encoder.encode(other)
    assert pd.isna(table["plan"].iloc[0]) and table["plan"].iloc[1] == "max"
    assert table[[f"viewed__{i}" for i in range(2)]].to_numpy().sum() == 0


def test_one_seeded_model_learns_the_planted_signal(config):
    lightgbm = pytest.importorskip("lightgbm", reason="the optional peers extra is not installed")
    splits = {"train": tiny_frame(1500, seed=0), "valid": tiny_frame(300, seed=1), "test": tiny_frame(400, seed=2)}
    first = train_lightgbm(splits, config, seed=3, max_rounds=60, lightgbm=lightgbm)
    again = train_lightgbm(splits, config, seed=3, max_rounds=60, lightgbm=lightgbm)
    assert first["scores"].shape == (400,) and np.all((first["scores"] > 0) & (first["scores"] < 1))
    np.testing.assert_array_equal(first["scores"], again["scores"])  # the seed fixes the model
    assert 1 <= first["rounds"] <= 60
    bags = TableEncoder.fit(splits["train"], config).bags
    # 5 category columns (flow, use_case, plan, item_id, brand), tenure and price, 4 vector components, bags
    assert first["features"] == 5 + 2 + 4 + len(bags["query"]) + len(bags["viewed"])
    assert roc_auc(splits["test"]["label"].to_numpy(), first["scores"]) > 0.7
