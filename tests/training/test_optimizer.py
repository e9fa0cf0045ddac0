"""train.learning_rate_schedule and train.weight_decay: the schedule's rates, Adam vs AdamW, a tiny run with each."""
import dataclasses
import math
import os

import numpy as np
import pytest
import tensorflow as tf

from grec_tf.config import TrainConfig
from grec_tf.experiment import Experiment, load_run
from grec_tf.training.optimizer import learning_rate, make_optimizer
from tests.tiny_experiment import tiny_config, tiny_frame


def _rate(train: TrainConfig, total_steps: int, step: int) -> float:
    return float(learning_rate(train, total_steps)(step))


def test_warmup_cosine_rises_from_zero_to_the_peak_then_decays_to_zero():
    train = TrainConfig(learning_rate=0.01, learning_rate_schedule="warmup_cosine", warmup_fraction=0.1)
    assert _rate(train, 200, 0) == 0.0
    assert _rate(train, 200, 10) == pytest.approx(0.005)  # halfway through the 20 warm-up steps
    assert _rate(train, 200, 20) == pytest.approx(0.01)  # end of warm-up: the peak
    assert _rate(train, 200, 110) == pytest.approx(0.005, rel=1e-5)  # cosine halfway through its 180 steps
    assert _rate(train, 200, 199) == pytest.approx(0.01 * 0.5 * (1 + math.cos(math.pi * 179 / 180)), rel=1e-4)
    assert _rate(train, 200, 200) == pytest.approx(0.0, abs=1e-9)
    assert _rate(train, 200, 250) == pytest.approx(0.0, abs=1e-9)  # past the planned run: stays at 0


def test_warmup_fraction_zero_starts_at_the_peak():
    train = TrainConfig(learning_rate=0.01, learning_rate_schedule="warmup_cosine", warmup_fraction=0.0)
    assert _rate(train, 100, 0) == pytest.approx(0.01)
    assert _rate(train, 100, 100) == pytest.approx(0.0, abs=1e-9)


def test_constant_is_the_plain_adam_of_before():
    optimizer = make_optimizer(TrainConfig(learning_rate=0.003), total_steps=0)
    assert type(optimizer) is tf.keras.optimizers.Adam
    assert optimizer.get_config() == tf.keras.optimizers.Adam(0.003).get_config()


@pytest.mark.parametrize("weight_decay, kind", [(0.0, tf.keras.optimizers.Adam), (1e-4, tf.keras.optimizers.AdamW)])
def test_adamw_iff_weight_decay(weight_decay, kind):
    assert type(make_optimizer(TrainConfig(weight_decay=weight_decay), 10)) is kind


def test_weight_decay_shrinks_a_kernel_with_zero_gradient_but_not_biases_norms_or_embeddings():
    train = TrainConfig(learning_rate=0.1, weight_decay=0.5)
    optimizer = make_optimizer(train, 10)
    names = ["dense/kernel", "dense/bias", "block/gamma", "block/beta", "plan_embedding/embeddings"]
    variables = [tf.Variable(np.full(3, 2.0, np.float32), name=name) for name in names]
    optimizer.apply_gradients([(tf.zeros(3), v) for v in variables])
    # decoupled decay: w <- w - lr * wd * w; Adam's own step is 0 for a zero gradient
    np.testing.assert_allclose(variables[0].numpy(), 2.0 * (1 - 0.1 * 0.5), rtol=1e-6)
    for variable in variables[1:]:
        np.testing.assert_array_equal(variable.numpy(), 2.0)


@pytest.mark.parametrize("train", [{"learning_rate_schedule": "warmup_cosine"}, {"weight_decay": 1e-4}])
def test_tiny_run_trains_and_exports_with_each_option(tmp_path, train):
    config = tiny_config()
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, seed=0, **train))
    splits = {"train": tiny_frame(640, 0), "valid": tiny_frame(256, 1), "test": tiny_frame(256, 2)}
    experiment = Experiment(config, splits=splits)
    assert experiment.total_train_steps() == 2 * math.ceil(640 / 64)
    run = experiment.train(str(tmp_path / "run"), verbose=0)
    assert run.metrics["train"]["steps"] == experiment.total_train_steps()
    assert all(np.isfinite(run.history["loss"]))
    assert 0.5 < run.metrics["test"]["use_case/CTR"]["auc"] <= 1.0
    adamw = type(run.model.optimizer) is tf.keras.optimizers.AdamW
    assert adamw == ("weight_decay" in train)
    if "learning_rate_schedule" in train:  # the rate of the last step taken: the decay's last value, near 0
        assert float(run.model.optimizer.learning_rate) < 0.01 * 0.01
    exported = experiment.export(run.model, str(tmp_path / "exports"))
    assert os.path.isfile(os.path.join(exported, "saved_model.pb"))


def test_a_finished_warmup_cosine_run_loads_and_exports_without_its_data(tmp_path):
    # The schedule's step count reads the training split; a run being exported (on another machine, or after
    # its data moved) must not need it. The splits here were handed in, so the run's config names no file.
    config = tiny_config()
    config = dataclasses.replace(config, train=dataclasses.replace(
        config.train, seed=0, epochs=1, learning_rate_schedule="warmup_cosine"))
    splits = {"train": tiny_frame(256, 0), "valid": tiny_frame(128, 1), "test": tiny_frame(128, 2)}
    run = Experiment(config, splits=splits).train(str(tmp_path / "run"), verbose=0)
    loaded_experiment, loaded = load_run(str(tmp_path / "run"))
    exported = loaded_experiment.export(loaded, str(tmp_path / "exports"))
    assert os.path.isfile(os.path.join(exported, "saved_model.pb"))
    for original, restored in zip(run.model.weights, loaded.weights):
        np.testing.assert_array_equal(original.numpy(), restored.numpy())
