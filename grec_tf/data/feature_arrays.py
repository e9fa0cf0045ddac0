"""Long-format frames -> dense numpy arrays, one per model input, ready for ``tf.data``.

Conventions shared by training, evaluation and the exported serving signatures:

- categorical, item_id, text, flow, use_case: ``string`` [N] (integers are turned into their decimal text,
  so a vocabulary is always a list of strings);
- numerical: ``float32`` [N];
- sequence: ``string`` [N, max_length], the most recent ``max_length`` ids, left-aligned, padded with
  ``""`` (the padding value doubles as the key-padding mask);
- embedding: ``float32`` [N, dim];
- label: ``float32`` [N].
"""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from grec_tf.config import ExperimentConfig, FeatureConfig
from grec_tf.errors import DataError

SEQUENCE_PADDING = ""
ROUTE_COLUMNS = ("flow", "use_case")


def as_string_array(values: pd.Series) -> np.ndarray:
    """[N] object/str -> [N] numpy object array of Python str (ints as decimal text)."""
    if pd.api.types.is_float_dtype(values.dtype):
        # ids stored as floats by CSV readers: 3.0 -> "3"
        return values.map(lambda v: "" if pd.isna(v) else str(int(v)) if float(v).is_integer() else str(v)) \
            .to_numpy(dtype=object)
    return values.astype(str).to_numpy(dtype=object)


def padded_sequence(values: pd.Series, max_length: int) -> np.ndarray:
    """list-valued [N] column -> [N, max_length] string array of the most recent ids, "" padded."""
    array = pa.array(values, from_pandas=True)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if not pa.types.is_list(array.type) and not pa.types.is_large_list(array.type):
        raise DataError(f"expected a list of ids per row, got {array.type}", column=str(values.name))
    array = array.fill_null([])
    lengths = pc.list_value_length(array).to_numpy(zero_copy_only=False).astype(np.int64)
    offsets = array.offsets.to_numpy()[:-1].astype(np.int64) - array.offsets[0].as_py()
    flat = array.flatten().cast(pa.string()).to_numpy(zero_copy_only=False).astype(object)
    kept = np.minimum(lengths, max_length)
    start = offsets + lengths - kept  # keep the most recent ids (the end of each list)
    out = np.full((len(values), max_length), SEQUENCE_PADDING, dtype=object)
    positions = np.arange(max_length)[None, :]
    valid = positions < kept[:, None]
    source = (start[:, None] + positions)[valid]
    out[valid] = flat[source]
    return out


def dense_vectors(values: pd.Series, dim: int) -> np.ndarray:
    """list-valued [N] column of length-``dim`` float vectors -> float32 [N, dim]."""
    array = pa.array(values, from_pandas=True)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    flat = array.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    if flat.size != len(values) * dim:
        raise DataError(f"expected vectors of length {dim} in every row", column=str(values.name))
    return flat.reshape(len(values), dim)


def feature_array(frame: pd.DataFrame, feature: FeatureConfig) -> np.ndarray:
    """One declared feature of ``frame`` as the model input array (see module docstring)."""
    column = frame[feature.name]
    if feature.kind == "numerical":
        return column.to_numpy(dtype=np.float32)
    if feature.kind == "sequence":
        return padded_sequence(column, feature.max_length)
    if feature.kind == "embedding":
        return dense_vectors(column, feature.dim)
    if feature.kind == "text":
        column = column.fillna("")  # a missing query is an empty query
    return as_string_array(column)


def frame_to_arrays(frame: pd.DataFrame, config: ExperimentConfig,
                    with_labels: bool = True) -> Dict[str, np.ndarray]:
    """All model inputs (and ``label`` when ``with_labels``) of a long-format frame."""
    arrays = {name: as_string_array(frame[name]) for name in ROUTE_COLUMNS}
    for feature in config.features:
        arrays[feature.name] = feature_array(frame, feature)
    if with_labels:
        arrays["label"] = frame[config.data.label_column].to_numpy(dtype=np.float32)
    return arrays


def input_names(config: ExperimentConfig) -> Sequence[str]:
    """Names of the model's raw inputs, in a stable order."""
    return list(ROUTE_COLUMNS) + [f.name for f in config.features]
