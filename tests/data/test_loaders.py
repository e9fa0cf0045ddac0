"""Real-data loaders (AliExpress, census-income, Adult), the wide->long rule and the splits.

Each loader is tested on the real samples in ``<repo>/../shared/data`` (skipped with a reason when
that folder is absent) and on small files these tests write themselves.
"""
import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from grec_tf.config import load_config
from grec_tf.data import adult, aliexpress, census_income
from grec_tf.data.adult import load_adult
from grec_tf.data.aliexpress import load_aliexpress
from grec_tf.data.census_income import load_census_income
from grec_tf.data.long_format import LabelRule, parse_rules, wide_to_long
from grec_tf.data.splits import split_frame
from grec_tf.data.validation import validate_long_frame
from grec_tf.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
CONFIGS = REPO / "configs"
needs_shared = pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"real data folder {SHARED} (../shared/data from the repo root) is absent")


def config(name):
    return load_config(str(CONFIGS / f"{name}.yaml"))


# ------------------------------------------------------------------------------------- configs
@pytest.mark.parametrize("name,source,flows,use_cases,group", [
    ("aliexpress", "aliexpress", ["NL"], ["CTR", "CTCVR"], "search_id"),
    ("census_income", "census_income", ["census"], ["income", "never_married"], "row_id"),
    ("adult", "adult", ["adult"], ["income", "never_married"], "row_id"),
])
def test_configs_load(name, source, flows, use_cases, group):
    cfg = config(name)
    assert cfg.data.source == source
    assert cfg.data.flows == flows and cfg.data.use_cases == use_cases
    assert cfg.data.group_column == group and cfg.data.path
    kinds = {f.kind for f in cfg.features}
    assert kinds == {"categorical", "numerical"}


def test_config_features_match_the_loaders():
    ali = config("aliexpress")
    assert [f.name for f in ali.features if f.kind == "categorical"] == list(aliexpress.CATEGORICAL_COLUMNS)
    assert [f.name for f in ali.features if f.kind == "numerical"] == list(aliexpress.NUMERICAL_COLUMNS)
    assert ali.data.flow == "NL"
    for name, module in (("census_income", census_income), ("adult", adult)):
        names = {f.name for f in config(name).features}
        assert names == set(module.FEATURE_COLUMNS)
        assert not names & {"income", "marital_stat", "marital_status", "instance_weight", "fnlwgt",
                            "row_id", "label"}


# ---------------------------------------------------------------------------------- wide->long
WIDE = pd.DataFrame({"id": [10, 11, 12, 13], "click": [1, 0, 1, 1], "conversion": [0, 0, 1, 1],
                     "x": [0.5, 1.5, 2.5, 3.5]})


def test_rule_forms_are_equivalent():
    forms = [
        {"CTCVR": "click & conversion"},
        {"CTCVR": ("click", "conversion")},
        {"CTCVR": ["click", "conversion"]},
        {"CTCVR": {"label": ["click", "conversion"]}},
        {"CTCVR": LabelRule(label=("click", "conversion"))},
    ]
    parsed = [parse_rules(f)["CTCVR"] for f in forms]
    assert all(p == LabelRule(("click", "conversion")) for p in parsed)
    assert parse_rules({"CVR": {"label": "conversion", "where": "click"}})["CVR"] == \
        LabelRule(("conversion",), ("click",))


def test_wide_to_long_rows_labels_and_order():
    long = wide_to_long(WIDE, {"CTR": "click", "CVR": {"label": "conversion", "where": "click"},
                               "CTCVR": "click & conversion"}, flow="NL")
    assert list(long.columns[:3]) == ["flow", "use_case", "label"]
    assert "click" not in long and "conversion" not in long
    # 4 CTR + 3 CVR (clicked rows only) + 4 CTCVR, impression-major in rule order
    assert long["id"].tolist() == [10, 10, 10, 11, 11, 12, 12, 12, 13, 13, 13]
    assert long["use_case"].tolist() == ["CTR", "CVR", "CTCVR", "CTR", "CTCVR"] + \
        ["CTR", "CVR", "CTCVR"] * 2
    assert long["label"].tolist() == [1, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1]
    assert long["label"].dtype == np.int64
    assert set(long["flow"]) == {"NL"}
    assert long["x"].tolist()[:3] == [0.5, 0.5, 0.5]


