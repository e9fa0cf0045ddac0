"""``data.source: tfrecord``: the folder ``python -m pipelines.preprocess`` wrote, streamed from its shards.

The folder (``data.path``) holds:

- ``{train,valid,test}/part-*.tfrecord.gz``: ``tf.Example`` shards of validated *raw* values, one per
  long-format row: the route columns and every feature as the model takes them
  (:mod:`grec_tf.data.feature_arrays`), ``label`` (float), the group column (string, for GAUC),
  ``impression_key`` (int64: equal only for rows of one impression, whose model inputs are equal; see
  :func:`grec_tf.preprocessing.examples.shard_impression_keys`) and ``oracle_p`` when the source had it. The
  rows of an impression follow each other (unless the table's chunks cut it in two: then it has two keys).
  A sequence holds its kept ids (the most recent ``max_length``), unpadded; parsing pads it with ``""`` to
  ``[B, max_length]``, exactly as ``frame_to_arrays`` does;
- ``schema.pbtxt``: the tensorflow-metadata ``Schema`` of those examples; its feature spec parses them;
- ``statistics.json``: the training split's :class:`FeatureStatistics` (from the tf.Transform analyzers);
- ``manifest.json``: row counts, the files read, and the data contract (:func:`data_contract`) the
  folder was made for; a config whose contract differs is refused;
- ``transform_output/``: the tf.Transform output (vocabularies, analyzer values, transform graph).

Training batches come from :func:`tfrecord_dataset`: shard files read in parallel (interleaved in a fixed
order), batch, then ``parse_example`` on the batch, prefetch. Shuffled, each file is read in blocks of
``SHUFFLE_BLOCK`` consecutive serialized examples and a window of ``data.shuffle_buffer`` examples' worth of
blocks is shuffled, so that an impression's rows stay together (the model encodes each distinct
``impression_key`` of a batch once) and are cut only where a block or batch boundary falls inside them.
Folders written before the key existed still train: their batches have no ``impression_key`` and the model
encodes every row. Nothing reads a whole split into memory except :func:`evaluation_frame`, which keeps only
the few columns the metrics need.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Dict, Iterator, List, Mapping, Optional

import numpy as np
import pandas as pd
import tensorflow as tf

from grec_tf.config import ExperimentConfig
from grec_tf.data.feature_arrays import IMPRESSION_KEY, ROUTE_COLUMNS, SEQUENCE_PADDING
from grec_tf.data.feature_statistics import FeatureStatistics
from grec_tf.data.sources import LoadedData
from grec_tf.data.splits import SPLITS
from grec_tf.errors import DataError

SCHEMA_FILE = "schema.pbtxt"
STATISTICS_FILE = "statistics.json"
MANIFEST_FILE = "manifest.json"
TRANSFORM_OUTPUT = "transform_output"
SHARD_SUFFIX = ".tfrecord.gz"
LABEL = "label"
ORACLE_COLUMN = "oracle_p"
#: shard files read at the same time
READ_PARALLELISM = 4
#: consecutive examples shuffled as one: an impression of m rows is cut by a block boundary with probability
#: about (m - 1) / 32 (telecom, 3.1 rows an impression: 6.8% more encodings than impressions at batch 512),
#: while a batch of 512 rows still comes from 16 places of the shards; shuffling single examples splits
#: almost every impression between batches
SHUFFLE_BLOCK = 32

logger = logging.getLogger(__name__)
FeatureSpec = Dict[str, object]  # name -> tf.io.FixedLenFeature | tf.io.VarLenFeature


def example_feature_spec(config: ExperimentConfig, with_oracle: bool) -> FeatureSpec:
    """The ``tf.io`` spec of the examples of ``config``: model inputs, ``label``, the group column (string
    unless it is a declared feature), ``impression_key`` and, ``with_oracle``, ``oracle_p``."""
    spec: FeatureSpec = {name: tf.io.FixedLenFeature([], tf.string) for name in ROUTE_COLUMNS}
    for f in config.features:
        if f.kind == "numerical":
            spec[f.name] = tf.io.FixedLenFeature([], tf.float32)
        elif f.kind == "embedding":
            spec[f.name] = tf.io.FixedLenFeature([f.dim], tf.float32)
        elif f.kind == "sequence":
            spec[f.name] = tf.io.VarLenFeature(tf.string)
        else:
            spec[f.name] = tf.io.FixedLenFeature([], tf.string)
    spec[LABEL] = tf.io.FixedLenFeature([], tf.float32)
    spec.setdefault(config.data.group_column, tf.io.FixedLenFeature([], tf.string))
    spec[IMPRESSION_KEY] = tf.io.FixedLenFeature([], tf.int64)
    if with_oracle:
        spec[ORACLE_COLUMN] = tf.io.FixedLenFeature([], tf.float32)
    return spec


def data_contract(config: ExperimentConfig) -> Dict:
    """What the examples and statistics of a preprocessed folder depend on: the features (kinds, lengths,
    vocabulary sizes), the task sentences, the label and group columns, and the WordPiece size."""
    d = config.data
    contract = {"features": [dataclasses.asdict(f) for f in config.features], "flows": list(d.flows),
                "use_cases": list(d.use_cases), "label_column": d.label_column, "group_column": d.group_column}
    if any(f.kind == "text" for f in config.features) and config.model.text_encoder.type == "transformer":
        contract["text_vocab_size"] = config.model.text_encoder.vocab_size
    return contract


def reading_config(config: ExperimentConfig, folder: str) -> ExperimentConfig:
    """``config`` with ``data.source: tfrecord`` and ``data.path: folder`` (a preprocessed folder)."""
    return dataclasses.replace(config, data=dataclasses.replace(config.data, source="tfrecord", path=folder))


def _folder(config: ExperimentConfig) -> str:
    if not config.data.path:
        raise DataError("data.path: required for data.source 'tfrecord' (the --out folder of pipelines.preprocess)")
    return config.data.path


def read_manifest(config: ExperimentConfig) -> Dict:
    """The folder's ``manifest.json``, after checking that it was made for ``config``'s data contract."""
    path = os.path.join(_folder(config), MANIFEST_FILE)
    if not tf.io.gfile.exists(path):
        raise DataError(f"not found; expected the output folder of python -m pipelines.preprocess at data.path "
                        f"({config.data.path})", file=path)
    with tf.io.gfile.GFile(path) as handle:
        manifest = json.load(handle)
    made_for, wanted = manifest["contract"], data_contract(config)
    for key in wanted:
        if made_for.get(key) != wanted[key]:
            raise DataError(f"the folder was preprocessed for {key} = {made_for.get(key)!r} but the config has "
                            f"{wanted[key]!r}; run python -m pipelines.preprocess again with this config",
                            file=path, column=key)
    return manifest


def read_statistics(config: ExperimentConfig) -> FeatureStatistics:
    """The training split's statistics the preprocessing pipeline wrote (``statistics.json``)."""
    read_manifest(config)
    with tf.io.gfile.GFile(os.path.join(_folder(config), STATISTICS_FILE)) as handle:
        return FeatureStatistics.from_dict(json.load(handle))


