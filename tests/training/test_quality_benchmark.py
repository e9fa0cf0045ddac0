"""The quality benchmark at its ``quick`` size (telecom, and a synthetic Adult table for the DeepCTR peers):
the report's structure, ranges and seed aggregation, the tie/win rule on known inputs, skipped rows with
notes; never the outcome."""
import json
import math
import sys

import numpy as np
import pytest
import tensorflow as tf

from grec_tf.benchmarks import quality
from grec_tf.benchmarks.quality_report import markdown, verdict_words
from grec_tf.benchmarks.seed_comparison import compare, format_statistics, seed_statistics
from grec_tf.experiment import Experiment
from tests.tiny_experiment import tiny_config, tiny_frame
from tests.training.test_throughput_benchmark import synthetic_adult

SEEDS = 2


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def telecom(tmp_path_factory):
    out = tmp_path_factory.mktemp("quality")
    with pytest.MonkeyPatch.context() as patch:  # a variant whose config is invalid: skipped, not a crash
        patch.setitem(quality.VARIANTS, "broken", ["model.type=grec", "model.top_k=0"])
        # 8000 impressions: every CTR and ATC task sentence of the test split has positives
        report = quality.run(str(out), overrides="data.rows=8000", models="grec,mmoe,lightgbm,broken",
                             seeds=str(SEEDS), quick="1",
                             lightgbm_threads="1")
    return out, report


@pytest.fixture(scope="module")
def adult(tmp_path_factory):
    out = tmp_path_factory.mktemp("quality-adult")
    path = synthetic_adult(out / "adult.parquet")
    report = quality.run(str(out), config="configs/adult.yaml", overrides=f"data.path={path}",
                         models="grec,grec_piecewise_linear,deepctr_mmoe,deepctr_ple,lightgbm", seeds=str(SEEDS),
                         quick="1",
                         lightgbm_threads="1", tag="quick")
    return out, report


def _check_statistics(stats, low=0.0, high=1.0):
    assert stats["n"] == SEEDS and len(stats["values"]) == SEEDS
    assert all(low <= v <= high for v in stats["values"])
    assert math.isclose(stats["mean"], np.mean(stats["values"]), rel_tol=1e-12)
    assert math.isclose(stats["std"], np.std(stats["values"], ddof=1), rel_tol=1e-9, abs_tol=1e-15)
    assert math.isclose(stats["se"], stats["std"] / math.sqrt(SEEDS), rel_tol=1e-9, abs_tol=1e-15)


def test_telecom_report_structure_and_seed_aggregation(telecom):
    out, result = telecom
    assert json.loads((out / "quality_telecom.json").read_text()) == json.loads(json.dumps(result))
    sentences = result["sentences"]
    assert len(sentences) == 12 and result["options"]["seeds"] == [0, 1]
    expected = {"grec", "mmoe"} | ({"lightgbm"} if _importable("lightgbm") else set())
    assert set(result["summary"]) == set(result["runs"]) == expected
    assert any(note.startswith("broken skipped") and "model.top_k" in note for note in result["notes"])
    defined = [s for s in sentences if not math.isnan(result["oracle"][s]["auc"])]
    for name, summary in result["summary"].items():
        runs = result["runs"][name]
        assert [run["seed"] for run in runs] == [0, 1]
        _check_statistics(summary["mean_auc"])
        # the seed values are each seed's mean over the task sentences, in seed order
        for run, value in zip(runs, summary["mean_auc"]["values"]):
            aucs = [run["test"][s]["auc"] for s in sentences if not math.isnan(run["test"][s]["auc"])]
            assert math.isclose(value, np.mean(aucs), rel_tol=1e-12)
        for s in defined:
            assert summary["per_sentence"][s]["auc"]["values"] == [run["test"][s]["auc"] for run in runs]
        _check_statistics(summary["mean_auc_gap_to_oracle"], -1.0, 1.0)
        assert summary["train_seconds"]["mean"] > 0
    assert result["summary"]["grec"]["params"] > 0


