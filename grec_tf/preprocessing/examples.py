"""Validated long-format rows -> serialized ``tf.Example``s of raw values, and their tensorflow-metadata schema.

The values are those the model takes (:func:`grec_tf.data.feature_arrays.frame_to_arrays`: ids as strings,
float32 numbers, the most recent ``max_length`` ids of a sequence), so parsing an example gives back what the
in-memory path feeds the model. Each column becomes an Arrow list column and tfx-bsl's
``RecordBatchToExamplesEncoder`` (C++) writes the examples of a whole chunk at once.
"""
from __future__ import annotations

from typing import Dict, List

import numpy as np
import pandas as pd
import pyarrow as pa
from tensorflow_metadata.proto.v0 import schema_pb2

from grec_tf.config import ExperimentConfig
from grec_tf.data.feature_arrays import SEQUENCE_PADDING, as_string_array, frame_to_arrays
from grec_tf.data.tfrecord_source import LABEL, ORACLE_COLUMN, example_feature_spec


def example_schema(config: ExperimentConfig, with_oracle: bool) -> schema_pb2.Schema:
    """The tensorflow-metadata schema of the examples (from :func:`example_feature_spec`)."""
    from tensorflow_transform.tf_metadata import schema_utils

    return schema_utils.schema_from_feature_spec(example_feature_spec(config, with_oracle))


def _binary(strings: np.ndarray) -> pa.Array:
    """[n] object array of str -> Arrow binary (UTF-8), the type the example encoder writes as bytes."""
    return pa.array(strings, pa.string()).cast(pa.binary())


def _list_column(values: np.ndarray) -> pa.ListArray:
    """[N] or [N, d] numpy values -> an Arrow list column, one list (of 1 or d values) per row."""
    width = 1 if values.ndim == 1 else values.shape[1]
    offsets = pa.array(np.arange(len(values) + 1, dtype=np.int32) * width)
    flat = values.reshape(-1)
    return pa.ListArray.from_arrays(offsets, _binary(flat) if values.dtype == object else pa.array(flat, pa.float32()))


def _sequence_column(ids: np.ndarray) -> pa.ListArray:
    """[N, L] ``""``-padded, left-aligned ids -> each row's ids up to its last non-padding one."""
    present = ids != SEQUENCE_PADDING
    lengths = np.where(present.any(axis=1), ids.shape[1] - np.argmax(present[:, ::-1], axis=1), 0)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    flat = ids[np.arange(ids.shape[1])[None, :] < lengths[:, None]]
    return pa.ListArray.from_arrays(pa.array(offsets), _binary(flat))


def example_columns(frame: pd.DataFrame, config: ExperimentConfig, with_oracle: bool) -> Dict[str, np.ndarray]:
    """Every column an example holds, as numpy arrays [N, ...] (see :mod:`grec_tf.data.tfrecord_source`)."""
    arrays = frame_to_arrays(frame, config)
    group = config.data.group_column
    if group not in arrays:
        arrays[group] = as_string_array(frame[group])
    if with_oracle:
        arrays[ORACLE_COLUMN] = frame[ORACLE_COLUMN].to_numpy(dtype=np.float32)
    arrays[LABEL] = arrays.pop("label")
    return arrays


class ExampleEncoder:
    """Frames of validated rows -> serialized ``tf.Example``s (one per row, in row order)."""

    def __init__(self, config: ExperimentConfig, with_oracle: bool):
        self.config, self.with_oracle = config, with_oracle
        self.sequences = {f.name for f in config.features if f.kind == "sequence"}
        self._encoder = None  # built on first use: the C++ encoder does not pickle to Beam workers

    def encode(self, frame: pd.DataFrame) -> List[bytes]:
        if not len(frame):
            return []
        if self._encoder is None:
            from tfx_bsl.coders import example_coder

            self._encoder = example_coder.RecordBatchToExamplesEncoder(example_schema(self.config, self.with_oracle))
        arrays = example_columns(frame, self.config, self.with_oracle)
        columns = [_sequence_column(v) if name in self.sequences else _list_column(v) for name, v in arrays.items()]
        return self._encoder.encode(pa.RecordBatch.from_arrays(columns, list(arrays)))

    def __getstate__(self):
        return {**self.__dict__, "_encoder": None}