def read_feature_spec(config: ExperimentConfig) -> FeatureSpec:
    """The feature spec of the folder's ``schema.pbtxt`` (the examples are parsed with it)."""
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2
    from tensorflow_transform.tf_metadata import schema_utils

    path = os.path.join(_folder(config), SCHEMA_FILE)
    with tf.io.gfile.GFile(path) as handle:
        schema = text_format.Parse(handle.read(), schema_pb2.Schema())
    return dict(schema_utils.schema_as_feature_spec(schema).feature_spec)


def shard_files(config: ExperimentConfig, split: str) -> List[str]:
    """The sorted ``.tfrecord.gz`` shards of ``split``; DataError naming the folder when there are none."""
    folder = os.path.join(_folder(config), split)
    files = sorted(tf.io.gfile.glob(os.path.join(folder, f"*{SHARD_SUFFIX}")))
    if not files:
        raise DataError(f"no *{SHARD_SUFFIX} shards of the {split} split; expected the output of "
                        f"python -m pipelines.preprocess", file=folder)
    return files


def _parse_spec(config: ExperimentConfig, names: List[str]) -> FeatureSpec:
    spec = read_feature_spec(config)
    missing = [name for name in names if name not in spec]
    if missing:
        raise DataError(f"the examples have no feature {missing[0]!r}; expected {names}",
                        file=os.path.join(_folder(config), SCHEMA_FILE), column=missing[0])
    return {name: spec[name] for name in names}


def _padded_sequences(parsed: Dict[str, tf.Tensor], config: ExperimentConfig) -> Dict[str, tf.Tensor]:
    """Sequence features (sparse [B, <=L]) -> dense [B, max_length] string, ``""`` padded."""
    out = dict(parsed)
    for f in config.features:
        if f.kind == "sequence" and f.name in parsed:
            ids = parsed[f.name]
            shape = tf.stack([ids.dense_shape[0], tf.constant(f.max_length, tf.int64)])
            out[f.name] = tf.sparse.to_dense(tf.SparseTensor(ids.indices, ids.values, shape),
                                             default_value=SEQUENCE_PADDING)
    return out


def _read_shard(file: tf.Tensor, block: Optional[int]) -> tf.data.Dataset:
    """The serialized examples of one shard file: scalars, or [<= block] vectors of consecutive ones."""
    records = tf.data.TFRecordDataset(file, compression_type="GZIP")
    return records if block is None else records.batch(block)