def test_wide_to_long_uses_an_existing_flow_column_and_can_keep_sources():
    wide = WIDE.assign(flow=["ES", "ES", "FR", "FR"])
    long = wide_to_long(wide, {"CTR": "click"}, keep_label_sources=True)
    assert long["flow"].tolist() == ["ES", "ES", "FR", "FR"]
    assert (long["label"] == long["click"]).all()


def test_wide_to_long_errors():
    with pytest.raises(DataError) as info:
        wide_to_long(WIDE, {"ATC": "add_to_cart"}, flow="NL", file="wide.csv")
    assert info.value.column == "add_to_cart" and "wide.csv" in str(info.value)
    bad = WIDE.assign(click=[1, 0, 2, 1])
    with pytest.raises(DataError) as info:
        wide_to_long(bad, {"CTR": "click"}, flow="NL", file="wide.csv")
    assert (info.value.column, info.value.row) == ("click", 2) and "0 or 1" in str(info.value)
    with pytest.raises(DataError, match="flow"):
        wide_to_long(WIDE, {"CTR": "click"})
    with pytest.raises(ConfigError):
        wide_to_long(WIDE, {"CTR": {"labels": "click"}}, flow="NL")
    with pytest.raises(ConfigError):
        wide_to_long(WIDE, {}, flow="NL")


# ------------------------------------------------------------------------------------ AliExpress
def write_aliexpress(path, n=6, seed=0, **overrides):
    rng = np.random.default_rng(seed)
    click = np.array([1, 0, 1, 1, 0, 1][:n])
    columns = {"search_id": np.array([5, 5, 6, 7, 7, 8][:n])}
    for name in aliexpress.CATEGORICAL_COLUMNS:
        columns[name] = rng.integers(0, 9, n)
    for name in aliexpress.NUMERICAL_COLUMNS:
        columns[name] = rng.random(n).round(4)
    columns["click"] = click
    columns["conversion"] = click * np.array([1, 0, 0, 1, 0, 0][:n])
    columns.update(overrides)
    frame = pd.DataFrame(columns)
    frame.to_csv(path, index=False)
    return frame


def check_aliexpress(long, raw, flow):
    assert len(long) == 2 * len(raw)
    assert set(long["flow"]) == {flow}
    ctr, ctcvr = long[long.use_case == "CTR"], long[long.use_case == "CTCVR"]
    np.testing.assert_array_equal(ctr["label"].to_numpy(), raw["click"].to_numpy())
    np.testing.assert_array_equal(ctcvr["label"].to_numpy(),
                                  (raw["click"] & raw["conversion"]).to_numpy())
    np.testing.assert_array_equal(ctr["search_id"].to_numpy(), raw["search_id"].to_numpy())
    np.testing.assert_array_equal(ctcvr["numerical_63"].to_numpy(),
                                  raw["numerical_63"].to_numpy(dtype=np.float32))
    np.testing.assert_array_equal(ctr["categorical_16"].to_numpy(), raw["categorical_16"].to_numpy())
    assert long["numerical_1"].dtype == np.float32


def test_aliexpress_on_a_small_file(tmp_path):
    path = tmp_path / "train.csv"
    raw = write_aliexpress(path)
    long = load_aliexpress(str(path), "NL")
    check_aliexpress(long, raw, "NL")
    validate_long_frame(long, config("aliexpress"), str(path), allow_extra=False)


def test_aliexpress_cvr_rows_are_the_clicked_ones(tmp_path):
    path = tmp_path / "train.csv"
    raw = write_aliexpress(path)
    long = load_aliexpress(str(path), "ES", use_cases=("CTR", "CVR", "CTCVR"))
    cvr = long[long.use_case == "CVR"]
    assert len(cvr) == raw["click"].sum()
    np.testing.assert_array_equal(cvr["label"].to_numpy(),
                                  raw.loc[raw.click == 1, "conversion"].to_numpy())
    assert len(long) == 2 * len(raw) + raw["click"].sum()


