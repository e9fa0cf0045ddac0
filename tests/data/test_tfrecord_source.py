"""``data.source: tfrecord``: the shards give back the in-memory model inputs and impressions (each one's rows
together under one key), shuffled batches keep impressions whole, training streams them end to end through
``pipelines.train`` encoding impressions once per batch, evaluation and loss equal the in-memory ones, and the
export serves raw values with the in-memory model's probabilities."""
import dataclasses
import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import yaml

from grec_tf.data.feature_arrays import IMPRESSION_KEY, frame_to_arrays
from grec_tf.data.feature_statistics import compute_feature_statistics
from grec_tf.data.tfrecord_source import (SCHEMA_FILE, SHUFFLE_BLOCK, evaluation_frame, reading_config, shard_files,
                                          tfrecord_dataset)
from grec_tf.errors import DataError
from grec_tf.experiment import Experiment, load_run


def _decoded(value: np.ndarray) -> np.ndarray:
    return value.astype(object) if value.dtype != object else np.vectorize(
        lambda v: v.decode() if isinstance(v, bytes) else v, otypes=[object])(value)


def _by_row(arrays: dict) -> dict:
    """The arrays with rows in one canonical order (by tenure, distinct between impressions on this data, then
    by use case, distinct within one)."""
    order = np.lexsort((_decoded(arrays["use_case"]).astype(str), arrays["tenure"]))
    return {name: value[order] for name, value in arrays.items()}


def _same_partition(keys: np.ndarray, other: np.ndarray) -> bool:
    """True when two [N] key arrays group the rows alike (whatever the key values)."""
    return np.array_equal(pd.factorize(keys)[0], pd.factorize(other)[0])


def test_shards_give_back_the_in_memory_model_inputs_and_impressions(preprocessed):
    config = reading_config(preprocessed.config, preprocessed.out)
    batches = list(tfrecord_dataset(config, "train", 100, shuffle=True))
    got = _by_row({name: np.concatenate([b[name].numpy() for b in batches]) for name in batches[0]})
    expected = _by_row(frame_to_arrays(preprocessed.splits["train"], preprocessed.config))
    assert set(got) == set(expected)
    for name, value in expected.items():
        assert got[name].shape == value.shape, name
        if name != IMPRESSION_KEY:
            np.testing.assert_array_equal(_decoded(got[name]), _decoded(value), err_msg=name)
    # one chunk per file here, so the shards' keys group the rows exactly as the in-memory content keys do
    assert got[IMPRESSION_KEY].dtype == np.int64
    assert _same_partition(got[IMPRESSION_KEY], expected[IMPRESSION_KEY])
    assert len(np.unique(expected[IMPRESSION_KEY])) < len(expected[IMPRESSION_KEY])  # impressions of two rows


def _shard_keys(path: str) -> np.ndarray:
    """[N] impression keys of one shard file, in file order."""
    records = list(tf.data.TFRecordDataset(path, compression_type="GZIP").as_numpy_iterator())
    spec = {IMPRESSION_KEY: tf.io.FixedLenFeature([], tf.int64)}
    return tf.io.parse_example(records, spec)[IMPRESSION_KEY].numpy()


def test_each_impression_is_one_run_of_rows_in_its_shard(preprocessed):
    config = reading_config(preprocessed.config, preprocessed.out)
    for split in ("train", "valid", "test"):
        for path in shard_files(config, split):
            keys = _shard_keys(path)
            runs = 1 + np.count_nonzero(np.diff(keys))
            assert runs == len(np.unique(keys)), path  # no key comes back after another one
            assert np.all(np.diff(keys) >= 0), path  # impressions in order of their first file row


def _split_impressions(batches) -> int:
    """How many more (batch, key) pairs than keys: the encodings that cutting impressions between batches adds."""
    keys = [np.unique(batch) for batch in batches]
    return sum(len(k) for k in keys) - len(np.unique(np.concatenate(keys)))


def test_shuffled_batches_keep_impressions_whole_unlike_a_record_shuffle(preprocessed):
    config = reading_config(preprocessed.config, preprocessed.out)
    batch = 32
    keyed = [b[IMPRESSION_KEY].numpy() for b in tfrecord_dataset(config, "train", batch, shuffle=True)]
    rows = sum(len(k) for k in keyed)
    # blocks of consecutive rows are shuffled: only a block or a batch boundary can cut an impression
    cut = _split_impressions(keyed)
    assert cut <= -(-rows // SHUFFLE_BLOCK) + len(keyed)
    spec = {IMPRESSION_KEY: tf.io.FixedLenFeature([], tf.int64)}
    records = tf.data.TFRecordDataset(shard_files(config, "train"), compression_type="GZIP")
    single = [tf.io.parse_example(b, spec)[IMPRESSION_KEY].numpy()
              for b in records.shuffle(rows, seed=1).batch(batch)]
    assert _split_impressions(single) > 2 * cut  # shuffling single records splits most impressions of two rows


def test_a_folder_written_without_keys_still_trains_one_row_an_impression(preprocessed, tmp_path, caplog):
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    old = str(tmp_path / "old")
    shutil.copytree(preprocessed.out, old)
    schema = text_format.Parse(open(os.path.join(old, SCHEMA_FILE)).read(), schema_pb2.Schema())
    kept = [feature for feature in schema.feature if feature.name != IMPRESSION_KEY]
    del schema.feature[:]
    schema.feature.extend(kept)
    with open(os.path.join(old, SCHEMA_FILE), "w") as handle:
        handle.write(text_format.MessageToString(schema))
    experiment = Experiment(reading_config(preprocessed.config, old))
    batch = next(iter(experiment.dataset("train", shuffle=True)))
    assert IMPRESSION_KEY not in batch and "label" in batch
    assert f"{old}: the examples have no impression_key" in caplog.text and "pipelines.preprocess" in caplog.text
    model = experiment.build_model()
    model.fit(experiment.dataset("train", shuffle=True), epochs=1, verbose=0)
    counted = model.trained_examples.numpy()
    assert counted["impressions"] == counted["rows"] == len(preprocessed.splits["train"])


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
    # the whole training split as one batch: the loss is the in-memory one, impressions encoded once each
    (shards,) = streamed.dataset("train", batch_size=4096)
    (memory,) = in_memory.dataset("train", batch_size=4096)
    assert float(model.compute_loss(shards)) == pytest.approx(float(twin.compute_loss(memory)), abs=1e-5)
    with open(os.path.join(trained, "metrics.json")) as handle:
        train = json.load(handle)["train"]
    impressions = len(np.unique(memory[IMPRESSION_KEY].numpy()))
    assert impressions < len(preprocessed.splits["train"])
    assert train["epochs_run"] * impressions <= train["impressions_this_run"] < train["rows_this_run"]


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
