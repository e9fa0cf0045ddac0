"""``load_data``: which split mode applied for each ``data.source`` / ``data.path`` layout, and the
one-line description that says so with the row counts."""
import pandas as pd
import pytest

from grec_tf.config import parse_config
from grec_tf.data.sources import LoadedData, load_data, load_splits
from grec_tf.data.splits import SPLIT_MODES, SPLITS
from grec_tf.errors import ConfigError, DataError
from tests.data.test_loaders import config as dataset_config
from tests.data.test_loaders import write_aliexpress
from tests.tiny_experiment import tiny_config, tiny_frame


def long_config(path, **data):
    config = tiny_config()
    config.data.path = str(path)
    for key, value in data.items():
        setattr(config.data, key, value)
    return config


def counts(loaded: LoadedData) -> str:
    return " / ".join(f"{len(loaded.frames[s]):,}" for s in SPLITS)


def test_generated(tmp_path):
    config = parse_config({"data": {"rows": 600, "seed": 2, "flows": ["AAL"], "use_cases": ["CTR", "CVR"]}})
    loaded = load_data(config, default_dir=str(tmp_path / "gen"))
    assert loaded.split_mode == "generated"
    assert loaded.files == {s: str(tmp_path / "gen" / f"{s}.parquet") for s in SPLITS}
    for frame in loaded.frames.values():  # restricted to the configured task sentences
        assert set(frame["flow"]) == {"AAL"} and set(frame["use_case"]) <= {"CTR", "CVR"}
    assert loaded.description == (f"data: telecom generator folder {tmp_path / 'gen'} (600 impressions, seed 2; "
                                   f"train.parquet, valid.parquet, test.parquet): {counts(loaded)} rows "
                                   f"(train / valid / test)")


@pytest.mark.parametrize("ext", ["parquet", "csv"])
def test_files_used_as_given(tmp_path, ext):
    sizes = {"train": 300, "valid": 40, "test": 50}
    for i, split in enumerate(SPLITS):
        frame = tiny_frame(sizes[split], seed=i)
        if ext == "csv":  # a csv cannot hold lists or vectors: keep the scalar features only
            frame = frame.drop(columns=["viewed", "item_vec"])
            frame.to_csv(tmp_path / f"{split}.csv", index=False)
        else:
            frame.to_parquet(tmp_path / f"{split}.parquet")
    config = long_config(tmp_path, source=ext, valid_fraction=0.3, test_fraction=0.3)
    if ext == "csv":
        config.features = [f for f in config.features if f.kind not in ("sequence", "embedding")]
    loaded = load_data(config)
    assert loaded.split_mode == "files"
    assert {s: len(f) for s, f in loaded.frames.items()} == sizes  # the fractions did not apply
    assert loaded.files == {s: str(tmp_path / f"{s}.{ext}") for s in SPLITS}
    assert loaded.description == (f"data: {ext} folder {tmp_path} (train.{ext}, valid.{ext}, test.{ext} used as "
                                  f"given): 300 / 40 / 50 rows (train / valid / test)")


def test_one_file_split_by_group(tmp_path):
    path = tmp_path / "events.parquet"
    frame = tiny_frame(800, seed=3)
    frame.to_parquet(path)
    config = long_config(path, valid_fraction=0.2, test_fraction=0.1, seed=5)
    loaded = load_data(config)
    assert loaded.split_mode == "split_by_group"
    assert loaded.files == dict.fromkeys(SPLITS, str(path))
    customers = {s: set(f["customer_id"]) for s, f in loaded.frames.items()}
    assert not customers["train"] & customers["valid"] and not customers["valid"] & customers["test"]
    n = frame["customer_id"].nunique()
    assert (len(customers["valid"]), len(customers["test"])) == (round(n * 0.2), round(n * 0.1))
    assert sum(len(f) for f in loaded.frames.values()) == len(frame)
    assert loaded.description == (f"data: one file {path} split by customer_id (valid 0.2, test 0.1, seed 5): "
                                  f"{counts(loaded)} rows (train / valid / test)")
    pd.testing.assert_frame_equal(load_splits(config)["valid"], loaded.frames["valid"])


def test_release_test_keeps_the_release_test_file(tmp_path):
    train = write_aliexpress(tmp_path / "train.csv")
    test = write_aliexpress(tmp_path / "test.csv", n=4, seed=1)
    config = dataset_config("aliexpress")
    config.data.path, config.data.valid_fraction, config.data.test_fraction = str(tmp_path), 0.25, 0.5
    loaded = load_data(config)
    assert loaded.split_mode == "release_test"
    assert len(loaded.frames["test"]) == 2 * len(test)  # the whole test file, two use cases per impression
    assert len(loaded.frames["train"]) + len(loaded.frames["valid"]) == 2 * len(train)
    assert loaded.frames["valid"]["search_id"].nunique() == 1  # 0.25 of the 4 searches; test_fraction unused
    assert loaded.files == {"train": str(tmp_path / "train.csv"), "valid": str(tmp_path / "train.csv"),
                            "test": str(tmp_path / "test.csv")}
    assert loaded.description == (
        f"data: aliexpress folder {tmp_path} (the release's test.csv as test; train.csv split by search_id "
        f"into train and valid (valid 0.25, seed 0)): {counts(loaded)} rows (train / valid / test)")


def test_a_release_folder_with_only_its_train_file_is_split_by_group(tmp_path):
    write_aliexpress(tmp_path / "train.csv")
    config = dataset_config("aliexpress")
    config.data.path, config.data.valid_fraction, config.data.test_fraction = str(tmp_path), 0.25, 0.25
    loaded = load_data(config)
    assert loaded.split_mode == "split_by_group"
    assert loaded.description.startswith(f"data: one file {tmp_path / 'train.csv'} split by search_id "
                                          f"(valid 0.25, test 0.25, seed 0): ")


def test_folder_without_the_expected_files_says_what_it_expected(tmp_path):
    (tmp_path / "train.parquet").write_bytes(b"")
    with pytest.raises(DataError) as info:
        load_data(long_config(tmp_path))
    assert info.value.file == str(tmp_path)
    assert "valid.parquet" in str(info.value) and "one file" in str(info.value)
    config = dataset_config("aliexpress")
    config.data.path = str(tmp_path)
    with pytest.raises(DataError, match="train.csv and test.csv, or train.csv alone"):
        load_data(config)
    with pytest.raises(ConfigError, match="data.path"):
        load_data(long_config(""))


def test_split_mode_is_one_of_the_four():
    assert SPLIT_MODES == ("generated", "files", "release_test", "split_by_group")
    with pytest.raises(ValueError, match="split_mode"):
        LoadedData({}, {}, "by_time", "")


def test_errors_name_the_row_of_the_file_not_of_a_split(tmp_path):
    path = tmp_path / "events.parquet"
    frame = tiny_frame(400, seed=4)
    frame.loc[357, "label"] = 2
    frame.to_parquet(path)
    with pytest.raises(DataError) as info:
        load_data(long_config(path))
    assert (info.value.file, info.value.column, info.value.row) == (str(path), "label", 357)


def test_an_empty_split_names_the_split_and_how_it_was_made(tmp_path):
    path = tmp_path / "events.parquet"
    tiny_frame(200, seed=5).to_parquet(path)
    with pytest.raises(DataError, match=r"the valid split has no rows; expected at least one \(data: one file "
                                        r".* split by customer_id \(valid 0, test 0.1, seed 1\)\)"):
        load_data(long_config(path, valid_fraction=0.0))
