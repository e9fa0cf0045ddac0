"""The ranking metrics: values on hand-computed examples, GAUC's weighting and skipping, the nan
conventions, input errors naming the position, and the per-task-sentence assembly."""
import math

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from grec_tf.metrics import (
    METRIC_KEYS,
    average_precision,
    group_auc,
    log_loss,
    roc_auc,
    task_sentence_metrics,
)
from grec_tf.metrics.report import metrics_table


def test_auc_and_ap_on_a_hand_computed_example_with_ties():
    y = [1, 0, 1, 0, 0]
    s = [0.9, 0.9, 0.5, 0.3, 0.5]
    # positive 0.9 beats 0.3 and 0.5 and ties 0.9 (1/2); positive 0.5 beats 0.3 and ties 0.5: 4 / 6
    assert roc_auc(y, s) == pytest.approx(4 / 6, abs=1e-15)
    assert roc_auc(np.array(y, dtype=bool), np.array(s, dtype=np.float32)) == pytest.approx(4 / 6, abs=1e-15)
    # thresholds 0.9: P 1/2 R 1/2; 0.5: P 2/4 R 1; 0.3: no new positive
    assert average_precision(y, s) == pytest.approx(0.5, abs=1e-15)
    assert average_precision([1, 0, 1], [0.9, 0.8, 0.7]) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3, abs=1e-15)


def test_log_loss_clips_probabilities_to_eps():
    assert log_loss([1, 0], [0.8, 0.4]) == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2, rel=1e-14)
    # a confident mistake costs -log(1e-15), not -log of the float epsilon scikit-learn would clip to
    clipped = -(math.log(1e-15) + math.log(1.0 - (1.0 - 1e-15))) / 2   # about 34.5 (36 at float eps)
    assert log_loss([1, 0], [0.0, 1.0]) == pytest.approx(clipped, rel=1e-12)
    assert log_loss([1], [0.0], eps=1e-3) == pytest.approx(-math.log(1e-3), rel=1e-12)
    assert log_loss([0, 0], [0.2, 0.2]) == pytest.approx(-math.log(0.8), rel=1e-14)  # a single class is fine


def _grouped_example():
    rows = [  # (group, label, score)
        ("a", 1, 0.9), ("a", 0, 0.5), ("a", 0, 0.95),                 # AUC 1/2, 3 rows
        ("b", 1, 0.6), ("b", 0, 0.1), ("b", 1, 0.3), ("b", 0, 0.4),   # AUC 3/4, 4 rows
        ("c", 1, 0.1), ("c", 1, 0.2),                                 # one class: skipped
        ("d", 0, 0.7),                                                # one class: skipped
        ("e", 1, 0.5), ("e", 0, 0.5),                                 # a tie: AUC 1/2, 2 rows
    ]
    g, y, s = (np.array(c) for c in zip(*rows))
    return g, y.astype(int), s.astype(float)


def test_group_auc_weights_groups_by_rows_and_skips_single_class_groups():
    g, y, s = _grouped_example()
    expected = (3 * 0.5 + 4 * 0.75 + 2 * 0.5) / 9   # the unweighted mean would be 0.583
    assert group_auc(y, s, g) == pytest.approx(expected, abs=1e-15)
    order = np.random.default_rng(0).permutation(len(y))   # row order does not matter
    assert group_auc(y[order], s[order], g[order]) == pytest.approx(expected, abs=1e-15)
    ids = {"a": 7, "b": -1, "c": 3, "d": 0, "e": 12}          # integer ids give the same answer
    assert group_auc(y, s, np.array([ids[k] for k in g])) == pytest.approx(expected, abs=1e-15)


