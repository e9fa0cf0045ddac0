"""``data.source: tfrecord``: the shards give back the in-memory model inputs, training streams them end to end
through ``pipelines.train``, evaluation gives the in-memory metrics, and the export serves raw values with the
in-memory model's probabilities."""
import dataclasses
import os

import numpy as np
import pytest
import tensorflow as tf
import yaml

from grec_tf.data.feature_arrays import frame_to_arrays
from grec_tf.data.feature_statistics import compute_feature_statistics
from grec_tf.data.tfrecord_source import evaluation_frame, reading_config, tfrecord_dataset
from grec_tf.errors import DataError
from grec_tf.experiment import Experiment, load_run


def _decoded(value: np.ndarray) -> np.ndarray:
    return value.astype(object) if value.dtype != object else np.vectorize(
        lambda v: v.decode() if isinstance(v, bytes) else v, otypes=[object])(value)


def _by_row(arrays: dict) -> dict:
    """The arrays with rows in one canonical order (by tenure, distinct on this data)."""
    order = np.argsort(arrays["tenure"], kind="stable")
    return {name: value[order] for name, value in arrays.items()}


def test_shards_give_back_the_in_memory_model_inputs(preprocessed):
    config = reading_config(preprocessed.config, preprocessed.out)
    batches = list(tfrecord_dataset(config, "train", 100, shuffle=True))
    got = {name: np.concatenate([b[name].numpy() for b in batches]) for name in batches[0]}
    expected = _by_row(frame_to_arrays(preprocessed.splits["train"], preprocessed.config))
    got = _by_row(got)
    assert set(got) == set(expected)
    for name, value in expected.items():
        assert got[name].shape == value.shape, name
        np.testing.assert_array_equal(_decoded(got[name]), _decoded(value), err_msg=name)


def test_streamed_splits_are_never_frames_and_a_foreign_config_is_refused(preprocessed):
    experiment = Experiment(reading_config(preprocessed.config, preprocessed.out))
    assert list(experiment.splits) == ["train", "valid", "test"]
    assert experiment.data.description.endswith("rows (train / valid / test), streamed")
    assert experiment.split_mode == "files"
    with pytest.raises(DataError, match="streamed from its shards, never loaded"):
        experiment.splits["train"]  # noqa: B018
    other = dataclasses.replace(preprocessed.config, features=preprocessed.config.features[:-1])
    with pytest.raises(DataError, match=r"manifest.json, column 'features': the folder was preprocessed for"):
        Experiment(reading_config(other, preprocessed.out)).statistics  # noqa: B018


@pytest.fixture(scope="module")
def trained(preprocessed, tmp_path_factory):
    from pipelines.train import main

    root = tmp_path_factory.mktemp("tfrecord_run")
    config_file = root / "tiny.yaml"
    config_file.write_text(yaml.safe_dump(reading_config(preprocessed.config, preprocessed.out).to_dict()))
    run_dir = str(root / "run")
    assert main(["--config", str(config_file), "--out", run_dir, "--verbose", "0"]) == 0
    return run_dir


def test_training_streams_the_shards_and_evaluates_like_the_in_memory_path(preprocessed, trained):
    streamed, model = load_run(trained)
    in_memory = Experiment(preprocessed.config, splits=preprocessed.splits,
                           statistics=compute_feature_statistics(preprocessed.splits["train"], preprocessed.config))
    assert in_memory.statistics.vocabularies == streamed.statistics.vocabularies
    twin = in_memory.build_model()
    twin.set_weights(model.get_weights())
    got, expected = streamed.evaluate(model)["test"], in_memory.evaluate(twin)["test"]
    assert set(got) == set(expected) and "AAL/CTR" in got
    for key in expected:
        assert got[key]["auc"] == pytest.approx(expected[key]["auc"], abs=1e-6), key
    assert len(evaluation_frame(streamed.config, "test")) == len(preprocessed.splits["test"])


def test_export_serves_raw_values_with_the_in_memory_probabilities(preprocessed, trained):
    _, model = load_run(trained)
    in_memory = Experiment(preprocessed.config, splits=preprocessed.splits,
                           statistics=compute_feature_statistics(preprocessed.splits["train"], preprocessed.config))
    twin = in_memory.build_model()
    twin.set_weights(model.get_weights())
    arrays = frame_to_arrays(preprocessed.splits["test"], preprocessed.config, with_labels=False)
    inputs = {k: tf.constant(v.astype(str) if v.dtype == object else v) for k, v in arrays.items()}
    expected = twin(inputs, training=False)["probability"].numpy()
    export_root = os.path.join(trained, "exports", preprocessed.config.model_name)
    (version,) = os.listdir(export_root)
    served = tf.saved_model.load(os.path.join(export_root, version)).signatures["serving_default"](**inputs)
    np.testing.assert_allclose(served["probability"].numpy(), expected, atol=1e-6)
