"""The throughput benchmark at its ``quick`` size on a synthetic Adult table and a tiny telecom run: the
report's structure and ranges (no timing or outcome assertions), and DeepCTR rows skipped with a note
when deepctr cannot be imported."""
import json
import math
import sys

import numpy as np
import pandas as pd
import pytest

from grec_tf.benchmarks import throughput

PERSONS = 600


def synthetic_adult(path, persons: int = PERSONS, seed: int = 0) -> str:
    """A Parquet table with UCI Adult's columns whose two labels depend on age, education and relationship."""
    rng = np.random.default_rng(seed)
    age = rng.integers(17, 80, persons)
    education_num = rng.integers(1, 17, persons)
    relationship = rng.choice(["Husband", "Wife", "Own-child", "Not-in-family", "Unmarried"], persons)
    rich = rng.random(persons) < 1 / (1 + np.exp(-(0.05 * (age - 40) + 0.4 * (education_num - 10))))
    single = (relationship == "Own-child") | ((relationship == "Not-in-family") & (rng.random(persons) < 0.6))
    pd.DataFrame({
        "age": age, "workclass": rng.choice(["Private", "Self-emp", "Local-gov", "?"], persons),
        "fnlwgt": rng.integers(10_000, 500_000, persons),
        "education": np.array(["Basic", "HS-grad", "Bachelors", "Masters"])[np.minimum(education_num // 5, 3)],
        "educational-num": education_num,
        "marital-status": np.where(single, "Never-married", "Married-civ-spouse"),
        "occupation": rng.choice(["Sales", "Tech-support", "Craft-repair"], persons),
        "relationship": relationship, "race": rng.choice(["White", "Black", "Other"], persons),
        "gender": rng.choice(["Male", "Female"], persons),
        "capital-gain": np.where(rich, rng.integers(0, 5000, persons), 0), "capital-loss": np.zeros(persons, int),
        "hours-per-week": rng.integers(10, 60, persons), "native-country": rng.choice(["United-States", "?"], persons),
        "income": np.where(rich, ">50K", "<=50K"),
    }).to_parquet(path)
    return str(path)


@pytest.fixture(scope="module")
def adult_path(tmp_path_factory):
    return synthetic_adult(tmp_path_factory.mktemp("adult") / "adult.parquet")


@pytest.fixture(scope="module")
def report(tmp_path_factory, adult_path):
    pytest.importorskip("deepctr", reason="the optional peers extra (pip install -e '.[peers]') is not installed")
    out = tmp_path_factory.mktemp("throughput")
    result = throughput.run(str(out), adult_path=adult_path, models="grec,deepctr_mmoe", quick="1")
    return out, result


def _check_speeds(row, unit):
    for key in (f"train_{unit}_per_second", "train_rows_per_second", f"inference_{unit}_per_second",
                "inference_rows_per_second"):
        assert math.isfinite(row[key]) and row[key] > 0, key
    assert row["epochs_run"] in (1, 2) and row["timed_epochs"] == row["epochs_run"] - 1
    assert 0 < row["first_epoch_seconds"] <= row["train_seconds"] and row["params"] > 0


def test_report_structure_and_ranges(report):
    out, result = report
    assert json.loads((out / "throughput.json").read_text()) == json.loads(json.dumps(result))
    assert set(result["datasets"]) == {"adult", "telecom"}
    adult, telecom = result["datasets"]["adult"], result["datasets"]["telecom"]
    assert set(adult["rows"]) == {"grec/fp32", "grec/bf16", "deepctr_mmoe/fp32"}
    assert set(telecom["rows"]) == {"grec/fp32", "grec/bf16"}
    assert any("adult only" in note for note in telecom["notes"])
    # one Adult person is two long rows in GRec-TF's format; the splits hold every person once
    assert adult["data"]["train_rows"] == 2 * adult["data"]["train_persons"]
    assert sum(adult["data"][f"{s}_persons"] for s in ("train", "valid", "test")) == PERSONS
    for section in (adult, telecom):
        unit = section["unit"]
        for key, row in section["rows"].items():
            _check_speeds(row, unit)
            assert row["train_rows_per_second"] >= row[f"train_{unit}_per_second"]
            assert all(0.0 <= auc <= 1.0 for auc in row["auc"].values() if not math.isnan(auc)), key
    for row in adult["rows"].values():  # both tasks of every model, under the same task-sentence names
        assert set(row["auc"]) == {"adult/income", "adult/never_married"}
        assert 0.0 <= row["mean_auc"] <= 1.0
    assert adult["ratios"]["reference"] == "deepctr_mmoe/fp32"
    assert adult["ratios"]["vs_reference"]["deepctr_mmoe/fp32"] == {"train": 1.0, "inference": 1.0}
    bf16 = adult["ratios"]["bf16_over_fp32"]["grec"]
    assert bf16["train"] > 0 and abs(bf16["mean_auc_delta"]) <= 1.0
    assert len(result["targets"]) == 3
    for name, target in result["targets"].items():
        assert set(target) >= {"value", "limit", "pass"}
        assert isinstance(target["pass"], bool) and math.isfinite(target["value"]) and target["value"] > 0, name
    md = (out / "throughput.md").read_text()
    assert "## adult" in md and "## telecom" in md and "deepctr_mmoe/fp32" in md and "## Targets" in md
    assert "Load average" in md
    # the configs' warm-up + cosine decay is named in the budget every model shares
    assert adult["budget"]["optimizer"] == "Adam lr 0.002, warm-up + cosine decay (5% warm-up)"
    assert "Adam lr 0.002, warm-up + cosine decay (5% warm-up), at most" in md


def test_flops_flop_rates_and_the_step_profile(report):
    out, result = report
    adult = result["datasets"]["adult"]
    grec, peer = adult["rows"]["grec/fp32"], adult["rows"]["deepctr_mmoe/fp32"]
    # a person is two long rows: GRec-TF's forward FLOPs per person are twice those per row
    assert grec["forward_flops_per_row"] > 0
    assert grec["forward_flops_per_persons"] == pytest.approx(2 * grec["forward_flops_per_row"])
    assert peer["forward_flops_per_persons"] == pytest.approx(2 * peer["forward_flops_per_row"])
    assert peer["forward_flops_per_row"] > 0
    split = adult["ratios"]["flop_rate_split"]
    assert set(split) == set(adult["rows"])
    entry = split["grec/fp32"]
    assert entry["speed_ratio"] == pytest.approx(adult["ratios"]["vs_reference"]["grec/fp32"]["train"])
    assert entry["speed_ratio"] == pytest.approx(entry["flop_rate_ratio"] / entry["flops_ratio"])
    assert split["deepctr_mmoe/fp32"]["flops_ratio"] == pytest.approx(1.0)
    target = result["targets"]["GRec training persons/s >= 1.0x DeepCTR MMoE (adult)"]
    assert "flop rate" in target["detail"]
    # GRec's step is profiled in both precisions, and the reference's (DeepCTR MMoE) beside it
    for key in ("grec/fp32", "grec/bf16", "deepctr_mmoe/fp32"):
        profile = adult["rows"][key]["step_profile"]
        assert profile["op_ms_per_step"] > 0 and 0 < profile["matmul_share"] < 1
        assert sum(profile["op_ms_by_type"].values()) == pytest.approx(profile["op_ms_per_step"], rel=1e-3)
    # telecom has no DeepCTR reference: only GRec's two steps are profiled there
    telecom = result["datasets"]["telecom"]["rows"]
    assert {key for key, row in telecom.items() if "step_profile" in row} == {"grec/fp32", "grec/bf16"}
    assert any(op.startswith("_Mkl") or "MatMul" in op for op in adult["rows"]["grec/fp32"]["step_profile"]["op_ms_by_type"])
    md = (out / "throughput.md").read_text()
    assert "### Forward FLOPs and flop rate" in md and "### Where the training step's time goes" in md


def test_deepctr_rows_skipped_with_a_note_when_it_cannot_be_imported(tmp_path, adult_path, monkeypatch):
    for name in [m for m in sys.modules if m == "deepctr" or m.startswith("deepctr.")] + ["deepctr"]:
        monkeypatch.setitem(sys.modules, name, None)  # ``import deepctr...`` now raises ImportError
    result = throughput.run(str(tmp_path), adult_path=adult_path, telecom_rows="0",
                            models="deepctr_mmoe,deepctr_shared_bottom", quick="1")
    adult = result["datasets"]["adult"]
    assert adult["rows"] == {}
    assert len(adult["notes"]) == 1 and "deepctr is not importable" in adult["notes"][0]
    assert "telecom skipped" in result["notes"][0]
    target = result["targets"]["GRec training persons/s >= 1.0x DeepCTR MMoE (adult)"]
    assert target["value"] is None and target["pass"] is None
    assert result["environment"]["deepctr"] is None
    md = (tmp_path / "throughput.md").read_text()
    assert "deepctr is not importable" in md and "not measured" in md


def test_a_quality_variant_is_timed_under_its_own_name_and_tag(tmp_path, adult_path):
    result = throughput.run(str(tmp_path), adult_path=adult_path, telecom_rows="0", models="grec_relu",
                            quick="1", tag="relu")
    adult = result["datasets"]["adult"]
    assert set(adult["rows"]) == {"grec_relu/fp32", "grec_relu/bf16"}
    _check_speeds(adult["rows"]["grec_relu/fp32"], "persons")
    assert set(adult["ratios"]["bf16_over_fp32"]) == {"grec_relu"}
    assert result["options"]["tag"] == "relu"
    assert (tmp_path / "throughput_relu.json").exists() and not (tmp_path / "throughput.json").exists()
    with pytest.raises(ValueError, match="unknown \\['grec_swish'\\].*grec_relu"):
        throughput.run(str(tmp_path), adult_path=adult_path, models="grec_swish", quick="1")