def test_telecom_bayes_ceiling_identities(telecom):
    _, result = telecom
    ceiling, oracle = result["bayes_ceiling"], result["oracle"]
    defined = [s for s in result["sentences"] if not math.isnan(oracle[s]["auc"])]
    assert {s for s in result["sentences"] if s.endswith(("/CTR", "/ATC"))} <= set(defined)
    for s in defined:  # the ceiling only averages hidden variables out: no better than the oracle beyond noise
        assert ceiling[s]["auc"] <= oracle[s]["auc"] + 0.05
    ceiling_gap = result["bayes_ceiling_summary"]["mean_auc_gap_to_oracle"]
    assert math.isclose(ceiling_gap, np.mean([oracle[s]["auc"] - ceiling[s]["auc"] for s in defined]), rel_tol=1e-9)
    summary = result["summary"]["grec"]
    for i, run in enumerate(result["runs"]["grec"]):
        gaps = [ceiling[s]["auc"] - run["test"][s]["auc"] for s in defined]
        to_ceiling = summary["mean_auc_gap_to_ceiling"]["values"][i]
        assert math.isclose(to_ceiling, np.mean(gaps), rel_tol=1e-9)
        # gap to oracle = gap to ceiling + the ceiling's own gap (the part no row-feature model can close)
        assert math.isclose(summary["mean_auc_gap_to_oracle"]["values"][i], to_ceiling + ceiling_gap, abs_tol=1e-12)
    md = markdown(result)
    assert "| Bayes ceiling (row features, generator known) |" in md and "ceiling AUC" in md
    assert f"Bayes ceiling's own mean AUC gap to the oracle is {ceiling_gap:.4f}" in md


def test_telecom_comparisons_targets_and_markdown(telecom):
    out, result = telecom
    summary, vs = result["summary"], result["comparisons"]["vs_grec"]
    grec, mmoe = summary["grec"]["mean_auc"], summary["mmoe"]["mean_auc"]
    versus = vs["mmoe"]["mean_auc"]
    assert math.isclose(versus["difference"], grec["mean"] - mmoe["mean"], rel_tol=1e-12)
    assert math.isclose(versus["limit"], 2 * math.sqrt(grec["se"] ** 2 + mmoe["se"] ** 2), rel_tol=1e-12)
    assert versus["verdict"] == ("tie" if abs(versus["difference"]) <= versus["limit"]
                                 else "win" if versus["difference"] > 0 else "loss")
    targets = result["targets"]
    assert "GRec mean AUC gap to oracle <= 0.02" in targets
    assert "GRec mean AUC over CVR/CTCVR - mmoe's > 2 SE" in targets
    assert "GRec mean AUC - lightgbm mean AUC > 2 SE" in targets
    for name, target in targets.items():
        assert set(target) == {"value", "limit", "pass", "detail"}, name
        assert isinstance(target["pass"], bool) == (target["value"] is not None), name
    sparse = targets["GRec mean AUC over CVR/CTCVR - mmoe's > 2 SE"]
    assert sparse["pass"] == (vs["mmoe"]["mean_auc_sparse"]["verdict"] == "win")
    assert result["comparisons"]["sparse_lift_over_single_task"] == {}  # single_task did not run
    md = (out / "quality_telecom.md").read_text()
    assert "exceeds 2 standard errors of the difference" in md and "written as a tie" in md
    assert "Adam lr 0.002, warm-up + cosine decay (5% warm-up);" in md  # configs/telecom.yaml's schedule
    assert verdict_words(versus["verdict"], "mmoe") in md
    assert "## Sparse task sentences (CVR, CTCVR): GRec's lift over single-task" in md and "Not measured" in md
    assert "broken skipped" in md and "## Per task sentence" in md
    assert format_statistics(summary["grec"]["per_sentence"]["AAL/CTR"]["auc"]) in md


