"""Long-format frames -> model input arrays: padding, truncation to the most recent ids, dtypes."""
import numpy as np
import pandas as pd
import pytest

from grec_tf.data.feature_arrays import frame_to_arrays, padded_sequence
from grec_tf.data.feature_statistics import compute_feature_statistics, frequency_vocabulary
from grec_tf.errors import DataError
from tests.tiny_experiment import tiny_config, tiny_frame


def test_padded_sequence_keeps_most_recent_ids():
    values = pd.Series([["a", "b", "c", "d"], [], None, ["x"]], name="seq")
    out = padded_sequence(values, 3)
    assert out.tolist() == [["b", "c", "d"], ["", "", ""], ["", "", ""], ["x", "", ""]]
    ints = padded_sequence(pd.Series([[7, 8, 9, 10], [1, 2]], name="ids"), 3)
    assert ints.tolist() == [["8", "9", "10"], ["1", "2", ""]]


def test_padded_sequence_rejects_scalars():
    with pytest.raises(DataError, match="column 'seq'.*expected a list"):
        padded_sequence(pd.Series(["a", "b"], name="seq"), 3)


def test_frame_to_arrays_dtypes_and_shapes():
    config = tiny_config()
    frame = tiny_frame(10, seed=1)
    frame.loc[0, "query"] = None
    arrays = frame_to_arrays(frame, config)
    assert arrays["query"][0] == ""  # missing query = empty query, not the text "None"
    assert arrays["viewed"].shape == (10, 5) and arrays["item_vec"].shape == (10, 4)
    assert arrays["item_vec"].dtype == np.float32 and arrays["tenure"].dtype == np.float32
    assert arrays["label"].dtype == np.float32 and set(arrays["label"]) <= {0.0, 1.0}
    assert arrays["flow"].tolist() == frame["flow"].tolist()


def test_statistics_come_from_the_given_frame_only():
    config = tiny_config()
    frame = tiny_frame(200, seed=2)
    stats = compute_feature_statistics(frame, config)
    assert set(stats.vocabularies["plan"]) == set(frame["plan"])
    assert stats.moments["tenure"][0] == pytest.approx(frame["tenure"].mean(), rel=1e-5)
    assert stats.moments["tenure"][1] == pytest.approx(frame["tenure"].var(ddof=0), rel=1e-4)
    assert "" not in stats.vocabularies["viewed"]
    assert frequency_vocabulary(np.array(["b", "a", "b", "", "c", "a", "b"], dtype=object), 2) == ["b", "a"]
    assert "apple" in stats.text_vocabularies["query"]
