"""The ``scale`` benchmark at its quick size (tiny data and model; every measurement still in its own process,
the clusters on real 127.0.0.1 ports): the report's structure, finite positive numbers, the targets computed from
the measured values, and the process-tree memory sampler it rests on. No timing or outcome assertions."""
import json
import math
import statistics
import sys

import pytest

from grec_tf.benchmarks import scale
from grec_tf.benchmarks.process_memory import run_measured

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("scale")
    # a fixed memory limit: the default follows the memory other jobs leave free, which comes and goes
    result = scale.run(str(out), quick="1", work_dir=str(tmp_path_factory.mktemp("work")), max_rss_gib="64")
    return out, result


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_the_tree_peak_sums_a_process_and_its_child(tmp_path):
    """Parent and child each hold ~150 MiB at the same time: the tree's peak counts both (no single process of the
    two reaches 300 MiB)."""
    hold = "b = bytearray(150 * 2**20); b[::4096] = b'x' * len(b[::4096]); import time; time.sleep(1.5)"
    parent = f"import subprocess, sys; {hold.replace('time.sleep(1.5)', 'pass')}; " \
             f"subprocess.run([sys.executable, '-c', {hold!r}], check=True)"
    measured = run_measured([sys.executable, "-c", parent], str(tmp_path / "log"))
    assert measured.returncode == 0 and measured.samples > 0
    assert measured.peak_tree_rss_bytes >= 300 * MIB
    assert measured.max_single_rss_bytes >= 150 * MIB


def test_a_tree_past_the_memory_limit_is_stopped(tmp_path):
    hold = "b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096]); import time; time.sleep(600)"
    measured = run_measured([sys.executable, "-c", hold], str(tmp_path / "log"), rss_limit_bytes=100 * MIB)
    assert measured.stopped_at_limit and measured.returncode == -9
    assert measured.peak_tree_rss_bytes > 100 * MIB


def test_a_failing_command_reports_its_exit_code(tmp_path):
    assert run_measured([sys.executable, "-c", "raise SystemExit(3)"], str(tmp_path / "log")).returncode == 3


def test_report_files_and_structure(report):
    out, result = report
    assert json.loads((out / "scale.json").read_text()) == json.loads(json.dumps(result))
    markdown = (out / "scale.md").read_text()
    for part in ("## Preprocessing", "## Training examples/s", "## 1 vs 2 workers", "## Targets",
                 "## What the numbers mean", "python -m pipelines.benchmark scale", "cores"):
        assert part in markdown
    assert [size["impressions"] for size in result["preprocessing"]] == [2000, 8000]
    assert set(result["cluster"]["workers"]) == {"1", "2"}
    assert result["options"]["quick"] is True


def test_preprocessing_numbers_are_finite_positive_and_consistent(report):
    _, result = report
    for size in result["preprocessing"]:
        assert set(size["paths"]) == set(scale.PATHS)
        assert size["input_rows"] == sum(size["splits"].values())
        for name, run in size["paths"].items():
            for key in ("seconds", "rows_per_second", "impressions_per_second", "peak_tree_rss_mib",
                        "max_single_rss_mib", "wall_seconds"):
                assert _positive(run[key]), (size["impressions"], name, key)
            # every path read every row of every split (no bad rows in generated data)
            assert run["rows"] == size["splits"], name
            assert _positive(run["cpu_seconds"]["self"]) and run["cpu_seconds"]["children"] >= 0, name
            assert run["rows_per_second"] == pytest.approx(size["input_rows"] / run["seconds"])
            assert run["impressions_per_second"] < run["rows_per_second"]  # ~3 long rows an impression


def test_training_and_cluster_numbers(report):
    _, result = report
    training = result["training"]
    assert set(training["examples_per_second"]) == {"tfrecord", "memory", "memory_rowwise"}
    for name, samples in training["samples"].items():
        assert len(samples) == training["rounds"] and all(_positive(v) for v in samples), name
        assert training["examples_per_second"][name] == pytest.approx(statistics.median(samples))
    assert _positive(training["tfrecord_over_memory"]) and _positive(training["tfrecord_over_memory_rowwise"])
    steps = result["cluster"]["workers"]
    for workers, run in steps.items():
        assert run["replicas"] == int(workers) and _positive(run["examples_per_second"])
        # one warm-up epoch and the timed ones, each of the same number of global steps on every cluster size
        assert run["optimizer_steps"] == run["steps"] * (1 + run["rounds"])
    assert result["cluster"]["two_over_one"] == pytest.approx(
        steps["2"]["examples_per_second"] / steps["1"]["examples_per_second"])


def test_targets_are_computed_from_the_measured_values(report):
    _, result = report
    small, large = result["preprocessing"]
    targets = result["targets"]
    assert len(targets) == 3
    for path in ("beam_1_worker", "beam_2_workers"):
        growth = large["paths"][path]["peak_tree_rss_mib"] / small["paths"][path]["peak_tree_rss_mib"]
        assert result["memory_growth"][path] == pytest.approx(growth)
        (target,) = [t for name, t in targets.items() if name.startswith(f"Beam ({path[5:].replace('_', ' ')})")]
        assert target["value"] == pytest.approx(growth) and target["limit"] == scale.FLAT_LIMIT
        assert target["pass"] == (growth <= scale.FLAT_LIMIT)
    assert _positive(result["memory_growth"]["pandas"])
    (streaming,) = [t for name, t in targets.items() if name.startswith("training")]
    ratio = statistics.median(t / m for t, m in zip(result["training"]["samples"]["tfrecord"],
                                                    result["training"]["samples"]["memory"]))
    assert streaming["value"] == pytest.approx(ratio) and streaming["pass"] == (ratio >= scale.STREAMING_LIMIT)


def test_a_path_stopped_at_the_memory_limit_is_reported_as_such(report):
    """The pandas path at a size the machine cannot hold: its row says where it stopped, its growth is a floor."""
    _, result = report
    stopped = json.loads(json.dumps(result))
    large = stopped["preprocessing"][-1]["paths"]
    large["pandas"] = {"stopped": "killed when its processes' RSS passed the limit of 9 MiB",
                       **{k: large["pandas"][k] for k in ("wall_seconds", "peak_tree_rss_mib", "max_single_rss_mib",
                                                          "rss_samples")}}
    markdown = scale.markdown(stopped)
    assert "| pandas | 8,000 | " in markdown and "passed the limit of 9 MiB after" in markdown
    assert "or more (stopped at the memory limit)" in markdown
