"""The quality benchmark on a small telecom run: models next to the oracle and the Bayes ceiling."""
import json
import math

import pytest

from grec_tf.benchmarks import quality


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("quality")
    overrides = ("data.rows=8000;data.batch_size=256;train.epochs=1;model.d_model=16;model.expert_hidden=32;"
                 "model.num_experts=4;model.top_k=2;model.tower_units=[16]")
    return out, quality.run(str(out), overrides=overrides, models="grec,mmoe", verbose="0")


def test_report_files_match_and_carry_the_bayes_ceiling(report):
    out, result = report
    on_disk = json.loads((out / "quality_telecom.json").read_text())
    assert on_disk == json.loads(json.dumps(result))
    sentences = [k for k in result["oracle"] if not k.startswith("use_case/")]
    assert len(sentences) == 12
    ceiling, oracle = result["bayes_ceiling"], result["oracle"]
    # A small test split can leave a rare task sentence without positives (AUC undefined, nan); the
    # dense ones always have both classes.
    defined = [s for s in sentences if not math.isnan(oracle[s]["auc"])]
    assert {s for s in sentences if s.endswith(("/CTR", "/ATC"))} <= set(defined)
    for s in defined:
        # The ceiling only averages the hidden variables out: its AUC cannot exceed the oracle's by more
        # than sampling noise (a few hundred rows per task sentence here).
        assert ceiling[s]["auc"] <= oracle[s]["auc"] + 0.05
    for name in ("grec", "mmoe"):
        s = result["summary"][name]
        test = result["models"][name]["test"]
        gaps = [ceiling[k]["auc"] - test[k]["auc"] for k in defined]
        assert math.isclose(s["mean_auc_gap_to_ceiling"], sum(gaps) / len(gaps), rel_tol=1e-9)
        # gap to oracle = gap to ceiling + the ceiling's own gap (the part no row-feature model can close)
        ceiling_gap = result["bayes_ceiling_summary"]["mean_auc_gap_to_oracle"]
        assert math.isclose(s["mean_auc_gap_to_oracle"], s["mean_auc_gap_to_ceiling"] + ceiling_gap, abs_tol=1e-12)
    ceiling_gap = result["bayes_ceiling_summary"]["mean_auc_gap_to_oracle"]
    assert math.isclose(ceiling_gap, sum(oracle[k]["auc"] - ceiling[k]["auc"] for k in defined) / len(defined),
                        rel_tol=1e-9)
    md = (out / "quality_telecom.md").read_text()
    assert "| Bayes ceiling (row features, generator known) |" in md and "ceiling AUC" in md
    assert "GRec mean AUC gap to oracle <= 0.02" in md
    assert f"Bayes ceiling's own mean AUC gap to the oracle is {ceiling_gap:.4f}" in md