def test_aliexpress_header_whitespace_and_case(tmp_path):
    path = tmp_path / "train.csv"
    raw = write_aliexpress(path)
    text = path.read_text().splitlines()
    text[0] = ", ".join(c.upper() if c == "search_id" else c for c in text[0].split(","))
    path.write_text("\n".join(text) + "\n")
    check_aliexpress(load_aliexpress(str(path), "NL"), raw, "NL")


def test_aliexpress_missing_column_names_the_file(tmp_path):
    path = tmp_path / "train.csv"
    write_aliexpress(path)
    frame = pd.read_csv(path).drop(columns=["numerical_17", "conversion"])
    frame.to_csv(path, index=False)
    with pytest.raises(DataError) as info:
        load_aliexpress(str(path), "NL")
    assert info.value.file == str(path) and info.value.column == "numerical_17"
    assert str(path) in str(info.value) and "conversion" in str(info.value)


def test_aliexpress_bad_label_and_bad_arguments(tmp_path):
    path = tmp_path / "train.csv"
    write_aliexpress(path, conversion=[0, 0, 0, 2, 0, 0])
    with pytest.raises(DataError) as info:
        load_aliexpress(str(path), "NL")
    assert (info.value.file, info.value.column, info.value.row) == (str(path), "conversion", 3)
    with pytest.raises(ConfigError, match="data.flow"):
        load_aliexpress(str(path), None)
    with pytest.raises(ConfigError, match="ATC"):
        load_aliexpress(str(path), "NL", use_cases=("CTR", "ATC"))
    with pytest.raises(DataError, match="not found"):
        load_aliexpress(str(tmp_path / "missing.csv"), "NL")


@needs_shared
@pytest.mark.parametrize("name", ["sample_a_train", "sample_a_test", "sample_b_train", "sample_b_test"])
def test_aliexpress_real_samples(name):
    path = SHARED / "aliexpress" / f"{name}.csv"
    raw = pd.read_csv(path)
    long = load_aliexpress(str(path), "NL")
    check_aliexpress(long, raw, "NL")
    assert long["label"][long.use_case == "CTR"].sum() == raw["click"].sum() > 0
    validate_long_frame(long, config("aliexpress"), str(path), allow_extra=False)


# --------------------------------------------------------------------------------- census-income
def census_line(age="40", marital="Never married", income="- 50000.", **fields):
    values = []
    for name, kind in census_income.COLUMNS:
        if name in fields:
            values.append(fields[name])
        elif name == "age":
            values.append(age)
        elif name == "marital_stat":
            values.append(marital)
        elif name == "income":
            values.append(income)
        elif kind in ("numerical", "weight"):
            values.append("12.5")
        else:
            values.append(f"{name} value")
    return ", ".join(values)


def write_census(path, lines):
    text = "\n".join(lines) + "\n"
    if str(path).endswith(".gz"):
        with gzip.open(path, "wt") as handle:
            handle.write(text)
    else:
        Path(path).write_text(text)


def test_census_on_a_small_file(tmp_path):
    path = tmp_path / "census-income.data.gz"
    write_census(path, [
        census_line("62", "Married-civilian spouse present", "50000+."),
        census_line("18", "Never married", "- 50000."),
        census_line("35", "Divorced", "- 50000."),
    ])
    long = load_census_income(str(path))
    assert len(long) == 6 and set(long["flow"]) == {"census"}
    income = long[long.use_case == "income"]
    never = long[long.use_case == "never_married"]
    assert income["label"].tolist() == [1, 0, 0] and never["label"].tolist() == [0, 1, 0]
    assert income["row_id"].tolist() == [0, 1, 2]
    assert income["age"].tolist() == [62.0, 18.0, 35.0]
    assert income["class_of_worker"].iloc[0] == "class_of_worker value"
    assert "marital_stat" not in long and "income" not in long
    validate_long_frame(long, config("census_income"), str(path))