def test_adult_peers_rows_or_notes(adult):
    out, result = adult
    assert result["sentences"] == ["adult/income", "adult/never_married"]
    peers = {"deepctr_mmoe", "deepctr_ple"} if _importable("deepctr") else set()
    peers |= {"lightgbm"} if _importable("lightgbm") else set()
    # grec_piecewise_linear reads the quantile bins of the statistics every variant shares
    assert set(result["summary"]) == {"grec", "grec_piecewise_linear"} | peers
    assert not any("grec_piecewise_linear" in note for note in result["notes"])
    for name, summary in result["summary"].items():
        _check_statistics(summary["mean_auc"])
        for s in result["sentences"]:
            _check_statistics(summary["per_sentence"][s]["auc"])
            _check_statistics(summary["per_sentence"][s]["ap"])
        if name.startswith("deepctr"):
            assert summary["params"] > 0
    for peer in ("deepctr_mmoe", "deepctr_ple", "lightgbm"):
        target = result["targets"][f"GRec mean AUC - {peer} mean AUC > 2 SE"]
        assert (target["value"] is None) == (peer not in peers)
        if peer not in peers:
            assert any(peer in note for note in result["notes"])
    assert not any("CVR" in name for name in result["targets"])  # adult has no sparse task sentence
    assert "## Targets" in (out / "quality_adult_quick.md").read_text()  # the tag keeps runs apart
    assert json.loads((out / "quality_adult_quick.json").read_text())["options"]["tag"] == "quick"


def test_missing_lightgbm_and_deepctr_become_notes(monkeypatch, tmp_path):
    for name in [m for m in sys.modules if m.split(".")[0] in ("lightgbm", "deepctr")] + ["lightgbm", "deepctr"]:
        monkeypatch.setitem(sys.modules, name, None)  # ``import lightgbm`` now raises ImportError
    frame = tiny_frame(64)
    base = Experiment(tiny_config(), splits={"train": frame, "valid": frame, "test": frame})
    runs, notes = quality.train_all(["lightgbm", "deepctr_ple"], base, [0], str(tmp_path), 0,
                                    {"max_rounds": 5, "threads": 1})
    assert runs == {}
    assert notes[0].startswith("lightgbm skipped: lightgbm is not importable") and "pip install" in notes[0]
    assert "deepctr is not importable" in notes[1] and "pip install" in notes[1]


def test_seed_statistics_of_known_values():
    stats = seed_statistics([0.70, 0.72, float("nan"), 0.74, None])
    assert stats["n"] == 3 and stats["values"] == [0.70, 0.72, 0.74]
    assert math.isclose(stats["mean"], 0.72) and math.isclose(stats["std"], 0.02)
    assert math.isclose(stats["se"], 0.02 / math.sqrt(3))
    single = seed_statistics([0.8])
    assert single["mean"] == 0.8 and math.isnan(single["std"]) and math.isnan(single["se"])
    assert format_statistics(single) == "0.8000" and format_statistics(stats) == "0.7200 ± 0.0200"


def test_win_only_beyond_two_standard_errors_of_the_difference():
    b = {"mean": 0.72, "se": 0.005}
    limit = 2 * math.sqrt(0.01 ** 2 + 0.005 ** 2)  # 0.02236
    assert compare({"mean": 0.75, "se": 0.01}, b)["verdict"] == "win"
    assert math.isclose(compare({"mean": 0.75, "se": 0.01}, b)["limit"], limit)
    assert compare({"mean": 0.74, "se": 0.01}, b)["verdict"] == "tie"  # 0.02 < 0.02236
    assert compare({"mean": 0.70, "se": 0.01}, b)["verdict"] == "tie"
    assert compare({"mean": 0.69, "se": 0.01}, b)["verdict"] == "loss"
    assert compare({"mean": 0.90, "se": float("nan")}, b)["verdict"] == "tie"  # one seed: nothing is a win
    assert verdict_words("loss", "lightgbm") == "lightgbm wins" and verdict_words("tie", "x") == "tie"