def test_group_auc_is_the_row_weighted_mean_of_per_group_aucs_with_ties():
    rng = np.random.default_rng(2)
    n = 5000
    groups = rng.integers(0, 300, n)
    y = (rng.random(n) < 0.15).astype(int)
    s = rng.integers(0, 8, n) / 8 + 0.3 * y * rng.random(n)  # ties within groups
    num = den = 0.0
    for g in np.unique(groups):
        m = groups == g
        if 0 < y[m].sum() < m.sum():
            num += m.sum() * skm.roc_auc_score(y[m], s[m])
            den += m.sum()
    assert group_auc(y, s, groups) == pytest.approx(num / den, abs=1e-12)


def test_undefined_values_are_nan():
    assert math.isnan(roc_auc([1, 1, 1], [0.1, 0.2, 0.3]))
    assert math.isnan(roc_auc([0, 0], [0.1, 0.2]))
    assert math.isnan(roc_auc([], []))
    assert math.isnan(average_precision([0, 0], [0.1, 0.2]))
    assert math.isnan(average_precision([], []))
    assert average_precision([1, 1], [0.1, 0.2]) == 1.0
    assert math.isnan(group_auc([1, 0, 1], [0.1, 0.2, 0.3], [1, 2, 3]))
    assert math.isnan(group_auc([], [], []))
    assert math.isnan(log_loss([], []))


def test_bad_input_is_named_with_its_position():
    with pytest.raises(ValueError, match=r"labels: expected 0/1 labels, got 2 at position 1"):
        roc_auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match=r"labels: expected 0/1 labels, got 0.5 at position 2"):
        average_precision([0, 1, 0.5], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"scores: expected finite values, got nan at position 1"):
        roc_auc([0, 1], [0.1, float("nan")])
    with pytest.raises(ValueError, match=r"probs: expected finite values, got inf at position 0"):
        log_loss([0, 1], [float("inf"), 0.5])
    with pytest.raises(ValueError, match="expected 3"):
        roc_auc([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match=r"groups: expected 3 values"):
        group_auc([0, 1, 1], [0.1, 0.2, 0.3], [1, 2])
    frame = pd.DataFrame({"flow": ["AAL"] * 3, "use_case": ["CTR"] * 3, "label": [0, 1, 3], "p": [0.1, 0.2, 0.3]})
    with pytest.raises(ValueError, match=r"column 'label': expected 0/1 labels, got 3 at position 2"):
        task_sentence_metrics(frame, "p", group_column=None)
    frame["label"] = [0, 1, 1]
    frame.loc[1, "p"] = -np.inf
    with pytest.raises(ValueError, match=r"column 'p': expected finite values, got -inf at position 1"):
        task_sentence_metrics(frame, "p", group_column=None)


def test_task_sentence_metrics_per_task_sentence_and_use_case():
    rng = np.random.default_rng(3)
    n = 6000
    frame = pd.DataFrame({
        "flow": rng.choice(["NSE", "AAL", "ZZZ", "EUP"], n),
        "use_case": rng.choice(["CTCVR", "CTR", "XYZ", "ATC", "CVR"], n),
        "customer_id": rng.integers(0, 200, n),
    })
    frame["label"] = (rng.random(n) < 0.2).astype(np.int64)
    frame["p"] = np.clip(0.2 + 0.2 * frame["label"] * rng.random(n) + 0.1 * rng.standard_normal(n), 0.01, 0.99)
    out = task_sentence_metrics(frame, "p")
    use_cases = ["CTR", "ATC", "CVR", "CTCVR", "XYZ"]   # canonical order first, unknown ones sorted after
    expected_keys = [f"{f}/{u}" for f in ["AAL", "EUP", "NSE", "ZZZ"] for u in use_cases]
    expected_keys += [f"use_case/{u}" for u in use_cases]
    assert list(out) == expected_keys
    for key, entry in out.items():
        assert set(entry) == set(METRIC_KEYS)
        a, b = key.split("/")
        sub = frame[(frame["use_case"] == b) & ((frame["flow"] == a) | (a == "use_case"))]
        assert entry["rows"] == len(sub)
        assert entry["positive_rate"] == pytest.approx(sub["label"].mean())
        assert entry["auc"] == roc_auc(sub["label"], sub["p"])
        assert entry["ap"] == average_precision(sub["label"], sub["p"])
        assert entry["logloss"] == log_loss(sub["label"], sub["p"])
        assert entry["gauc"] == group_auc(sub["label"], sub["p"], sub["customer_id"])
    no_groups = task_sentence_metrics(frame, "p", group_column=None)
    assert all(math.isnan(e["gauc"]) for e in no_groups.values())
    with pytest.raises(ValueError, match="missing column"):
        task_sentence_metrics(frame.drop(columns=["use_case"]), "p")


REPORT_TEST = {
    "AAL/CTR": {"rows": 120, "auc": 0.71, "ap": 0.33, "gauc": 0.69, "logloss": 0.41},
    "use_case/CTR": {"rows": 300, "auc": 0.7, "ap": 0.3, "gauc": float("nan"), "logloss": 0.4},
    "EUP/CTR": {"rows": 180, "auc": 0.69, "ap": 0.28, "gauc": 0.66, "logloss": 0.39},
}


def _table_rows(table):
    """(header cells, [cells of each body row]) of a markdown table."""
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()]
    return cells[0], cells[2:]


