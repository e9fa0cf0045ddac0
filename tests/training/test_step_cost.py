"""The split of a speed ratio into FLOPs and flop rate, and the op-time table, on hand-made rows."""
import pytest

from grec_tf.benchmarks.step_cost import flop_rate_split, profile_markdown


def test_speed_ratio_is_flop_rate_ratio_over_flops_ratio():
    rows = {"ref": {"train_persons_per_second": 1000.0, "forward_flops_per_persons": 2e6},
            "slow_big": {"train_persons_per_second": 250.0, "forward_flops_per_persons": 4e6},
            "unpriced": {"train_persons_per_second": 10.0}}
    split = flop_rate_split(rows, "persons", "ref")
    assert set(split) == {"ref", "slow_big"}
    assert split["ref"]["train_gflops_per_second"] == pytest.approx(2.0)
    big = split["slow_big"]
    assert big["flops_ratio"] == pytest.approx(2.0) and big["flop_rate_ratio"] == pytest.approx(0.5)
    assert big["speed_ratio"] == pytest.approx(0.25)
    assert "flops_ratio" not in flop_rate_split(rows, "persons", "missing")["ref"]


def test_profile_table_lists_every_columns_ops_and_totals():
    profiles = {"a": {"op_ms_by_type": {"MatMul": 3.0, "Erfc": 1.0, "other": 0.5}, "op_ms_per_step": 4.5,
                      "matmul_share": 0.667},
                "b": {"op_ms_by_type": {"Erfc": 5.0, "Cast": 1.0, "other": 2.0}, "op_ms_per_step": 8.0,
                      "matmul_share": 0.0}}
    lines = profile_markdown(profiles)
    assert lines[0] == "| op type | a ms/step | b ms/step |"
    assert "| MatMul | 3.00 | - |" in lines and "| Cast | - | 1.00 |" in lines and "| Erfc | 1.00 | 5.00 |" in lines
    assert lines.index("| other | 0.50 | 2.00 |") == len(lines) - 3
    assert lines[-2] == "| **all ops** | 4.50 | 8.00 |" and lines[-1] == "| matmul share | 67% | 0% |"
    assert profile_markdown({}) == []