def _runs(aucs_per_seed):
    """Seed runs with the given AUC (and AP = AUC / 2) for every sentence of a 2 x 2 telecom-like layout."""
    return [{"seed": i, "train_seconds": 1.0, "params": 10,
             "test": {s: {"auc": auc, "ap": auc / 2} for s, auc in aucs.items()}}
            for i, aucs in enumerate(aucs_per_seed)]


def test_summary_comparisons_sparse_lift_and_targets_from_known_runs():
    sentences = ["A/CTR", "A/CVR", "B/CTR", "B/CVR"]
    grec = _runs([{"A/CTR": 0.70, "A/CVR": 0.66, "B/CTR": 0.71, "B/CVR": 0.60},
                  {"A/CTR": 0.72, "A/CVR": 0.68, "B/CTR": 0.71, "B/CVR": 0.62}])
    single = _runs([{"A/CTR": 0.70, "A/CVR": 0.60, "B/CTR": 0.71, "B/CVR": 0.61},
                    {"A/CTR": 0.72, "A/CVR": 0.62, "B/CTR": 0.71, "B/CVR": 0.60}])
    summary = {"grec": quality.model_summary(grec, sentences, {}, None),
               "single_task": quality.model_summary(single, sentences, {}, None)}
    assert summary["grec"]["mean_auc"]["values"] == pytest.approx([0.6675, 0.6825])
    assert summary["grec"]["mean_auc_sparse"]["values"] == pytest.approx([0.63, 0.65])
    assert summary["grec"]["mean_ap_sparse"]["values"] == pytest.approx([0.315, 0.325])
    compared = quality.comparisons(summary, sentences)
    lift = compared["sparse_lift_over_single_task"]
    assert set(lift) == {"A/CVR", "B/CVR"}
    # A/CVR: 0.67 vs 0.61, SEs 0.01 each -> 2 SE = 0.0283: a win; B/CVR: 0.61 vs 0.605 -> a tie
    assert lift["A/CVR"]["difference"] == pytest.approx(0.06) and lift["A/CVR"]["verdict"] == "win"
    assert lift["A/CVR"]["relative_lift_percent"] == pytest.approx(100 * (0.67 / 0.61 - 1))
    assert lift["B/CVR"]["verdict"] == "tie"
    targets = quality.targets(summary, compared, ["grec", "single_task", "lightgbm"], {}, has_sparse=True)
    sparse = targets["GRec mean AUC over CVR/CTCVR - single_task's > 2 SE"]
    assert sparse["value"] == pytest.approx(0.0325) and sparse["pass"] is True
    assert targets["GRec mean AUC - lightgbm mean AUC > 2 SE"]["pass"] is None  # lightgbm did not run
    assert "GRec mean AUC over CVR/CTCVR - mmoe's > 2 SE" not in targets  # mmoe was not asked for


