"""Validated long-format rows -> serialized ``tf.Example``s of raw values, and their tensorflow-metadata schema.

The values are those the model takes (:func:`grec_tf.data.feature_arrays.frame_to_arrays`: ids as strings,
float32 numbers, the most recent ``max_length`` ids of a sequence), so parsing an example gives back what the
in-memory path feeds the model. Each column becomes an Arrow list column and tfx-bsl's
``RecordBatchToExamplesEncoder`` (C++) writes the examples of a whole chunk at once.

Every example also holds an int64 ``impression_key`` (:func:`shard_impression_keys`), and a chunk's examples
come out grouped by it, so that the shards hold each impression's rows one after the other and training from
them encodes an impression once per batch, as the in-memory path does. An impression is what
:func:`~grec_tf.data.feature_arrays.impression_keys` says (rows whose feature arrays are all equal), found
within one chunk: an impression whose rows fall into two chunks gets two keys, which is correct (rows with one
key still have equal inputs), it is only encoded twice.
"""
from __future__ import annotations

from typing import Dict, List

import numpy as np
import pandas as pd
import pyarrow as pa
from tensorflow_metadata.proto.v0 import schema_pb2

from grec_tf.config import ExperimentConfig
from grec_tf.data.feature_arrays import IMPRESSION_KEY, SEQUENCE_PADDING, as_string_array, frame_to_arrays
from grec_tf.data.tfrecord_source import LABEL, ORACLE_COLUMN, example_feature_spec
from grec_tf.errors import DataError

#: an impression key is ``(file index << FILE_ROW_BITS) + file row``: exact for files of up to 2**40 rows
#: (10^12) and 2**23 files, in an int64
FILE_ROW_BITS = 40


def example_schema(config: ExperimentConfig, with_oracle: bool) -> schema_pb2.Schema:
    """The tensorflow-metadata schema of the examples (from :func:`example_feature_spec`)."""
    from tensorflow_transform.tf_metadata import schema_utils

    return schema_utils.schema_from_feature_spec(example_feature_spec(config, with_oracle))


def _binary(strings: np.ndarray) -> pa.Array:
    """[n] object array of str -> Arrow binary (UTF-8), the type the example encoder writes as bytes."""
    return pa.array(strings, pa.string()).cast(pa.binary())


def _list_column(values: np.ndarray) -> pa.ListArray:
    """[N] or [N, d] numpy values -> an Arrow list column, one list (of 1 or d values) per row: bytes for
    strings, int64 for integers, float32 otherwise."""
    width = 1 if values.ndim == 1 else values.shape[1]
    offsets = pa.array(np.arange(len(values) + 1, dtype=np.int32) * width)
    flat = values.reshape(-1)
    if values.dtype == object:
        return pa.ListArray.from_arrays(offsets, _binary(flat))
    kind = pa.int64() if np.issubdtype(values.dtype, np.integer) else pa.float32()
    return pa.ListArray.from_arrays(offsets, pa.array(flat, kind))


def _sequence_column(ids: np.ndarray) -> pa.ListArray:
    """[N, L] ``""``-padded, left-aligned ids -> each row's ids up to its last non-padding one."""
    present = ids != SEQUENCE_PADDING
    lengths = np.where(present.any(axis=1), ids.shape[1] - np.argmax(present[:, ::-1], axis=1), 0)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    flat = ids[np.arange(ids.shape[1])[None, :] < lengths[:, None]]
    return pa.ListArray.from_arrays(pa.array(offsets), _binary(flat))


def shard_impression_keys(impressions: np.ndarray, file_rows: np.ndarray, file_index: int, file: str) -> np.ndarray:
    """[N] int64 impression keys of a chunk's rows, unique among every chunk of every file read.

    Args:
      impressions: [N] int64 impression numbers within the chunk (``impression_keys``: 0, 1, ... in order of
        first occurrence).
      file_rows: [N] int64 row of ``file`` of each chunk row (data rows, 0-based).
      file_index: the file's position among the files read.

    Each row gets ``(file_index << FILE_ROW_BITS) + the file row of its impression's first row``: a file row
    belongs to one chunk, so two different impressions never share a key, across chunks and files alike.
    """
    if len(file_rows) and (int(file_rows.max()) >> FILE_ROW_BITS or file_index >> (63 - FILE_ROW_BITS)):
        raise DataError(f"row {int(file_rows.max())} of file number {file_index} is past what impression keys "
                        f"number (2**{FILE_ROW_BITS} rows a file, 2**{63 - FILE_ROW_BITS} files)", file=file)
    _, first = np.unique(impressions, return_index=True)  # first row of impression 0, 1, ...
    return (np.int64(file_index) << FILE_ROW_BITS) + file_rows[first[impressions]].astype(np.int64)


def example_columns(frame: pd.DataFrame, config: ExperimentConfig, with_oracle: bool) -> Dict[str, np.ndarray]:
    """Every column an example holds, as numpy arrays [N, ...] (see :mod:`grec_tf.data.tfrecord_source`);
    ``impression_key`` numbers the chunk's impressions 0, 1, ... (:func:`shard_impression_keys` makes it
    unique among chunks)."""
    arrays = frame_to_arrays(frame, config)
    group = config.data.group_column
    if group not in arrays:
        arrays[group] = as_string_array(frame[group])
    if with_oracle:
        arrays[ORACLE_COLUMN] = frame[ORACLE_COLUMN].to_numpy(dtype=np.float32)
    arrays[LABEL] = arrays.pop("label")
    return arrays


class ExampleEncoder:
    """Frames of validated rows -> serialized ``tf.Example``s, one per row, grouped by impression: impressions
    in order of their first row, each one's rows in row order."""

    def __init__(self, config: ExperimentConfig, with_oracle: bool):
        self.config, self.with_oracle = config, with_oracle
        self.sequences = {f.name for f in config.features if f.kind == "sequence"}
        self._encoder = None  # built on first use: the C++ encoder does not pickle to Beam workers

    def encode(self, frame: pd.DataFrame, file_rows: np.ndarray, file_index: int = 0, file: str = "") -> List[bytes]:
        """The examples of ``frame``'s rows, whose rows of ``file`` (the ``file_index``-th file read) are
        ``file_rows`` [N] (see :func:`shard_impression_keys`)."""
        if not len(frame):
            return []
        if self._encoder is None:
            from tfx_bsl.coders import example_coder

            self._encoder = example_coder.RecordBatchToExamplesEncoder(example_schema(self.config, self.with_oracle))
        arrays = example_columns(frame, self.config, self.with_oracle)
        keys = shard_impression_keys(arrays[IMPRESSION_KEY], file_rows, file_index, file)
        order = np.argsort(keys, kind="stable")  # each impression's rows together, in row order
        arrays = {name: value[order] for name, value in {**arrays, IMPRESSION_KEY: keys}.items()}
        columns = [_sequence_column(v) if name in self.sequences else _list_column(v) for name, v in arrays.items()]
        return self._encoder.encode(pa.RecordBatch.from_arrays(columns, list(arrays)))

    def __getstate__(self):
        return {**self.__dict__, "_encoder": None}
