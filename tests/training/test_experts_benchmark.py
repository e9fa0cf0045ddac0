"""The `experts` benchmark (the paper's Fig. 4) at its quick size: report structure, finite numbers in range,
targets computed from the values, the plot written - on telecom and on a tiny CSV in the AliExpress layout."""
import json
import math
import os

import numpy as np
import pandas as pd
import pytest

from grec_tf.benchmarks import experts
from grec_tf.benchmarks.seed_comparison import seed_statistics
from grec_tf.data import aliexpress
from pipelines.benchmark import resolve

SHARED_SAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "aliexpress")


def check_report(out, report, name, use_cases, points):
    """What every quick report must hold, whatever the outcome."""
    written = json.loads((out / f"{name}.json").read_text())
    assert written == json.loads(json.dumps(report))
    assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(report["summary"]) == {experts.point_key(k, e) for k, e in points}
    for key, s in report["summary"].items():
        assert 0.0 <= s["mean_auc"]["mean"] <= 1.0, key
        assert set(s["use_cases"]) == set(use_cases)
        flops = s["flops_per_example"]
        assert math.isfinite(flops["total"]) and flops["total"] > flops["routing"] > 0, key
        assert s["step_ms"] > 0 and s["params"] > 0
    for claim, target in report["targets"].items():
        assert target["pass"] == (target["value"] > target["limit"] if claim.startswith("AUC")
                                  else target["value"] <= target["limit"]), claim
    markdown = (out / f"{name}.md").read_text()
    assert "Fig. 4" in markdown and "python -m pipelines.benchmark experts" in markdown
    assert f"![AUC, FLOPs and step time vs E]({name}.png)" in markdown
    return written


@pytest.fixture(scope="module")
def telecom(tmp_path_factory):
    out = tmp_path_factory.mktemp("experts")
    return out, experts.run(str(out), quick="1")


def test_registered_as_a_benchmark():
    assert resolve("experts") is experts.run


def test_quick_telecom_grid_and_targets(telecom):
    out, report = telecom
    check_report(out, report, "experts_telecom", ["CTR", "CTCVR", "ATC", "CVR"], [(1, 1), (1, 2), (2, 2)])
    assert report["options"]["top_k"] == [1, 2] and report["options"]["experts"] == [1, 2]
    assert report["notes"] == ["top-k 2 with E = 1 skipped: top-k cannot exceed the experts"]
    markdown = (out / "experts_telecom.md").read_text()
    assert "top-k 2 with E = 1 skipped" in markdown
    assert "by its sign only" in markdown  # one seed: no standard error, and the verdict says so
    # the growth ratio is read from the same rounds' samples, and FLOPs growth from the FLOPs
    summary, growth = report["summary"], report["step_growth"]
    assert set(growth) == {"k1_E2/k1_E1"} and growth["k1_E2/k1_E1"] > 0
    flops = summary["k1_E2"]["flops_per_example"]["total"] / summary["k1_E1"]["flops_per_example"]["total"]
    target = report["targets"][f"FLOPs per example grow <= {experts.GROWTH_LIMIT}x from E=1 to E=2 at top-k=1"]
    assert target["value"] == pytest.approx(flops, rel=1e-3)
    # top-k 2 runs twice the experts of top-k 1 per example: more FLOPs at the same E
    assert summary["k2_E2"]["flops_per_example"]["total"] > summary["k1_E2"]["flops_per_example"]["total"]
    assert len(report["targets"]) == 1 + 3  # top-k at E = 2; AUC, FLOPs and step vs E at k = 1


def test_targets_follow_the_two_standard_error_rule():
    def point(aucs, flops):
        return {"mean_auc": seed_statistics(aucs), "flops_per_example": {"total": flops, "routing": 1.0}}

    summary = {"k1_E4": point([0.70, 0.71, 0.72], 100.0), "k4_E4": point([0.80, 0.81, 0.82], 110.0),
               "k1_E8": point([0.70, 0.72, 0.71], 130.0), "k4_E8": point([0.80, 0.80, 0.81], 120.0)}
    checks = experts.targets(summary, [1, 4], [4, 8], {"k1_E8/k1_E4": 1.1, "k4_E8/k4_E4": 2.0})
    assert checks["AUC rises with top-k at E=4: AUC(k=4) - AUC(k=1) > 2 SE"]["pass"]
    assert not checks["AUC rises with E at top-k=1: AUC(E=8) - AUC(E=4) > 2 SE"]["pass"]  # a tie, not a rise
    assert checks["AUC rises with E at top-k=1: AUC(E=8) - AUC(E=4) > 2 SE"]["detail"] == "tie"
    assert not checks["FLOPs per example grow <= 1.25x from E=4 to E=8 at top-k=1"]["pass"]  # x1.3
    assert checks["FLOPs per example grow <= 1.25x from E=4 to E=8 at top-k=4"]["pass"]
    assert checks["training step time grows <= 1.25x from E=4 to E=8 at top-k=1"]["pass"]
    assert not checks["training step time grows <= 1.25x from E=4 to E=8 at top-k=4"]["pass"]


def test_top_k_above_the_experts_is_skipped_with_a_note():
    points, notes = experts.grid([1, 4], [2, 4])
    assert points == [(1, 2), (1, 4), (4, 4)]
    assert notes == ["top-k 4 with E = 2 skipped: top-k cannot exceed the experts"]


def write_aliexpress_layout(path, rows=1200, seed=0):
    """A CSV in the AliExpress release's layout whose click depends on categorical_1 and numerical_1."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"search_id": np.repeat(np.arange(rows // 4), 4)})
    for name in aliexpress.CATEGORICAL_COLUMNS:
        frame[name] = rng.integers(0, 5, rows)
    for name in aliexpress.NUMERICAL_COLUMNS:
        frame[name] = rng.random(rows).round(4)
    logit = -1.0 + 1.2 * (frame["categorical_1"] >= 3) + 1.5 * frame["numerical_1"]
    frame["click"] = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    frame["conversion"] = frame["click"] * (rng.random(rows) < 0.4)
    frame.to_csv(path, index=False)


def test_quick_run_on_the_aliexpress_layout(tmp_path):
    write_aliexpress_layout(tmp_path / "train.csv")
    out = tmp_path / "out"
    report = experts.run(str(out), config="configs/aliexpress.yaml", quick="1", top_k="1,2", experts="1",
                         overrides=f"data.path={tmp_path / 'train.csv'};data.batch_size=128")
    assert report["dataset"] == "aliexpress" and report["sentences"] == ["NL/CTR", "NL/CTCVR"]
    assert report["notes"] == ["top-k 2 with E = 1 skipped: top-k cannot exceed the experts"]
    check_report(out, report, "experts_aliexpress", ["CTR", "CTCVR"], [(1, 1)])
    assert math.isfinite(report["summary"]["k1_E1"]["use_cases"]["CTR"]["mean"])


@pytest.mark.skipif(not os.path.isdir(SHARED_SAMPLES), reason="../shared/data/aliexpress (real samples) is absent")
def test_quick_run_on_the_shared_aliexpress_sample(tmp_path):
    report = experts.run(str(tmp_path), config="configs/aliexpress.yaml", quick="1", top_k="1", experts="2",
                         overrides=f"data.path={os.path.join(SHARED_SAMPLES, 'sample_b_train.csv')};"
                                   "data.batch_size=32")
    assert set(report["summary"]) == {"k1_E2"}
    assert all(math.isfinite(s["flops_per_example"]["total"]) for s in report["summary"].values())