def test_metrics_table_without_an_oracle_has_no_oracle_columns():
    header, rows = _table_rows(metrics_table(REPORT_TEST))
    assert header == ["task", "rows", "auc", "ap", "gauc", "logloss"]
    assert [r[0] for r in rows] == ["AAL/CTR", "EUP/CTR", "use_case/CTR"]  # task sentences, then use cases
    assert rows[0] == ["AAL/CTR", "120", "0.7100", "0.3300", "0.6900", "0.4100"]
    assert rows[2][4] == "-"  # an undefined GAUC
    assert metrics_table(REPORT_TEST, {}) == metrics_table(REPORT_TEST)


def test_metrics_table_with_an_oracle_shows_its_auc_gap_and_ap():
    oracle = {"AAL/CTR": {"auc": 0.8, "ap": 0.45}, "use_case/CTR": {"auc": 0.75, "ap": 0.4}}
    header, rows = _table_rows(metrics_table(REPORT_TEST, oracle))
    assert header == ["task", "rows", "auc", "oracle auc", "gap", "ap", "oracle ap", "gauc", "logloss"]
    assert rows[0] == ["AAL/CTR", "120", "0.7100", "0.8000", "0.0900", "0.3300", "0.4500", "0.6900", "0.4100"]
    assert rows[1][3:5] == ["-", "-"] and rows[1][6] == "-"  # a row the oracle does not cover
    assert rows[2][3:5] == ["0.7500", "0.0500"]


def test_task_sentence_metrics_leaves_absent_sentences_out_and_undefined_values_nan():
    frame = pd.DataFrame({"flow": ["EUP", "EUP", "AAL", "AAL"], "use_case": ["CVR", "CVR", "CTR", "CTR"],
                          "label": [0, 0, 1, 0], "p": [0.3, 0.4, 0.8, 0.2], "customer_id": [1, 2, 1, 1]})
    out = task_sentence_metrics(frame, "p")
    assert list(out) == ["AAL/CTR", "EUP/CVR", "use_case/CTR", "use_case/CVR"]
    cvr = out["EUP/CVR"]   # no positive: AUC, AP and GAUC undefined, logloss and rates defined
    assert math.isnan(cvr["auc"]) and math.isnan(cvr["ap"]) and math.isnan(cvr["gauc"])
    assert cvr["logloss"] == pytest.approx(-(math.log(0.7) + math.log(0.6)) / 2)
    assert cvr["rows"] == 2 and cvr["positive_rate"] == 0.0
    assert out["AAL/CTR"]["auc"] == 1.0 and out["AAL/CTR"]["gauc"] == 1.0
    assert task_sentence_metrics(frame.iloc[:0], "p") == {}
