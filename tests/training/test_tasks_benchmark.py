"""The `tasks` benchmark at its quick size: report structure and finite numbers (not the outcome)."""
import json
import math

import pytest

from grec_tf.benchmarks import tasks
from grec_tf.errors import ConfigError
from pipelines.benchmark import resolve


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("tasks")
    return out, tasks.run(str(out), quick="1", models="grec,mmoe,ple,single_task")


def test_registered_as_a_benchmark():
    assert resolve("tasks") is tasks.run


def test_report_files_agree_and_cover_every_model_and_t(report):
    out, result = report
    assert json.loads((out / "tasks.json").read_text()) == json.loads(json.dumps(result))
    assert (out / "tasks.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result["quick"] is True and result["task_sentences"] == [3, 24]
    assert result["layout"] == {"3": {"flows": 1, "use_cases": 3}, "24": {"flows": 3, "use_cases": 8}}
    trained = set(result["models"])
    assert {"grec", "mmoe"} <= trained
    # a variant is either trained or skipped with its reason, never silently dropped
    assert trained | set(result["skipped"]) == {"grec", "mmoe", "ple", "single_task"}
    assert all("model.type" in reason for reason in result["skipped"].values())
    md = (out / "tasks.md").read_text()
    for name in trained:
        assert f"| 24 | {name} |" in md


def test_each_point_has_every_task_sentence_and_finite_numbers(report):
    _, result = report
    for name, by_t in result["models"].items():
        assert set(by_t) == {"3", "24"}
        assert len(by_t["3"]["auc_gap"]) == 3 and len(by_t["24"]["auc_gap"]) == 24
        assert by_t["3"]["mean_auc_gap_sparse"] is None or math.isfinite(by_t["3"]["mean_auc_gap_sparse"])
        for t, p in by_t.items():
            assert set(p["auc_gap"]) == set(p["oracle_auc"]) == set(p["auc"])
            for s, gap in p["auc_gap"].items():  # gap = oracle AUC - model AUC, AUCs in [0, 1]
                if not math.isnan(gap):
                    assert math.isclose(gap, p["oracle_auc"][s] - p["auc"][s]) and -1 <= gap <= 1, (name, t, s)
            for key in ("train_seconds", "train_ms_per_step", "infer_seconds", "infer_ms_per_1k_rows"):
                assert math.isfinite(p[key]) and p[key] > 0, (name, t, key)
            assert p["params"] > 0 and p["steps"] > 0
        # T = 24 adds the sparse COMPARE and SHARE tasks beside CVR
        assert any(s.endswith("/COMPARE") for s in by_t["24"]["auc_gap"])
        assert math.isfinite(by_t["24"]["mean_auc_gap_sparse"])


def test_targets_compare_grec_growth_with_mmoe(report):
    _, result = report
    growth = result["growth"]
    for name in ("grec", "mmoe"):
        p = result["models"][name]
        assert math.isclose(growth[name]["train_ms_per_step"],
                            p["24"]["train_ms_per_step"] / p["3"]["train_ms_per_step"])
    assert len(result["targets"]) == 2
    for target in result["targets"].values():
        assert set(target) == {"value", "limit", "pass"}
        assert target["pass"] == (target["value"] <= target["limit"])


def test_bad_options_name_what_is_wrong(tmp_path):
    with pytest.raises(ConfigError, match="models: unknown model"):
        tasks.run(str(tmp_path), models="grec,xgboost")
    with pytest.raises(ConfigError, match="quick"):
        tasks.run(str(tmp_path), quick="yes")
    base = tasks.load_config("configs/telecom.yaml")
    with pytest.raises(ConfigError, match="T = 48 needs 3 flows x 16 use cases"):
        tasks.task_config(base, 48, "grec")
    config = tasks.task_config(base, 6, "grec")
    assert config.data.flows == ["AAL", "EUP"] and config.data.use_cases == ["CTR", "ATC", "CVR"]
    assert (config.data.telecom_flows, config.data.telecom_use_cases) == (3, 8)
    assert config.model.towers == "task_sentence"