def test_census_bad_files(tmp_path):
    path = tmp_path / "census.data"
    write_census(path, [census_line(), census_line(income="maybe"), census_line()])
    with pytest.raises(DataError) as info:
        load_census_income(str(path))
    assert (info.value.file, info.value.column, info.value.row) == (str(path), "income", 1)

    write_census(path, [census_line(), census_line(), census_line(age="forty")])
    with pytest.raises(DataError) as info:
        load_census_income(str(path))
    assert (info.value.column, info.value.row) == ("age", 2) and "'forty'" in str(info.value)

    write_census(path, [census_line(), census_line().rsplit(", ", 2)[0]])  # a short line
    with pytest.raises(DataError) as info:
        load_census_income(str(path))
    assert info.value.row == 1 and "42" in str(info.value)

    write_census(path, [census_line(), census_line() + ", extra"])  # a long line
    with pytest.raises(DataError) as info:
        load_census_income(str(path))
    assert info.value.row == 1 and str(path) in str(info.value)

    write_census(path, [", ".join(["1"] * 10)])
    with pytest.raises(DataError, match="expected 42 fields"):
        load_census_income(str(path))

    path.write_text("")
    with pytest.raises(DataError, match="empty file"):
        load_census_income(str(path))


@needs_shared
def test_census_real_sample():
    path = SHARED / "census-income" / "census-income.sample"
    raw = pd.read_csv(path, header=None, sep=", ", engine="python")
    long = load_census_income(str(path))
    assert len(long) == 2 * len(raw) == 400
    income = long[long.use_case == "income"]
    never = long[long.use_case == "never_married"]
    np.testing.assert_array_equal(income["label"].to_numpy(), (raw[41] == "50000+.").to_numpy())
    np.testing.assert_array_equal(never["label"].to_numpy(), (raw[7] == "Never married").to_numpy())
    np.testing.assert_array_equal(income["instance_weight"].to_numpy(), raw[24].to_numpy())
    np.testing.assert_array_equal(income["education"].to_numpy(), raw[4].to_numpy())
    assert 0 < income["label"].sum() < len(raw) and 0 < never["label"].sum() < len(raw)
    validate_long_frame(long, config("census_income"), str(path))


# ------------------------------------------------------------------------------------------ Adult
def adult_frame():
    return pd.DataFrame({
        "age": [25, 38, 28, 44], "workclass": ["Private", "Private", "Local-gov", "?"],
        "fnlwgt": [226802, 89814, 336951, 160323], "education": ["11th", "HS-grad", "Assoc-acdm", "Some-college"],
        "educational-num": [7, 9, 12, 10],
        "marital-status": ["Never-married", "Married-civ-spouse", "Married-civ-spouse", "Never-married"],
        "occupation": ["Machine-op-inspct", "Farming-fishing", "Protective-serv", "?"],
        "relationship": ["Own-child", "Husband", "Husband", "Not-in-family"],
        "race": ["Black", "White", "White", "Black"], "gender": ["Male", "Male", "Male", "Female"],
        "capital-gain": [0, 0, 0, 7688], "capital-loss": [0, 0, 0, 0], "hours-per-week": [40, 50, 40, 40],
        "native-country": ["United-States"] * 4, "income": ["<=50K", "<=50K", ">50K", ">50K"],
    })


def test_adult_on_a_small_parquet(tmp_path):
    path = tmp_path / "adult.parquet"
    adult_frame().to_parquet(path)
    long = load_adult(str(path))
    assert len(long) == 8 and set(long["flow"]) == {"adult"}
    assert long[long.use_case == "income"]["label"].tolist() == [0, 0, 1, 1]
    assert long[long.use_case == "never_married"]["label"].tolist() == [1, 0, 0, 1]
    assert "marital_status" not in long and "income" not in long
    validate_long_frame(long, config("adult"), str(path))


def test_adult_uci_spellings_in_a_csv(tmp_path):
    frame = adult_frame().rename(columns={"educational-num": "education-num", "gender": "sex"})
    frame["income"] = [" <=50K.", " <=50K.", " >50K.", " >50K."]  # adult.test style
    frame["workclass"] = " " + frame["workclass"]
    path = tmp_path / "adult.csv"
    frame.to_csv(path, index=False)
    long = load_adult(str(path))
    assert long[long.use_case == "income"]["label"].tolist() == [0, 0, 1, 1]
    assert long["workclass"].iloc[0] == "Private"
    validate_long_frame(long, config("adult"), str(path))


