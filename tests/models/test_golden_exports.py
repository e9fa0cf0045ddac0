"""Refactors keep the model: weights trained and exported by an earlier version give the same outputs now.

``tests/fixtures/golden_exports/{variant}.npz`` were written by the code of commit 007e47f (before routers
became components and models took explicit arguments): a tiny model of each variant trained for one epoch,
its weights by checkpoint key, 48 raw input rows and the exported SavedModel's ``serving_default`` and
``score_all`` outputs on them; ``{variant}.json`` holds the experiment config and the training statistics.

Here each variant is rebuilt with today's code from the same config and statistics, every weight is
loaded from the fixture through :data:`RENAMES` (checkpoint paths that moved), the model is exported with
today's exporter, and the SavedModel must reproduce the recorded outputs to 1e-6.
"""
import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf

import grec_tf  # noqa: F401
from grec_tf.config import parse_config
from grec_tf.data.feature_statistics import FeatureStatistics
from grec_tf.experiment import Experiment

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "golden_exports")
VARIANTS = ["grec_task_sentence", "grec_token_capacity", "grec_task_towers", "mmoe", "shared_bottom"]
SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"

#: (old checkpoint path pattern, new path) - where weights moved when the code was restructured
RENAMES = [
    (r"^bottom/moe/expert_(kernel|bias)_(in|out)$", r"bottom/moe/experts/\1_\2"),
    (r"^bottom/moe/(flow|use_case|task)_embedding/embeddings$", r"bottom/moe/router/\1_embedding"),
    (r"^text_encoders/0/", r"text_encoders/query/"),
]


def _renamed(old: str) -> str:
    for pattern, replacement in RENAMES:
        old = re.sub(pattern, replacement, old)
    return old


def _checkpoint_keys(model: tf.keras.Model, tmp_path) -> dict:
    """Checkpoint path (without the attribute suffix) of each of the model's weights: every weight is
    filled with its own index + 1, saved, and read back by key."""
    for i, weight in enumerate(model.weights):
        weight.assign(tf.fill(weight.shape, tf.cast(i + 1, weight.dtype)))
    prefix = str(tmp_path / "probe")
    model.save_weights(prefix)
    reader = tf.train.load_checkpoint(prefix)
    keys = {}
    for key in reader.get_variable_to_shape_map():
        value = reader.get_tensor(key)
        if key.endswith(SUFFIX) and "optimizer" not in key and np.size(value) and np.all(value == value.flat[0]):
            index = int(value.flat[0]) - 1
            if 0 <= index < len(model.weights) and value.flat[0] == index + 1:
                keys[key[:-len(SUFFIX)]] = index
    return keys


@pytest.mark.parametrize("variant", VARIANTS)
def test_old_weights_give_the_recorded_outputs(variant, tmp_path):
    with open(os.path.join(FIXTURES, f"{variant}.json"), encoding="utf-8") as handle:
        saved = json.load(handle)
    golden = np.load(os.path.join(FIXTURES, f"{variant}.npz"))
    config = parse_config(saved["config"])
    experiment = Experiment(config, statistics=FeatureStatistics.from_dict(saved["statistics"]))
    model = experiment.build_model()
    keys = _checkpoint_keys(model, tmp_path)
    old = {name[len("weight::"):-len(SUFFIX)]: golden[name] for name in golden.files if name.startswith("weight::")}
    old = {_renamed(path): value for path, value in old.items()}
    loaded = set()
    for path, index in keys.items():
        assert path in old, f"{variant}: weight {path} has no counterpart in the old checkpoint"
        model.weights[index].assign(old[path])
        loaded.add(index)
    assert loaded == set(range(len(model.weights))), f"{variant}: weights left unloaded"

    inputs = {name[len("input::"):]: golden[name] for name in golden.files if name.startswith("input::")}
    path = experiment.export(model, str(tmp_path / "exports"))
    served = tf.saved_model.load(path)
    feeds = {name: tf.constant(value) for name, value in inputs.items()}
    probability = served.signatures["serving_default"](**feeds)["probability"].numpy()
    np.testing.assert_allclose(probability, golden["output::probability"], atol=1e-6, rtol=0)
    feeds.pop("use_case")
    probabilities = served.signatures["score_all"](**feeds)["probabilities"].numpy()
    np.testing.assert_allclose(probabilities, golden["output::probabilities"], atol=1e-6, rtol=0)
