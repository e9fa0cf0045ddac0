"""The input_pipeline benchmark's measurement and report on the tiny experiment (structure only: no timing
assertions)."""
import json
import statistics

import pytest

from grec_tf.benchmarks import input_pipeline
from grec_tf.experiment import Experiment
from tests.tiny_experiment import tiny_config, tiny_frame


def _tiny_experiment() -> Experiment:
    splits = {split: tiny_frame(200, seed=seed) for seed, split in enumerate(("train", "valid", "test"))}
    return Experiment(tiny_config(), splits=splits)


@pytest.fixture(scope="module")
def measured():
    return input_pipeline.measure_input_pipeline(_tiny_experiment(), batch_size=32, batches=3, rounds=2)


def test_measurement_reports_each_pipeline_against_the_training_step(measured):
    assert measured["rows"] == 200 and measured["batch_size"] == 32 and measured["batches"] == 3
    assert set(measured["ms_per_batch"]) == {"before", "after", "train_step"}
    assert set(measured["fraction_of_step"]) == {"before", "after"}
    samples = measured["samples"]
    assert all(len(values) == 2 and min(values) > 0 for values in samples.values())
    for name, fraction in measured["fraction_of_step"].items():
        ratios = [p / s for p, s in zip(samples[name], samples["train_step"])]
        # computed from unrounded samples: equal up to the samples' rounding to 0.01 ms
        assert fraction == pytest.approx(statistics.median(ratios), rel=0.05), name
        assert measured["ms_per_batch"][name] == pytest.approx(statistics.median(samples[name]), abs=0.01)


def test_run_writes_targets_per_dataset_and_names_a_skipped_one(tmp_path, monkeypatch):
    monkeypatch.setattr(input_pipeline, "_experiments",
                        lambda rows, adult_path, work: {"tiny": _tiny_experiment(), "adult": None})
    result = input_pipeline.run(str(tmp_path), batches=2, rounds=1, adult_path="/nonexistent/adult.parquet",
                                batch_size=64)
    assert json.loads((tmp_path / "input_pipeline.json").read_text()) == json.loads(json.dumps(result))
    assert result["skipped"] == {"adult": "/nonexistent/adult.parquet does not exist"}
    target = result["targets"]["input pipeline <= 10% of step time (tiny)"]
    fraction = result["datasets"]["tiny"]["fraction_of_step"]["after"]
    assert target["limit"] == 10 and target["value"] == pytest.approx(100 * fraction, abs=0.01)
    assert target["pass"] == (fraction <= 0.10) and result["all_targets_pass"] == target["pass"]
    markdown = (tmp_path / "input_pipeline.md").read_text()
    assert "| tiny | 200 | 64 | 2 x 1 |" in markdown and "Skipped: adult" in markdown
    assert "input pipeline <= 10% of step time (tiny)" in markdown