def test_adult_errors(tmp_path):
    path = tmp_path / "adult.parquet"
    adult_frame().drop(columns=["occupation"]).to_parquet(path)
    with pytest.raises(DataError) as info:
        load_adult(str(path))
    assert (info.value.file, info.value.column) == (str(path), "occupation")
    adult_frame().assign(income=["<=50K", "<=50K", "50K", ">50K"]).to_parquet(path)
    with pytest.raises(DataError) as info:
        load_adult(str(path))
    assert (info.value.column, info.value.row) == ("income", 2)
    adult_frame().assign(age=[25, 38, None, 44]).to_parquet(path)
    with pytest.raises(DataError) as info:
        load_adult(str(path))
    assert (info.value.column, info.value.row) == ("age", 2)


@needs_shared
def test_adult_real_parquet():
    path = SHARED / "adult" / "adult.parquet"
    raw = pd.read_parquet(path)
    long = load_adult(str(path))
    assert len(long) == 2 * len(raw) == 2 * 48_842
    income = long[long.use_case == "income"]
    never = long[long.use_case == "never_married"]
    np.testing.assert_array_equal(income["label"].to_numpy(), (raw["income"] == ">50K").to_numpy())
    np.testing.assert_array_equal(never["label"].to_numpy(),
                                  (raw["marital-status"] == "Never-married").to_numpy())
    assert set(long["flow"]) == {"adult"}
    validate_long_frame(long, config("adult"), str(path))


# ------------------------------------------------------------------------------------------ splits
def long_frame(n_keys=1000, per_key=3):
    keys = np.repeat(np.arange(n_keys) * 7 % 1009, per_key)
    return pd.DataFrame({"key": keys, "use_case": np.tile(["CTR", "ATC", "CVR"][:per_key], n_keys),
                         "x": np.arange(n_keys * per_key)})


def test_split_keeps_keys_together_and_is_deterministic():
    frame = long_frame()
    parts = split_frame(frame, 0.1, 0.2, seed=3, key_column="key")
    assert sum(len(p) for p in parts.values()) == len(frame)
    keys = {name: set(p["key"]) for name, p in parts.items()}
    assert not keys["train"] & keys["valid"] and not keys["train"] & keys["test"]
    assert not keys["valid"] & keys["test"]
    assert (len(keys["valid"]), len(keys["test"]), len(keys["train"])) == (100, 200, 700)
    for part in parts.values():
        assert (part.groupby("key").size() == 3).all()
        assert part["x"].is_monotonic_increasing and part.index.equals(pd.RangeIndex(len(part)))
    again = split_frame(frame.sample(frac=1.0, random_state=1), 0.1, 0.2, seed=3, key_column="key")
    assert {n: set(p["key"]) for n, p in again.items()} == keys  # row order does not matter
    other = split_frame(frame, 0.1, 0.2, seed=4, key_column="key")
    assert set(other["test"]["key"]) != keys["test"]


def test_split_on_a_real_loader_output(tmp_path):
    path = tmp_path / "train.csv"
    write_aliexpress(path)
    parts = split_frame(load_aliexpress(str(path), "NL"), 0.25, 0.25, seed=0, key_column="search_id")
    sizes = {name: part["search_id"].nunique() for name, part in parts.items()}
    assert sizes == {"train": 2, "valid": 1, "test": 1}


def test_split_errors():
    frame = long_frame(10)
    with pytest.raises(ConfigError, match="data.valid_fraction"):
        split_frame(frame, -0.1, 0.1, 0, "key")
    with pytest.raises(ConfigError, match="< 1"):
        split_frame(frame, 0.5, 0.5, 0, "key")
    with pytest.raises(DataError) as info:
        split_frame(frame, 0.1, 0.1, 0, "impression_id", file="f.parquet")
    assert info.value.column == "impression_id" and "f.parquet" in str(info.value)
    frame.loc[4, "key"] = np.nan
    with pytest.raises(DataError) as info:
        split_frame(frame, 0.1, 0.1, 0, "key")
    assert info.value.row == 4
    with pytest.raises(DataError, match="nothing left for training"):
        split_frame(long_frame(2), 0.4, 0.4, 0, "key")
