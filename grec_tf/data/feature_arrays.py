"""Long-format frames -> dense numpy arrays, one per model input, ready for ``tf.data``.

Conventions shared by training, evaluation and the exported serving signatures:

- categorical, item_id, text, flow, use_case: ``string`` [N] (integers are turned into their decimal text,
  so a vocabulary is always a list of strings);
- numerical: ``float32`` [N];
- sequence: ``string`` [N, max_length], the most recent ``max_length`` ids, left-aligned, padded with
  ``""`` (the padding value doubles as the key-padding mask);
- embedding: ``float32`` [N, dim];
- label: ``float32`` [N];
- impression_key: ``int64`` [N], equal for rows whose feature arrays are all equal (see :func:`impression_keys`).
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
IMPRESSION_KEY = "impression_key"
#: mixed-radix codes stay below this before they are renumbered (int64 arithmetic cannot overflow)
_CODE_LIMIT = 2 ** 62


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
    """All model inputs of a long-format frame; ``with_labels`` adds what training and evaluation read beyond
    the serving inputs: ``label`` and ``impression_key``."""
    arrays = {name: as_string_array(frame[name]) for name in ROUTE_COLUMNS}
    for feature in config.features:
        arrays[feature.name] = feature_array(frame, feature)
    if with_labels:
        arrays["label"] = frame[config.data.label_column].to_numpy(dtype=np.float32)
        arrays[IMPRESSION_KEY] = impression_keys([arrays[f.name] for f in config.features], len(frame))
    return arrays


def impression_keys(features: Sequence[np.ndarray], rows: int) -> np.ndarray:
    """[N] int64 impression number of each row: rows get the same number exactly when every array of
    ``features`` (each [N, ...]) holds equal values in them, numbered 0, 1, ... in order of first occurrence.

    An impression is defined by content, not by an id column: the model's encoders are functions of these
    arrays only, so rows with one key are guaranteed to encode alike (a wrong id could not break that). The
    numbering is exact (no hashing): each column is factorized and the codes are combined in mixed radix,
    renumbered whenever the radix would leave int64.
    """
    keys, radix = np.zeros(rows, dtype=np.int64), 1
    if rows == 0:
        return keys
    for values in features:
        for column in np.asarray(values).reshape(rows, -1).T:
            codes, uniques = pd.factorize(column, use_na_sentinel=False)
            if radix * max(len(uniques), 1) >= _CODE_LIMIT:
                keys, distinct = pd.factorize(keys)
                radix = len(distinct)
            keys, radix = keys * max(len(uniques), 1) + codes, radix * max(len(uniques), 1)
    return pd.factorize(keys)[0].astype(np.int64)


def input_names(config: ExperimentConfig) -> Sequence[str]:
    """Names of the model's raw inputs, in a stable order."""
    return list(ROUTE_COLUMNS) + [f.name for f in config.features]
