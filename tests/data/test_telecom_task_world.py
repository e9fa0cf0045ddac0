"""Telecom task worlds: more flows and use cases from the same planted model, the default world unchanged."""
import hashlib
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from grec_tf.config import parse_config
from grec_tf.data import telecom
from grec_tf.data.telecom import label_model as lm
from grec_tf.data.sources import load_data
from grec_tf.data.telecom.task_world import (
    DEFAULT_WORLD, EXTRA_USE_CASES, MAX_USE_CASES, task_world)
from grec_tf.errors import ConfigError, DataError
from grec_tf.metrics import roc_auc

# Content hashes of generate_tables(600, seed=4) and of its card.json, computed on main before task
# worlds existed: the default world must stay bit-identical (GENERATOR_VERSION unchanged).
DEFAULT_TABLES_SHA256 = "13a8600f17df1df40e2626549f696cb947b5d7c5466025103a1f208ad9a210d5"
DEFAULT_CARD_SHA256 = "9bf76afd5ee9027a56ea4347807d1cf017878bafe34660e067139423f871d693"
WORLD = task_world(6, 8)     # 48 task sentences: 3 extra flows, 4 extra use cases (2 dense, 2 sparse)
ROWS = 6000


def _digest(tables) -> str:
    h = hashlib.sha256()
    for split, table in tables.items():
        h.update(split.encode())
        h.update(repr(table.to_pydict()).encode())
    return h.hexdigest()


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    tables = telecom.generate_tables(ROWS, seed=3, world=WORLD)
    return pa.concat_tables([tables[s] for s in telecom.SPLITS]).to_pandas()


def test_the_default_world_is_bit_identical_to_the_generator_before_task_worlds(tmp_path):
    assert telecom.GENERATOR_VERSION == 1
    assert DEFAULT_WORLD.task_sentences == telecom.TASK_SENTENCES
    assert _digest(telecom.generate_tables(600, seed=4)) == DEFAULT_TABLES_SHA256
    assert _digest(telecom.generate_tables(600, seed=4, world=task_world(3, 4))) == DEFAULT_TABLES_SHA256
    telecom.write_dataset(tmp_path / "d", rows=600, seed=4)
    assert hashlib.sha256((tmp_path / "d" / "card.json").read_bytes()).hexdigest() == DEFAULT_CARD_SHA256


def test_an_extended_world_has_every_requested_task_sentence(frame):
    assert WORLD.flows == ("AAL", "EUP", "NSE", "F4", "F5", "F6")
    assert WORLD.use_cases == ("CTR", "ATC", "CVR", "CTCVR", "VIEW", "COMPARE", "SAVE", "SHARE")
    present = set(frame["flow"] + "/" + frame["use_case"])
    assert present == set(WORLD.task_sentences) and len(present) == 48
    positives = frame.groupby(["flow", "use_case"])["label"].sum()
    assert (positives > 0).all(), positives[positives == 0]


def test_dense_use_cases_on_every_impression_sparse_ones_only_on_clicked_ones(frame):
    clicked = frame[frame["use_case"] == "CTR"].set_index("impression_id")["label"]
    impressions = frame["impression_id"].nunique()
    assert WORLD.sparse == (False, False, True, False, False, True, False, True)
    for use_case, sparse in zip(WORLD.use_cases, WORLD.sparse):
        ids = frame.loc[frame["use_case"] == use_case, "impression_id"]
        assert ids.is_unique, use_case
        if sparse:
            assert set(ids) == set(clicked.index[clicked == 1]), use_case
        else:
            assert len(ids) == impressions, use_case


def test_oracle_p_is_a_probability_and_labels_follow_it(frame):
    p = frame["oracle_p"].to_numpy()
    assert ((p > 0) & (p < 1)).all()
    for use_case, rows in frame.groupby("use_case"):
        p, y = rows["oracle_p"].to_numpy(), rows["label"].to_numpy()
        standard_error = np.sqrt((p * (1 - p)).sum()) / len(p)
        assert abs(y.mean() - p.mean()) < 4 * standard_error, use_case
        # the oracle ranks its own labels: the planted signal is there for every use case
        assert roc_auc(y, p) > 0.6, use_case


def test_extra_flows_have_their_own_parameters_and_behaviour(frame):
    params = WORLD.flow_parameters
    assert list(params.template) == [0, 1, 2, 0, 1, 2]
    defaults = {"loyalty": lm.FLOW_LOYALTY, "price_sens": lm.FLOW_PRICE_SENS, "b_click": lm.B_CLICK,
                "b_atc": lm.B_ATC, "b_buy": lm.B_BUY}
    for name, default in defaults.items():
        values = getattr(params, name)
        assert len(np.unique(values)) == 6, name  # every flow differs from the others, its template included
        np.testing.assert_array_equal(values[:3], default)
    rates = frame[frame["use_case"] == "CTR"].groupby("flow")["oracle_p"].mean()
    assert rates.nunique() == 6
    # extra use cases: their own intercept per flow
    assert WORLD.event_intercepts.shape == (6, 4) and len(np.unique(WORLD.event_intercepts)) == 24


