"""The `routing` benchmark (the paper's Table 1): report structure, FLOPs split, and the orderings' verdicts."""
import json
import math



from grec_tf.benchmarks import routing
from grec_tf.benchmarks.seed_comparison import seed_statistics


def _summary(ap_by_variant, routing_flops):
    """A summary whose AP per use case is given per variant (three seeds each), AUC fixed."""
    return {name: {"use_cases": {u: {"ap": seed_statistics(values[u]), "auc": seed_statistics([0.7, 0.7, 0.7])}
                                 for u in routing.USE_CASES},
                   "flops_per_example": {"routing": routing_flops[name], "total": 1e5}}
            for name, values in ap_by_variant.items()}


def test_orderings_follow_the_two_standard_error_rule():
    same = {u: [0.60, 0.61, 0.62] for u in routing.USE_CASES}
    lower = {u: [0.50, 0.51, 0.52] for u in routing.USE_CASES}
    summary = _summary({"mmoe_4_4": lower, "token": same, "sentence": lower, "task": same, "task_sentence": same},
                       {"mmoe_4_4": 0.0, "token": 400.0, "sentence": 100.0, "task": 50.0, "task_sentence": 150.0})
    checks = routing.orderings(summary)
    assert all(check["pass"] for check in checks.values()), checks
    summary["task_sentence"]["flops_per_example"]["routing"] = 300.0  # > half of token's
    summary["mmoe_4_4"] = _summary({"x": same}, {"x": 0.0})["x"]     # now a tie with MMoE, not a win
    checks = routing.orderings(summary)
    assert not checks["task-sentence routing FLOPs <= 0.5 x token routing's"]["pass"]
    assert not checks["task-sentence routing beats MMoE 4/4 on AP in every use case"]["pass"]
    assert checks["task-sentence routing beats MMoE 4/4 on AP in every use case"]["value"] == 0


def test_sentence_routing_weakest_only_beyond_the_noise():
    same = {u: [0.60, 0.61, 0.62] for u in routing.USE_CASES}
    slightly_lower = {u: [0.595, 0.61, 0.62] for u in routing.USE_CASES}   # lowest mean, inside two SE
    flops = {"token": 400.0, "sentence": 100.0, "task": 50.0, "task_sentence": 150.0}
    name = "sentence routing is the weakest routing (lowest mean AP, a loss to every other routing)"
    check = routing.orderings(_summary({"token": same, "sentence": slightly_lower, "task": same,
                                        "task_sentence": same}, flops))[name]
    assert check["value"] == "sentence" and not check["pass"]
    assert check["detail"]["sentence vs"]["token"] == {u: "tie" for u in routing.USE_CASES}
    lower = {u: [0.50, 0.51, 0.52] for u in routing.USE_CASES}
    check = routing.orderings(_summary({"token": same, "sentence": lower, "task": same, "task_sentence": same},
                                       flops))[name]
    assert check["pass"]


def test_quick_run_writes_table_one(tmp_path):
    report = routing.run(str(tmp_path), seeds="1", quick="1", variants="mmoe_4_4,token,task_sentence")
    written = json.loads((tmp_path / "routing.json").read_text())
    assert (tmp_path / "routing.png").stat().st_size > 0
    assert set(written["summary"]) == {"mmoe_4_4", "token", "task_sentence"}
    for name, row in written["summary"].items():
        flops = row["flops_per_example"]
        assert flops["total"] > flops["routing"] >= 0 and math.isfinite(flops["total"])
        assert (flops["routing"] > 0) == (name != "mmoe_4_4")  # MMoE has no router
        assert row["train_examples_per_second"]["mean"] > 0 and row["inference_examples_per_second"]["mean"] > 0
        for use_case in routing.USE_CASES:
            assert 0.0 <= row["use_cases"][use_case]["ap"]["mean"] <= 1.0
    assert written["summary"]["token"]["flops_per_example"]["routing"] > \
        written["summary"]["task_sentence"]["flops_per_example"]["routing"]  # a gate per token vs per route
    for target in written["targets"].values():
        assert set(target) >= {"value", "limit", "pass"}
    markdown = (tmp_path / "routing.md").read_text()
    assert "64.51" in markdown and "task_sentence" in markdown  # the paper's numbers beside ours
    assert report["targets"].keys() == written["targets"].keys()
