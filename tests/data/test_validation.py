"""validate_long_frame and read_table: one test per kind of bad input.

Every error must name the file, the column and the exact first bad row (0-based position), and show
the offending value.
"""
import numpy as np
import pandas as pd
import pytest

from grec_tf.config import parse_config
from grec_tf.data.validation import read_table, validate_long_frame
from grec_tf.errors import DataError

FILE = "data/train.parquet"

CONFIG = parse_config({
    "data": {"flows": ["AAL", "EUP"], "use_cases": ["CTR", "CVR"], "group_column": "customer_id"},
    "features": [
        {"name": "channel", "kind": "categorical"},
        {"name": "region_code", "kind": "categorical"},
        {"name": "tenure", "kind": "numerical"},
        {"name": "lines", "kind": "numerical"},
        {"name": "query", "kind": "text"},
        {"name": "pages", "kind": "sequence"},
        {"name": "item_vec", "kind": "embedding", "dim": 3, "group": "item"},
        {"name": "item_id", "kind": "item_id", "group": "item"},
    ],
})


def good_frame(n: int = 6) -> pd.DataFrame:
    return pd.DataFrame({
        "flow": ["AAL", "EUP"] * (n // 2),
        "use_case": ["CTR", "CVR"] * (n // 2),
        "label": [0, 1] * (n // 2),
        "customer_id": [f"c{i // 2}" for i in range(n)],
        "channel": ["web", "app", "store"] * (n // 3),
        "region_code": np.arange(n, dtype=np.int64) % 4,
        "tenure": np.linspace(0.0, 10.0, n),
        "lines": np.arange(n, dtype=np.int64),
        "query": ["red phone", "", None, "case", "", "watch"][:n],
        "pages": [["home", "phones"], [], ["deals"], ["home"], ["a", "b", "c"], []][:n],
        "item_vec": [np.array([0.1, 0.2, 0.3]) + i for i in range(n)],
        "item_id": [f"i{i}" for i in range(n)],
    })


def check(frame, column, row, *, value=None, allow_extra=True, file=FILE):
    with pytest.raises(DataError) as info:
        validate_long_frame(frame, CONFIG, file, allow_extra=allow_extra)
    err = info.value
    message = str(err)
    assert (err.file, err.column, err.row) == (file, column, row), message
    assert f"file {file}" in message
    assert f"column '{column}'" in message
    if row is not None:
        assert f"row {row}:" in message
    else:
        assert "row" not in message.split(":")[0]
    if value is not None:
        assert value in message, message
    assert "expected" in message
    return message


def test_a_good_frame_passes():
    validate_long_frame(good_frame(), CONFIG, FILE)
    validate_long_frame(good_frame(), CONFIG, FILE, allow_extra=False)


def test_a_parquet_round_trip_passes(tmp_path):
    path = tmp_path / "long.parquet"
    good_frame().to_parquet(path)
    frame = read_table(str(path))
    validate_long_frame(frame, CONFIG, str(path), allow_extra=False)
    arrow_backed = pd.read_parquet(path, dtype_backend="pyarrow")
    validate_long_frame(arrow_backed, CONFIG, str(path), allow_extra=False)


def test_bools_and_float_labels_are_labels():
    frame = good_frame()
    frame["label"] = frame["label"].astype(bool)
    validate_long_frame(frame, CONFIG, FILE)
    frame["label"] = frame["label"].astype(float)
    validate_long_frame(frame, CONFIG, FILE)


# ------------------------------------------------------------------------------------ columns
def test_missing_column():
    message = check(good_frame().drop(columns=["tenure"]), "tenure", None)
    assert "missing" in message


def test_missing_columns_names_the_first_and_lists_all():
    message = check(good_frame().drop(columns=["lines", "flow"]), "flow", None)
    assert "'lines'" in message


def test_extra_column_when_disallowed():
    frame = good_frame()
    frame["oracle_p"] = 0.5
    validate_long_frame(frame, CONFIG, FILE, allow_extra=True)
    message = check(frame, "oracle_p", None, allow_extra=False)
    assert "unexpected" in message


def test_duplicated_column():
    frame = good_frame()
    frame = pd.concat([frame, frame[["tenure"]]], axis=1)
    check(frame, "tenure", None)


def test_empty_frame():
    with pytest.raises(DataError) as info:
        validate_long_frame(good_frame().iloc[:0], CONFIG, FILE)
    assert info.value.file == FILE and "no rows" in str(info.value)


# ------------------------------------------------------------------------------------- dtypes
def test_categorical_float_column_is_a_wrong_dtype():
    frame = good_frame()
    frame["region_code"] = [1.0, 2.0, 3.0, 2.5, 1.0, 0.0]
    check(frame, "region_code", 3, value="2.5")


def test_categorical_float_codes_report_row_zero():
    frame = good_frame()
    frame["region_code"] = frame["region_code"].astype(float)
    check(frame, "region_code", 0, value="float")


def test_categorical_bool_is_a_wrong_dtype():
    frame = good_frame()
    frame["channel"] = [True, False] * 3
    check(frame, "channel", 0, value="True")


def test_categorical_mixed_str_and_int():
    frame = good_frame()
    frame["channel"] = pd.Series(["web", "app", "web", "app", 7, "web"], dtype=object)
    check(frame, "channel", 4, value="7")


def test_categorical_object_with_a_float():
    frame = good_frame()
    frame["item_id"] = pd.Series(["i0", "i1", 3.5, "i3", "i4", "i5"], dtype=object)
    check(frame, "item_id", 2, value="3.5")


def test_none_in_categorical():
    frame = good_frame()
    frame["channel"] = pd.Series(["web", "app", None, "web", None, "app"], dtype=object)
    message = check(frame, "channel", 2, value="None")
    assert "missing" in message


def test_numerical_strings_are_a_wrong_dtype():
    frame = good_frame()
    frame["tenure"] = ["1.5", "2", "3", "4", "5", "6"]
    check(frame, "tenure", 0, value="'1.5'")


def test_numerical_object_with_a_string():
    frame = good_frame()
    frame["lines"] = pd.Series([1, 2, "three", 4, 5, 6], dtype=object)
    check(frame, "lines", 2, value="'three'")


def test_numerical_bool_is_a_wrong_dtype():
    frame = good_frame()
    frame["lines"] = [True, False] * 3
    check(frame, "lines", 0)


def test_text_with_a_number():
    frame = good_frame()
    frame["query"] = pd.Series(["a", 42, "b", None, "", "c"], dtype=object)
    check(frame, "query", 1, value="42")


def test_text_accepts_missing_queries():
    frame = good_frame()
    frame["query"] = [None] * 6
    validate_long_frame(frame, CONFIG, FILE)


# ------------------------------------------------------------------------------------- values
def test_nan_in_numerical():
    frame = good_frame()
    frame.loc[4, "tenure"] = np.nan
    frame.loc[5, "tenure"] = np.nan
    message = check(frame, "tenure", 4, value="nan")
    assert "finite" in message


def test_inf_in_numerical():
    frame = good_frame()
    frame["lines"] = frame["lines"].astype(float)
    frame.loc[5, "lines"] = -np.inf
    check(frame, "lines", 5, value="-inf")


def test_missing_in_nullable_int_numerical():
    frame = good_frame()
    frame["lines"] = pd.array([1, 2, None, 4, 5, 6], dtype="Int64")
    check(frame, "lines", 2, value="nan")


def test_unknown_flow():
    frame = good_frame()
    frame.loc[3, "flow"] = "XYZ"
    message = check(frame, "flow", 3, value="'XYZ'")
    assert "AAL" in message and "data.flows" in message


def test_unknown_use_case():
    frame = good_frame()
    frame.loc[1, "use_case"] = "ATC"
    message = check(frame, "use_case", 1, value="'ATC'")
    assert "CTR" in message and "data.use_cases" in message


def test_label_two():
    frame = good_frame()
    frame.loc[4, "label"] = 2
    message = check(frame, "label", 4, value="2")
    assert "0 or 1" in message


def test_label_nan_and_string():
    frame = good_frame()
    frame["label"] = frame["label"].astype(float)
    frame.loc[2, "label"] = np.nan
    check(frame, "label", 2, value="nan")
    frame = good_frame()
    frame["label"] = ["0", "1"] * 3
    check(frame, "label", 0, value="'0'")


def test_missing_group_id():
    frame = good_frame()
    frame.loc[3, "customer_id"] = None
    check(frame, "customer_id", 3)


# --------------------------------------------------------------------------------- list columns
def test_embedding_of_wrong_dim():
    frame = good_frame()
    frame["item_vec"] = [[0.1, 0.2, 0.3]] * 2 + [[0.1, 0.2]] + [[0.1, 0.2, 0.3, 0.4]] + [[0.0] * 3] * 2
    message = check(frame, "item_vec", 2, value="[0.1, 0.2]")
    assert "length 2" in message and "exactly 3" in message


def test_embedding_with_nan_element():
    frame = good_frame()
    vectors = list(frame["item_vec"])
    vectors[3] = np.array([0.5, np.nan, 0.1])
    frame["item_vec"] = vectors
    message = check(frame, "item_vec", 3, value="nan")
    assert "element 1" in message


def test_embedding_with_inf_element_and_missing_row():
    frame = good_frame()
    vectors = list(frame["item_vec"])
    vectors[4] = [0.5, 0.2, np.inf]
    frame["item_vec"] = vectors
    check(frame, "item_vec", 4, value="inf")
    vectors[1] = None
    frame["item_vec"] = vectors
    check(frame, "item_vec", 1, value="None")


def test_embedding_of_strings():
    frame = good_frame()
    frame["item_vec"] = [["a", "b", "c"]] * 6
    check(frame, "item_vec", 0, value="'a'")


def test_list_column_with_a_non_list():
    frame = good_frame()
    pages = list(frame["pages"])
    pages[3] = "home phones"
    frame["pages"] = pd.Series(pages, dtype=object)
    message = check(frame, "pages", 3, value="'home phones'")
    assert "list" in message


def test_embedding_column_with_a_scalar():
    frame = good_frame()
    vectors = list(frame["item_vec"])
    vectors[5] = 0.3
    frame["item_vec"] = pd.Series(vectors, dtype=object)
    check(frame, "item_vec", 5, value="0.3")


def test_sequence_with_missing_row_or_element():
    frame = good_frame()
    frame["pages"] = pd.Series([["a"], ["b"], ["c"], ["d"], None, ["f"]], dtype=object)
    check(frame, "pages", 4, value="None")
    frame["pages"] = pd.Series([["a"], ["b", None], ["c"], ["d"], ["e"], ["f"]], dtype=object)
    check(frame, "pages", 1, value="None")


def test_sequence_of_floats_and_of_mixed_types():
    frame = good_frame()
    frame["pages"] = [[], [1.5], [2.0], [], [], []]
    check(frame, "pages", 1, value="1.5")
    frame["pages"] = pd.Series([["a"], [], ["b"], [3, 4], ["c"], []], dtype=object)
    check(frame, "pages", 3, value="3")


def test_sequence_of_ints_passes():
    frame = good_frame()
    frame["pages"] = [[1, 2], [], [3], [4, 5, 6], [7], []]
    validate_long_frame(frame, CONFIG, FILE)


def test_big_frame_is_checked_quickly():
    """No per-row Python on the happy path: 200k rows with list columns validate in well under 2 s."""
    import time

    n = 200_000
    frame = pd.concat([good_frame()] * (n // 6), ignore_index=True)
    start = time.perf_counter()
    validate_long_frame(frame, CONFIG, FILE)
    assert time.perf_counter() - start < 5.0


# ------------------------------------------------------------------------------------ read_table
def test_read_table_missing_file(tmp_path):
    path = str(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="not found") as info:
        read_table(path)
    assert info.value.file == path and path in str(info.value)


def test_read_table_empty_files(tmp_path):
    for name, content in (("zero.csv", b""), ("zero.parquet", b"")):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(DataError, match="empty file") as info:
            read_table(str(path))
        assert str(path) in str(info.value)
    header_only = tmp_path / "header.csv"
    header_only.write_text("flow,use_case,label\n")
    with pytest.raises(DataError, match="no rows") as info:
        read_table(str(header_only))
    assert str(header_only) in str(info.value)
    assert len(read_table(str(header_only), allow_empty=True)) == 0
    empty_parquet = tmp_path / "empty.parquet"
    good_frame().iloc[:0].to_parquet(empty_parquet)
    with pytest.raises(DataError, match="no rows"):
        read_table(str(empty_parquet))


def test_read_table_unreadable_formats(tmp_path):
    corrupt = tmp_path / "bad.parquet"
    corrupt.write_text("this is not parquet")
    with pytest.raises(DataError, match="Parquet") as info:
        read_table(str(corrupt))
    assert str(corrupt) in str(info.value)
    other = tmp_path / "table.xlsx"
    other.write_text("x")
    with pytest.raises(DataError, match="unsupported file format"):
        read_table(str(other))
    with pytest.raises(DataError, match="directory"):
        read_table(str(tmp_path))


def test_read_table_malformed_csv_names_the_row(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("a,b\n1,2\n3,4\n5,6,7\n")
    with pytest.raises(DataError) as info:
        read_table(str(path))
    assert info.value.row == 2 and "row 2:" in str(info.value)


def test_read_table_csv_then_validate(tmp_path):
    frame = good_frame().drop(columns=["pages", "item_vec"])
    frame.loc[3, "tenure"] = np.nan
    path = tmp_path / "long.csv"
    frame.to_csv(path, index=False)
    config = parse_config({
        "data": {"flows": ["AAL", "EUP"], "use_cases": ["CTR", "CVR"], "group_column": "customer_id"},
        "features": [{"name": "channel", "kind": "categorical"},
                     {"name": "tenure", "kind": "numerical"},
                     {"name": "query", "kind": "text"}],
    })
    with pytest.raises(DataError) as info:
        validate_long_frame(read_table(str(path)), config, str(path))
    assert (info.value.file, info.value.column, info.value.row) == (str(path), "tenure", 3)
