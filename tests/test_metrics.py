"""The NumPy ranking metrics agree with scikit-learn exactly, ties included."""
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


def _cases():
    rng = np.random.default_rng(0)
    cases = []
    for n, levels, rate in [(7, None, 0.4), (500, None, 0.1), (2000, 5, 0.3), (3000, 50, 0.02),
                            (1000, 2, 0.5), (400, 1, 0.3), (10_000, 200, 0.05)]:
        y = (rng.random(n) < rate).astype(np.int64)
        y[0], y[1] = 1, 0  # both classes
        if levels is None:
            s = rng.random(n) + 0.3 * y
        else:  # heavy ties
            s = rng.integers(0, levels, n) / max(levels, 1) + 0.2 * y * rng.random(n).round(1)
        cases.append((y, s))
    return cases


@pytest.mark.parametrize("case", range(7))
def test_auc_and_ap_match_sklearn_with_ties(case):
    y, s = _cases()[case]
    assert roc_auc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert average_precision(y, s) == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)
    # float32 scores, bool labels
    assert roc_auc(y.astype(bool), s.astype(np.float32)) == pytest.approx(
        skm.roc_auc_score(y, s.astype(np.float32)), abs=1e-12)


def test_log_loss_matches_sklearn():
    rng = np.random.default_rng(1)
    y = (rng.random(1000) < 0.2).astype(int)
    p = np.clip(rng.random(1000), 1e-4, 1 - 1e-4)
    assert log_loss(y, p) == pytest.approx(skm.log_loss(y, p, labels=[0, 1]), rel=1e-12)
    # clipping keeps it finite at 0 and 1
    assert math.isfinite(log_loss([1, 0], [0.0, 1.0]))


def test_group_auc_matches_per_group_sklearn():
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
    # string group ids give the same answer
    assert group_auc(y, s, np.char.add("c", groups.astype(str))) == pytest.approx(num / den, abs=1e-12)


def test_undefined_values_are_nan_and_bad_input_is_named():
    assert math.isnan(roc_auc([1, 1, 1], [0.1, 0.2, 0.3]))
    assert math.isnan(roc_auc([], []))
    assert math.isnan(average_precision([0, 0], [0.1, 0.2]))
    assert average_precision([1, 1], [0.1, 0.2]) == 1.0
    assert math.isnan(group_auc([1, 0, 1], [0.1, 0.2, 0.3], [1, 2, 3]))
    with pytest.raises(ValueError, match="0/1"):
        roc_auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="finite"):
        roc_auc([0, 1], [0.1, float("nan")])
    with pytest.raises(ValueError, match="expected 3"):
        roc_auc([0, 1, 1], [0.1, 0.2])


def test_task_sentence_metrics_per_task_sentence_and_use_case():
    rng = np.random.default_rng(3)
    n = 6000
    frame = pd.DataFrame({
        "flow": rng.choice(["NSE", "AAL", "EUP"], n),
        "use_case": rng.choice(["CTCVR", "CTR", "ATC", "CVR"], n),
        "customer_id": rng.integers(0, 200, n),
    })
    frame["label"] = (rng.random(n) < 0.2).astype(np.int64)
    frame["p"] = np.clip(0.2 + 0.2 * frame["label"] * rng.random(n) + 0.1 * rng.standard_normal(n), 0.01, 0.99)
    out = task_sentence_metrics(frame, "p")
    expected_keys = [f"{f}/{u}" for f in ["AAL", "EUP", "NSE"] for u in ["CTR", "ATC", "CVR", "CTCVR"]]
    expected_keys += [f"use_case/{u}" for u in ["CTR", "ATC", "CVR", "CTCVR"]]
    assert list(out) == expected_keys
    for key, entry in out.items():
        assert set(entry) == set(METRIC_KEYS)
        a, b = key.split("/")
        m = (frame["use_case"] == b) & ((frame["flow"] == a) | (a == "use_case"))
        sub = frame[m]
        assert entry["rows"] == len(sub)
        assert entry["positive_rate"] == pytest.approx(sub["label"].mean())
        assert entry["auc"] == pytest.approx(skm.roc_auc_score(sub["label"], sub["p"]), abs=1e-12)
        assert entry["ap"] == pytest.approx(skm.average_precision_score(sub["label"], sub["p"]), abs=1e-12)
        assert entry["logloss"] == pytest.approx(skm.log_loss(sub["label"], sub["p"]), rel=1e-10)
        assert entry["gauc"] == pytest.approx(group_auc(sub["label"], sub["p"], sub["customer_id"]))
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
