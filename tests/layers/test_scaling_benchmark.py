"""`scaling` benchmark: a tiny run's report and the scaling laws that hold by construction."""
import json

import grec_tf  # noqa: F401  (Keras 2 before TensorFlow)

from grec_tf.benchmarks import scaling
from pipelines import benchmark

S, D, F, UNITS, K = 5, 16, 32, 16, 2
TOWER_PARAMS = D * UNITS + UNITS + UNITS + 1  # one tower: D -> UNITS -> 1 logit


def _point(sweep: dict, **where) -> dict:
    (row,) = [p for p in sweep["points"] if all(p[k] == v for k, v in where.items())]
    return row


def test_scaling_benchmark_tiny_run(tmp_path):
    results = scaling.run(tmp_path, rounds="2", batch="32", tokens=str(S), width=str(D), hidden=str(F), heads="2",
                          tower_units=str(UNITS), top_k=str(K), task_sentences="3,6", experts="4,8",
                          fixed_experts="4", fixed_task_sentences="6")
    assert json.loads((tmp_path / "scaling.json").read_text()) == results
    report = (tmp_path / "scaling.md").read_text()
    assert "## Task sentences grow (E = 4)" in report and "## Experts grow (T = 6)" in report
    assert "| 3 (1 x 3) |" in report and "| 6 (2 x 3) |" in report

    by_t, by_e = results["sweeps"]["task_sentences"], results["sweeps"]["experts"]
    assert [(p["task_sentences"], p["experts"]) for p in by_t["points"]] == [(3, 4), (6, 4)]
    assert [(p["task_sentences"], p["experts"]) for p in by_e["points"]] == [(6, 4), (6, 8)]
    for row in by_t["points"] + by_e["points"]:
        assert row["flows"] * row["use_cases"] == row["task_sentences"] == row["towers"]
        for model in ("grec", "mmoe"):
            assert row[model]["ms"] > 0 and len(row[model]["ms_samples"]) == 2
            assert row[model]["flops"] > 0 and row[model]["params"] > 0
        assert row["grec_over_mmoe"]["ms"] > 0
    assert _point(by_t, task_sentences=6) == _point(by_e, experts=4)  # the shared point, measured once
    # both models' steps profiled at the first point of the task-sentence sweep; GRec's shows its dispatch ops
    profile = results["op_profile"]
    assert (profile["task_sentences"], profile["experts"]) == (3, 4) and set(profile["models"]) == {"grec", "mmoe"}
    for model in ("grec", "mmoe"):
        assert profile["models"][model]["op_ms_per_step"] > 0 and 0 < profile["models"][model]["matmul_share"] < 1
    assert "## Where the step's time goes (T = 3, E = 4)" in report and "| matmul share |" in report
    # one target per point of the task-sentence sweep: GRec's step vs MMoE's at the same E
    assert list(results["targets"]) == [f"GRec (top_k {K}) step <= 1.0 x MMoE step at E=4, T={t}" for t in (3, 6)]
    for target, row in zip(results["targets"].values(), by_t["points"]):
        assert target == {"value": row["grec_over_mmoe"]["ms"], "limit": 1.0,
                          "pass": row["grec_over_mmoe"]["ms"] <= 1.0}
    assert "## Targets" in report

    # Experts: MMoE computes every expert for every row, GRec only its k routed ones.
    grec_e = [_point(by_e, experts=e)["grec"] for e in (4, 8)]
    mmoe_e = [_point(by_e, experts=e)["mmoe"] for e in (4, 8)]
    mmoe_growth, grec_growth = mmoe_e[1]["flops"] / mmoe_e[0]["flops"], grec_e[1]["flops"] / grec_e[0]["flops"]
    assert mmoe_growth > 1.5 and grec_growth < 1.05 and grec_growth < mmoe_growth
    assert by_e["growth_first_to_last"]["mmoe"]["flops"] == round(mmoe_growth, 4)
    assert by_e["growth_first_to_last"]["grec"]["flops"] == round(grec_growth, 4)
    gflops_ratio = [_point(by_e, experts=e)["grec_over_mmoe"]["flops"] for e in (4, 8)]
    assert gflops_ratio[1] < gflops_ratio[0]

    # Task sentences: one tower each for both models; MMoE also one gate (S*D inputs + bias, per expert) each.
    grec_t = [_point(by_t, task_sentences=t)["grec"] for t in (3, 6)]
    mmoe_t = [_point(by_t, task_sentences=t)["mmoe"] for t in (3, 6)]
    assert mmoe_t[1]["params"] - mmoe_t[0]["params"] == 3 * ((S * D + 1) * 4 + TOWER_PARAMS)
    assert 3 * TOWER_PARAMS <= grec_t[1]["params"] - grec_t[0]["params"] < mmoe_t[1]["params"] - mmoe_t[0]["params"]
    assert mmoe_t[1]["flops"] - mmoe_t[0]["flops"] > grec_t[1]["flops"] - grec_t[0]["flops"] > 0


def test_task_sentence_split_and_registry():
    assert [scaling.split_task_sentences(t) for t in (3, 6, 12, 24)] == [(1, 3), (2, 3), (3, 4), (3, 8)]
    assert benchmark.resolve("scaling") is scaling.run