def test_candidate_variants_are_judged_against_grec_of_the_same_run():
    sentences = ["A/CTR", "B/CTR"]
    grec = _runs([{"A/CTR": 0.70, "B/CTR": 0.70}, {"A/CTR": 0.72, "B/CTR": 0.72}])
    cross = _runs([{"A/CTR": 0.80, "B/CTR": 0.80}, {"A/CTR": 0.82, "B/CTR": 0.82}])
    periodic = _runs([{"A/CTR": 0.70, "B/CTR": 0.71}, {"A/CTR": 0.72, "B/CTR": 0.71}])
    summary = {name: quality.model_summary(runs, sentences, {}, None)
               for name, runs in {"grec": grec, "grec_cross": cross, "grec_periodic": periodic}.items()}
    names = ["grec", "grec_cross", "grec_periodic", "mmoe"]
    targets = quality.targets(summary, quality.comparisons(summary, sentences), names, {}, has_sparse=False)
    cross_target = targets["grec_cross mean AUC - grec mean AUC > 2 SE"]
    assert cross_target["value"] == pytest.approx(0.10) and cross_target["pass"] is True  # 2 SE = 0.0283
    assert targets["grec_periodic mean AUC - grec mean AUC > 2 SE"]["pass"] is False  # +0.0025: a tie
    assert not any(key.startswith("mmoe mean AUC") for key in targets)  # a baseline, not a candidate
    # without grec in the run the candidate's target is present but not measured
    alone = quality.targets({"grec_cross": summary["grec_cross"]}, {"vs_grec": {}}, ["grec_cross"], {}, False)
    assert alone == {"grec_cross mean AUC - grec mean AUC > 2 SE": {
        "value": None, "limit": None, "pass": None, "detail": "not measured: grec_cross or grec did not run"}}


def test_a_run_without_grec_lists_its_targets_as_not_measured():
    sentences = ["A/CTR", "A/CVR"]
    lightgbm = _runs([{"A/CTR": 0.70, "A/CVR": 0.66}, {"A/CTR": 0.72, "A/CVR": 0.68}])
    summary = {"lightgbm": quality.model_summary(lightgbm, sentences, {}, None)}
    oracle = {"A/CTR": {"auc": 0.8}, "A/CVR": {"auc": 0.8}}
    targets = quality.targets(summary, quality.comparisons(summary, sentences), ["lightgbm"], oracle, True)
    assert set(targets) == {"GRec mean AUC gap to oracle <= 0.02", "GRec mean AUC - lightgbm mean AUC > 2 SE"}
    for target in targets.values():
        assert target["value"] is None and target["pass"] is None and target["detail"].startswith("not measured")


def test_deepctr_on_multi_flow_data_becomes_a_note(tmp_path):
    pytest.importorskip("deepctr", reason="the optional peers extra is not installed")
    frame = tiny_frame(64)
    base = Experiment(tiny_config(), splits={"train": frame, "valid": frame, "test": frame})
    runs, notes = quality.train_all(["deepctr_mmoe"], base, [0], str(tmp_path), 0, {})
    assert runs == {} and notes == ["deepctr_mmoe skipped: data.flows has 2 flows; DeepCTR's person-level models "
                                    "need one"]


@pytest.mark.skipif(not _importable("deepctr"), reason="deepctr (the [peers] extra) is not installed")
@pytest.mark.parametrize("schedule", ["constant", "warmup_cosine"])
def test_deepctr_peers_train_on_the_configs_optimizer_and_schedule(tmp_path, schedule):
    # the schedule is part of the budget every network shares: a peer planned over the same epochs and batches
    from grec_tf.benchmarks import deepctr_peers
    from grec_tf.config import load_config
    path = synthetic_adult(tmp_path / "adult.parquet")
    config = load_config("configs/adult.yaml", [f"data.path={path}", f"train.learning_rate_schedule={schedule}"])
    peers = deepctr_peers.import_peers()
    _, columns = deepctr_peers.peer_arrays(Experiment(config).splits, config, peers)
    model = deepctr_peers.build_peer("deepctr_mmoe", peers, columns, config, train_persons=100_000)
    steps = config.train.epochs * math.ceil(100_000 / config.data.batch_size)
    peak = config.train.learning_rate
    rate = model.optimizer.get_config()["learning_rate"]  # a float, or the schedule's serialized form
    if isinstance(rate, dict):
        rate = tf.keras.optimizers.schedules.deserialize(rate)
    rates = [float(rate(step)) if callable(rate) else float(rate)
             for step in (0, round(config.train.warmup_fraction * steps), steps)]
    expected = [peak] * 3 if schedule == "constant" else [0.0, peak, 0.0]
    np.testing.assert_allclose(rates, expected, atol=1e-9, rtol=1e-6)