def parsed_batches(config: ExperimentConfig, split: str, names: List[str], batch_size: int, shuffle: bool = False,
                   shuffle_buffer: int = 1, seed: Optional[int] = None) -> tf.data.Dataset:
    """Batches of the ``names`` columns of a split: name -> [B, ...] tensor (sequences [B, max_length]).

    Shards are interleaved in a fixed order (shuffled per pass when ``shuffle``), so that two unshuffled
    passes see the rows in the same order. ``shuffle`` shuffles blocks of ``SHUFFLE_BLOCK`` consecutive
    examples of one file (a window of ``shuffle_buffer // SHUFFLE_BLOCK`` blocks), keeping impressions whole.
    """
    files = shard_files(config, split)
    spec = _parse_spec(config, names)
    records = tf.data.Dataset.from_tensor_slices(files)
    if shuffle:
        records = records.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    block = SHUFFLE_BLOCK if shuffle else None  # blocks of one file: the interleave mixes files record by record
    records = records.interleave(lambda f: _read_shard(f, block), cycle_length=min(len(files), READ_PARALLELISM),
                                 num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if shuffle:
        records = (records.shuffle(max(1, shuffle_buffer // SHUFFLE_BLOCK), seed=seed, reshuffle_each_iteration=True)
                   .unbatch())
    return (records.batch(batch_size)
            .map(lambda batch: _padded_sequences(tf.io.parse_example(batch, spec), config),
                 num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .prefetch(tf.data.AUTOTUNE))


def model_input_names(config: ExperimentConfig, with_labels: bool = True) -> List[str]:
    """The model inputs (and ``label``) the examples hold, in a stable order."""
    return list(ROUTE_COLUMNS) + [f.name for f in config.features] + ([LABEL] if with_labels else [])


def tfrecord_dataset(config: ExperimentConfig, split: str, batch_size: int, shuffle: bool = False) -> tf.data.Dataset:
    """Batches of model inputs, ``label`` and ``impression_key`` [B] int64 of a split, like
    :func:`grec_tf.data.dataset.make_dataset` gives for the in-memory path (shuffled with ``data.shuffle_buffer``
    and ``data.seed`` when ``shuffle``, impressions kept together). A folder written without the key gives
    batches without it: the model then encodes every row, as it did before the key existed."""
    d = config.data
    names = model_input_names(config)
    if IMPRESSION_KEY in read_feature_spec(config):
        names.append(IMPRESSION_KEY)
    else:
        logger.warning("%s: the examples have no %s (written before it existed), so training encodes every row; "
                       "run python -m pipelines.preprocess again to encode each impression once per batch",
                       _folder(config), IMPRESSION_KEY)
    return parsed_batches(config, split, names, batch_size, shuffle, d.shuffle_buffer, d.seed)


def evaluation_frame(config: ExperimentConfig, split: str, batch_size: int = 8192) -> pd.DataFrame:
    """The columns the metrics read (flow, use_case, the label and group columns, ``oracle_p`` when present),
    in the row order of an unshuffled :func:`tfrecord_dataset` pass."""
    d = config.data
    names = list(ROUTE_COLUMNS) + [LABEL, d.group_column]
    if ORACLE_COLUMN in read_feature_spec(config):
        names.append(ORACLE_COLUMN)
    columns: Dict[str, List[np.ndarray]] = {name: [] for name in names}
    for batch in parsed_batches(config, split, names, batch_size):
        for name in names:
            columns[name].append(batch[name].numpy())
    frame = pd.DataFrame({name: np.concatenate(parts) for name, parts in columns.items()})
    for name in names:
        if frame[name].dtype == object:
            frame[name] = frame[name].str.decode("utf-8")
    return frame.rename(columns={LABEL: d.label_column})


class StreamedSplits(Mapping):
    """Stands for the frames of a tfrecord folder: the splits exist (``in``, ``len``, iteration) but are
    streamed, never loaded; reading one as a frame raises a DataError that says so."""

    def __init__(self, folder: str):
        self.folder = folder

    def __getitem__(self, split: str) -> pd.DataFrame:
        raise DataError(f"the {split} split of data.source 'tfrecord' is streamed from its shards, never loaded "
                        f"as a frame; use Experiment.dataset({split!r})", file=os.path.join(self.folder, split))

    def __iter__(self) -> Iterator[str]:
        return iter(SPLITS)

    def __len__(self) -> int:
        return len(SPLITS)


def load_tfrecord_data(config: ExperimentConfig) -> LoadedData:
    """The splits of a preprocessed folder (streamed) and a one-line description of them."""
    manifest = read_manifest(config)
    rows = manifest["rows"]
    for split in SPLITS:
        shard_files(config, split)
    counts = " / ".join(f"{rows[split]:,}" for split in SPLITS)
    description = (f"data: tfrecord folder {config.data.path} (preprocessed from {manifest['origin']}): "
                   f"{counts} rows (train / valid / test), streamed")
    files = {split: os.path.join(config.data.path, split) for split in SPLITS}
    return LoadedData(StreamedSplits(config.data.path), files, "files", description)