def test_worlds_are_deterministic_and_nested():
    a = telecom.generate_frames(800, seed=5, world=task_world(3, 8))["train"]
    b = telecom.generate_frames(800, seed=5, world=task_world(3, 8))["train"]
    pd.testing.assert_frame_equal(a, b)
    other = telecom.generate_frames(800, seed=6, world=task_world(3, 8))["train"]
    assert not a["label"].equals(other["label"])
    # more use cases leave the default ones (and every other draw) unchanged
    default = telecom.generate_frames(800, seed=5)["train"]
    kept = a[a["use_case"].isin(telecom.USE_CASES)].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, default)
    # ... and the first extra use cases of a larger world are those of a smaller one
    six = telecom.generate_frames(800, seed=5, world=task_world(3, 6))["train"]
    pd.testing.assert_frame_equal(a[a["use_case"].isin(six["use_case"].unique())].reset_index(drop=True), six)


def test_a_default_flow_keeps_its_rows_labels_in_a_world_with_more_flows():
    default = telecom.generate_frames(1500, seed=2)["train"]
    wide = telecom.generate_frames(1500, seed=2, world=task_world(6, 4))["train"]
    moved = set(wide.loc[wide["flow"].isin(["F4", "F5", "F6"]), "impression_id"])
    assert moved  # some sessions moved to the extra flows ...
    stayed = default[~default["impression_id"].isin(moved)].reset_index(drop=True)
    pd.testing.assert_frame_equal(wide[~wide["impression_id"].isin(moved)].reset_index(drop=True), stayed)


def test_task_world_arguments_are_checked():
    assert MAX_USE_CASES == 4 + len(EXTRA_USE_CASES)
    for args, name in (((2, 4), "num_flows"), ((3, 3), "num_use_cases"), ((3, MAX_USE_CASES + 1), "num_use_cases"),
                       ((3.0, 4), "num_flows")):
        with pytest.raises(DataError, match=name):
            task_world(*args)
    with pytest.raises(DataError, match="unknown flow"):
        telecom.generate_tables(100, seed=0, flows=["F4"])  # the default world has no F4


@pytest.mark.parametrize("key,value,expected", [
    ("telecom_flows", 2, "data.telecom_flows: expected >= 3"),
    ("telecom_use_cases", 3, "data.telecom_use_cases: expected in"),
    ("telecom_use_cases", MAX_USE_CASES + 1, "data.telecom_use_cases: expected in"),
    ("telecom_flows", "six", "data.telecom_flows"),
])
def test_bad_config_values_name_the_key(key, value, expected):
    with pytest.raises(ConfigError, match=expected):
        parse_config({"data": {key: value}})


def test_config_bounds_match_the_catalogue_of_use_cases():
    parse_config({"data": {"telecom_flows": 9, "telecom_use_cases": MAX_USE_CASES}})


def test_the_telecom_source_builds_the_configured_world(tmp_path):
    config = parse_config({"data": {"rows": 4000, "seed": 1, "telecom_flows": 4, "telecom_use_cases": 5,
                                    "flows": ["AAL", "F4"], "use_cases": ["CTR", "VIEW"]}})
    loaded = load_data(config, default_dir=str(tmp_path / "gen"))
    for split in telecom.SPLITS:
        assert set(loaded.frames[split]["flow"] + "/" + loaded.frames[split]["use_case"]) == {
            "AAL/CTR", "AAL/VIEW", "F4/CTR", "F4/VIEW"}, split
    assert "task world 4 flows x 5 use cases" in loaded.description
    card = json.loads((tmp_path / "gen" / "card.json").read_text())
    assert card["task_sentences"] == list(task_world(4, 5).task_sentences)
    # the same folder with the default world is regenerated, not reused
    load_data(parse_config({"data": {"rows": 4000, "seed": 1}}), default_dir=str(tmp_path / "gen"))
    assert json.loads((tmp_path / "gen" / "card.json").read_text())["task_sentences"] == list(telecom.TASK_SENTENCES)


@pytest.mark.parametrize("data,key", [({"flows": ["AAL", "F4"]}, "data.flows"),
                                      ({"telecom_flows": 4, "use_cases": ["CTR", "SAVE"]}, "data.use_cases")])
def test_names_outside_the_world_name_the_key(tmp_path, data, key):
    config = parse_config({"data": {"rows": 200, **data}})
    with pytest.raises(ConfigError, match=f"{key}: .* not in the telecom task world"):
        load_data(config, default_dir=str(tmp_path / "gen"))
    assert not (tmp_path / "gen").exists()  # refused before generating anything


def test_the_bayes_ceiling_refuses_an_extended_world(frame):
    default_flows = frame["flow"].isin(telecom.FLOWS)
    for column, value in (("flow", "F4"), ("use_case", "VIEW")):
        rows = frame[(frame[column] == value) & (default_flows | (column == "flow"))].head(5)
        with pytest.raises(DataError, match=f"covers the default telecom world only.*'{value}', a {column}"):
            telecom.ceiling_probabilities(rows)
    # a default task sentence keeps its distribution in a larger world: its rows are accepted
    rows = frame[default_flows & frame["use_case"].isin(telecom.USE_CASES)].head(8)
    ceiling = telecom.ceiling_probabilities(rows)
    assert ceiling.shape == (8,) and ((ceiling > 0) & (ceiling < 1)).all()
