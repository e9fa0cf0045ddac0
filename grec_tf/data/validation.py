"""Validation of long-format input and reading of user tables.

:func:`validate_long_frame` checks a long-format frame (one row per (impression, task sentence))
against an :class:`~grec_tf.config.ExperimentConfig` and raises :class:`~grec_tf.errors.DataError`
on the first problem found. Every error names the file, the column, the first bad row (0-based
position in the frame, not its index label) with its offending value, and what was expected.

Checks, in this order:

1. the frame has rows; no column name appears twice;
2. required columns are present: ``flow``, ``use_case``, ``data.label_column``,
   ``data.group_column`` and every declared feature; extra columns only when ``allow_extra``;
3. ``flow`` values are in ``data.flows``, ``use_case`` values in ``data.use_cases``;
4. labels are 0 or 1 (int, float 0.0/1.0 or bool); the group id is never missing;
5. each feature by kind:

   ============  ==============================================================================
   categorical   str or int values (one type per column), no None/NaN
   item_id       as categorical
   numerical     int or float values (not bool, not strings), finite: no NaN, no +-Inf
   text          str values; None/NaN are accepted and mean an empty query
   sequence      one list-like (list, tuple, 1-d array) of str or int ids per row, no None
                 rows or elements; empty lists are fine
   embedding     one list-like of exactly ``dim`` finite numbers per row
   ============  ==============================================================================

Numeric columns are checked with numpy; list columns are converted once to Arrow and checked
with ``pyarrow.compute``. Python loops over rows run only on the error path, to locate the first
bad row of an object column that Arrow/pandas refused as a whole.
"""
from __future__ import annotations

import os
import re
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from grec_tf.config import ExperimentConfig, FeatureConfig
from grec_tf.errors import DataError

FLOW_COLUMN = "flow"
USE_CASE_COLUMN = "use_case"

_CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zip", ".csv.xz", ".tsv")
_PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")


# --------------------------------------------------------------------------------------- reading
def check_file(path: str) -> None:
    """Raises :class:`DataError` unless ``path`` is an existing, non-empty regular file."""
    if not os.path.exists(path):
        raise DataError("file not found", file=path)
    if os.path.isdir(path):
        raise DataError("is a directory; expected a file", file=path)
    if os.path.getsize(path) == 0:
        raise DataError("empty file (0 bytes); expected a header and at least one row", file=path)


def _read_csv(path: str, sep: str, dtype: Optional[Mapping[str, Any]]) -> pd.DataFrame:
    try:
        return pd.read_csv(path, sep=sep, dtype=dtype)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        raise
    except ValueError:
        if not dtype:
            raise
        # A value does not fit the requested dtype: read without it, so that the validation of
        # the column can name the row.
        return pd.read_csv(path, sep=sep)


def read_table(path: str, *, allow_empty: bool = False,
               dtype: Optional[Mapping[str, Any]] = None) -> pd.DataFrame:
    """Reads a ``.parquet`` or ``.csv`` file (with a header row) into a DataFrame.

    ``dtype`` optionally maps column names to dtypes (e.g. ``float32`` to halve memory); columns
    absent from the file are ignored, and a column whose values do not fit keeps its natural dtype.

    Raises :class:`DataError` naming the file when it is missing, empty (0 bytes or no data rows,
    unless ``allow_empty``), of an unsupported format, or unreadable (a malformed CSV line is
    reported as the 0-based data row it would have been).
    """
    path = os.fspath(path)
    check_file(path)
    lower = path.lower()
    if lower.endswith(_PARQUET_SUFFIXES):
        try:
            frame = pd.read_parquet(path)
        except Exception as err:  # pyarrow raises several types for corrupt files
            raise DataError(f"cannot read as Parquet ({type(err).__name__}: {err}); expected a valid "
                            f"Parquet file", file=path) from None
    elif lower.endswith(_CSV_SUFFIXES):
        try:
            frame = _read_csv(path, "\t" if lower.endswith(".tsv") else ",", dtype)
        except pd.errors.EmptyDataError:
            raise DataError("empty file: no header and no rows; expected a CSV header and at least "
                            "one row", file=path) from None
        except pd.errors.ParserError as err:
            row = None
            match = re.search(r"line (\d+)", str(err))
            if match:  # line 1 is the header, so data row r is on line r + 2
                row = max(int(match.group(1)) - 2, 0)
            raise DataError(f"malformed CSV ({str(err).strip()}); expected the same number of fields on every "
                            f"line as in the header", file=path, row=row) from None
        except UnicodeDecodeError as err:
            raise DataError(f"cannot decode as UTF-8 text ({err}); expected a CSV text file",
                            file=path) from None
        if dtype:
            for column, wanted in dtype.items():
                if column in frame.columns and pd.api.types.is_numeric_dtype(frame[column].dtype):
                    frame[column] = frame[column].astype(wanted)
    else:
        raise DataError(f"unsupported file format; expected one of "
                        f"{list(_PARQUET_SUFFIXES + _CSV_SUFFIXES)}", file=path)
    if len(frame) == 0 and not allow_empty:
        raise DataError(f"no rows (only the columns {list(frame.columns)[:8]}); expected at least "
                        f"one row", file=path)
    return frame


# ------------------------------------------------------------------------------------- helpers
def _short(value: Any, limit: int = 80) -> str:
    """``repr`` of an offending value, truncated for messages."""
    if isinstance(value, (np.ndarray, np.generic)):
        value = value.tolist()  # plain Python values: 2.5, not np.float64(2.5)
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _first(mask: np.ndarray) -> Optional[int]:
    """Position of the first True in a boolean array, or None."""
    mask = np.asarray(mask, dtype=bool)
    if mask.size == 0:
        return None
    pos = int(np.argmax(mask))
    return pos if mask[pos] else None


def _value_at(series: pd.Series, row: int) -> Any:
    return series.iloc[row]


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _is_missing_scalar(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, (float, np.floating)) and np.isnan(value)


def _is_list_like(value: Any) -> bool:
    if isinstance(value, np.ndarray):
        return value.ndim == 1
    return isinstance(value, (list, tuple))


def _type_name(value: Any) -> str:
    return type(value).__name__


def _arrow_type(series: pd.Series) -> Optional[pa.DataType]:
    if isinstance(series.dtype, pd.ArrowDtype):
        return series.dtype.pyarrow_dtype
    return None


def numeric_column(series: pd.Series, file: str) -> np.ndarray:
    """Parses a column of numbers (or numeric strings) to float64; raises on the first value that is
    not a finite number, naming the file, the column and the row."""
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"value {_short(series.iloc[row])} is not a finite number; expected a number",
                        file=file, column=str(series.name), row=row)
    return values


# ---------------------------------------------------------------------------- column checkers
def _check_no_missing(series: pd.Series, file: str, column: str, expected: str) -> None:
    missing = series.isna().to_numpy()
    row = _first(missing)
    if row is not None:
        raise DataError(f"missing value {_short(_value_at(series, row))}; expected {expected}",
                        file=file, column=column, row=row)


def _check_ids(series: pd.Series, file: str, column: str, kind: str) -> None:
    """categorical / item_id: str or int values, one type per column, nothing missing."""
    expected = f"a {kind} value (str or int)"
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        _check_ids(pd.Series(dtype.categories), file, column, kind)
        _check_no_missing(series, file, column, expected + ", not None/NaN")
        return
    _check_no_missing(series, file, column, expected + ", not None/NaN")
    arrow = _arrow_type(series)
    if arrow is not None:
        if pa.types.is_string(arrow) or pa.types.is_large_string(arrow) or pa.types.is_integer(arrow):
            return
        raise DataError(f"got {arrow} value {_short(_value_at(series, 0))}; expected {expected}",
                        file=file, column=column, row=0)
    if pd.api.types.is_bool_dtype(dtype):
        raise DataError(f"got bool value {_short(_value_at(series, 0))}; expected {expected}",
                        file=file, column=column, row=0)
    if pd.api.types.is_integer_dtype(dtype) or isinstance(dtype, pd.StringDtype):
        return
    if pd.api.types.is_float_dtype(dtype):
        values = series.to_numpy(dtype="float64", na_value=np.nan)
        row = _first(values != np.round(values))
        row = 0 if row is None else row
        raise DataError(f"got float value {_short(values[row])} (column dtype {dtype}); expected "
                        f"{expected}: cast integer codes to int, or use strings",
                        file=file, column=column, row=row)
    if dtype == object:
        inferred = pd.api.types.infer_dtype(series, skipna=False)
        if inferred in ("string", "integer"):
            return
        values = series.to_numpy(dtype=object)
        first_is_str = isinstance(values[0], str)
        for row, value in enumerate(values):  # error path only
            if not (isinstance(value, str) or _is_int(value)):
                raise DataError(f"got {_type_name(value)} value {_short(value)}; expected {expected}",
                                file=file, column=column, row=row)
            if isinstance(value, str) != first_is_str:
                raise DataError(
                    f"got {_type_name(value)} value {_short(value)} but row 0 is "
                    f"{_type_name(values[0])}; expected {expected} of one type for the whole column",
                    file=file, column=column, row=row)
    raise DataError(f"got column dtype {dtype} (value {_short(_value_at(series, 0))}); expected "
                    f"{expected}", file=file, column=column, row=0)


def _check_numerical(series: pd.Series, file: str, column: str) -> None:
    """numerical: int/float values, all finite."""
    expected = "a finite int or float (no NaN, no Inf)"
    dtype = series.dtype
    arrow = _arrow_type(series)
    numeric = (pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
               and (arrow is None or pa.types.is_integer(arrow) or pa.types.is_floating(arrow)))
    if not numeric and dtype == object:
        inferred = pd.api.types.infer_dtype(series, skipna=True)
        if inferred in ("integer", "floating", "mixed-integer-float", "decimal"):
            numeric = True
        else:
            values = series.to_numpy(dtype=object)
            for row, value in enumerate(values):  # error path only
                if not (_is_real(value) or _is_missing_scalar(value)):
                    raise DataError(f"got {_type_name(value)} value {_short(value)}; expected "
                                    f"{expected}", file=file, column=column, row=row)
            numeric = True  # only numbers and missing values: the finiteness check reports them
    if not numeric:
        value = _value_at(series, 0)
        raise DataError(f"got {_type_name(value)} value {_short(value)} (column dtype {dtype}); "
                        f"expected {expected}", file=file, column=column, row=0)
    values = series.to_numpy(dtype="float64", na_value=np.nan)
    row = _first(~np.isfinite(values))
    if row is not None:
        raise DataError(f"non-finite value {_short(values[row])}; expected {expected}",
                        file=file, column=column, row=row)


def _check_text(series: pd.Series, file: str, column: str) -> None:
    """text: str values; None/NaN are accepted (an empty query)."""
    expected = "a str (None/NaN are read as an empty query)"
    dtype = series.dtype
    if isinstance(dtype, pd.StringDtype):
        return
    arrow = _arrow_type(series)
    if arrow is not None and (pa.types.is_string(arrow) or pa.types.is_large_string(arrow)):
        return
    if dtype == object:
        if pd.api.types.infer_dtype(series, skipna=True) in ("string", "empty"):
            return
        values = series.to_numpy(dtype=object)
        for row, value in enumerate(values):  # error path only
            if not (isinstance(value, str) or _is_missing_scalar(value)):
                raise DataError(f"got {_type_name(value)} value {_short(value)}; expected {expected}",
                                file=file, column=column, row=row)
        return
    if series.isna().all():
        return
    valid = ~series.isna().to_numpy()
    row = _first(valid)
    raise DataError(f"got value {_short(_value_at(series, row))} (column dtype {dtype}); expected "
                    f"{expected}", file=file, column=column, row=row)


def _list_slow_path(values: np.ndarray, file: str, column: str, expected: str, element_ok,
                    element_kind) -> None:
    """Finds the first row that is not a list-like of acceptable elements (error path only)."""
    first_kind = None
    for row, value in enumerate(values):
        if not _is_list_like(value):
            what = "missing value" if _is_missing_scalar(value) else f"got {_type_name(value)}"
            raise DataError(f"{what} {_short(value)}; expected {expected}",
                            file=file, column=column, row=row)
        for j, element in enumerate(value):
            if not element_ok(element):
                raise DataError(f"element {j} is {_type_name(element)} {_short(element)} in "
                                f"{_short(value)}; expected {expected}", file=file, column=column,
                                row=row)
            kind = element_kind(element)
            if first_kind is None:
                first_kind = (kind, row)
            elif kind != first_kind[0]:
                raise DataError(f"element {j} is {_type_name(element)} {_short(element)} but row "
                                f"{first_kind[1]} holds {first_kind[0]} elements; expected "
                                f"{expected}, one element type for the whole column",
                                file=file, column=column, row=row)


def _to_arrow_list(series: pd.Series, file: str, column: str, expected: str, element_ok,
                   element_kind) -> pa.Array:
    """Converts a list column to one Arrow list array, or raises naming the first bad row."""
    try:
        if isinstance(series.dtype, pd.ArrowDtype):
            array = pa.array(series)
        else:
            array = pa.array(series.to_numpy(dtype=object), from_pandas=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
        array = None
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if array is not None and (pa.types.is_list(array.type) or pa.types.is_large_list(array.type)
                              or pa.types.is_fixed_size_list(array.type)):
        return array
    values = series.to_numpy(dtype=object)
    _list_slow_path(values, file, column, expected, element_ok, element_kind)
    # Everything looked fine row by row but Arrow refused the column: report row 0.
    raise DataError(f"cannot read as a list column (value {_short(values[0])}); expected {expected}",
                    file=file, column=column, row=0)


def _check_list_common(array: pa.Array, series: pd.Series, file: str, column: str,
                       expected: str) -> None:
    row = _first(array.is_null().to_numpy(zero_copy_only=False))
    if row is not None:
        raise DataError(f"missing value {_short(_value_at(series, row))}; expected {expected}",
                        file=file, column=column, row=row)
    flat = pc.list_flatten(array)
    parents = pc.list_parent_indices(array).to_numpy(zero_copy_only=False)
    bad = _first(flat.is_null().to_numpy(zero_copy_only=False))
    if bad is not None:
        row = int(parents[bad])
        raise DataError(f"missing element in {_short(_value_at(series, row))}; expected {expected}",
                        file=file, column=column, row=row)


def _first_nonempty_row(array: pa.Array) -> int:
    lengths = pc.list_value_length(array).to_numpy(zero_copy_only=False)
    row = _first(lengths > 0)
    return 0 if row is None else row


def _check_sequence(series: pd.Series, file: str, column: str) -> None:
    """sequence: one list of str or int ids per row."""
    expected = "a list of str or int ids per row (e.g. ['p1', 'p7'] or [3, 9]; [] is fine)"
    array = _to_arrow_list(series, file, column, expected,
                           element_ok=lambda e: isinstance(e, str) or _is_int(e),
                           element_kind=lambda e: "str" if isinstance(e, str) else "int")
    _check_list_common(array, series, file, column, expected)
    value_type = array.type.value_type
    if not (pa.types.is_string(value_type) or pa.types.is_large_string(value_type)
            or pa.types.is_integer(value_type) or pa.types.is_null(value_type)):
        row = _first_nonempty_row(array)
        raise DataError(f"got a list of {value_type} {_short(_value_at(series, row))}; expected "
                        f"{expected}", file=file, column=column, row=row)


def _check_embedding(series: pd.Series, file: str, column: str, dim: int) -> None:
    """embedding: one list of exactly ``dim`` finite numbers per row."""
    expected = f"a list of exactly {dim} finite floats per row"
    array = _to_arrow_list(series, file, column, expected,
                           element_ok=_is_real, element_kind=lambda e: "number")
    _check_list_common(array, series, file, column, expected)
    lengths = pc.list_value_length(array).to_numpy(zero_copy_only=False)
    row = _first(lengths != dim)
    if row is not None:
        raise DataError(f"got a list of length {int(lengths[row])} "
                        f"{_short(_value_at(series, row))}; expected {expected}",
                        file=file, column=column, row=row)
    value_type = array.type.value_type
    if not (pa.types.is_floating(value_type) or pa.types.is_integer(value_type)):
        raise DataError(f"got a list of {value_type} {_short(_value_at(series, 0))}; expected "
                        f"{expected}", file=file, column=column, row=0)
    flat = pc.list_flatten(array).cast(pa.float64()).to_numpy(zero_copy_only=False)
    bad = _first(~np.isfinite(flat))
    if bad is not None:
        parents = pc.list_parent_indices(array).to_numpy(zero_copy_only=False)
        row = int(parents[bad])
        element = bad - int(np.flatnonzero(parents == row)[0])
        raise DataError(f"element {element} is {flat[bad]} in {_short(_value_at(series, row))}; "
                        f"expected {expected}", file=file, column=column, row=row)


def check_allowed_values(series: pd.Series, allowed: Sequence[Any], file: str, column: str,
                         what: str, source: str) -> None:
    """Raises on the first value of ``series`` not in ``allowed`` (``source`` names the config key)."""
    bad = ~series.isin(list(allowed)).to_numpy()
    row = _first(bad)
    if row is not None:
        raise DataError(f"unknown {what} {_short(_value_at(series, row))}; expected one of "
                        f"{list(allowed)} ({source})", file=file, column=column, row=row)


def check_binary(series: pd.Series, file: str, column: str, what: str = "label") -> None:
    """Raises on the first value that is not 0 or 1 (ints, 0.0/1.0 floats and bools are fine)."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype) and not series.isna().any():
        return
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
        values = series.to_numpy(dtype="float64", na_value=np.nan)
        bad = ~((values == 0.0) | (values == 1.0))
    else:
        bad = ~series.isin([0, 1]).to_numpy(dtype=bool)  # strings such as '1' are not labels
    row = _first(bad)
    if row is not None:
        raise DataError(f"{what} {_short(_value_at(series, row))}; expected 0 or 1",
                        file=file, column=column, row=row)


def map_label_values(raw: pd.Series, normalized: pd.Series, mapping: Dict[str, int], file: str, column: str,
                     expected: str) -> np.ndarray:
    """int64 [N] labels from raw label strings: ``normalized`` (cleaned ``raw``) looked up in ``mapping``;
    the first value not in it raises, quoting the raw value and what was ``expected``."""
    mapped = normalized.map(mapping)
    row = _first(mapped.isna().to_numpy())
    if row is not None:
        raise DataError(f"{column} value {raw.iloc[row]!r}; expected {expected}", file=file, column=column, row=row)
    return mapped.to_numpy(dtype=np.int64)


def check_feature(series: pd.Series, feature: FeatureConfig, file: str) -> None:
    """Checks one feature column against its declared kind (see the module docstring)."""
    if feature.kind in ("categorical", "item_id"):
        _check_ids(series, file, feature.name, feature.kind)
    elif feature.kind == "numerical":
        _check_numerical(series, file, feature.name)
    elif feature.kind == "text":
        _check_text(series, file, feature.name)
    elif feature.kind == "sequence":
        _check_sequence(series, file, feature.name)
    elif feature.kind == "embedding":
        _check_embedding(series, file, feature.name, feature.dim)
    else:  # FeatureConfig validates kinds, so this means a new kind without a checker
        raise NotImplementedError(f"no validation for feature kind {feature.kind!r}")


def required_columns(config: ExperimentConfig) -> List[str]:
    """Columns a long frame must have for ``config``, in check order."""
    columns = [FLOW_COLUMN, USE_CASE_COLUMN, config.data.label_column, config.data.group_column]
    columns += [f.name for f in config.features]
    return list(dict.fromkeys(columns))


def check_columns(frame: pd.DataFrame, required: Iterable[str], file: str,
                  allow_extra: bool = True, what: str = "") -> None:
    """Raises on duplicated, missing (and, unless ``allow_extra``, extra) columns."""
    columns = [str(c) for c in frame.columns]
    duplicated = frame.columns[frame.columns.duplicated()]
    if len(duplicated):
        raise DataError(f"column appears {columns.count(str(duplicated[0]))} times; expected unique "
                        f"column names", file=file, column=str(duplicated[0]))
    required = list(required)
    present = set(columns)
    missing = [c for c in required if c not in present]
    if missing:
        more = f" (all missing: {missing})" if len(missing) > 1 else ""
        raise DataError(f"required column is missing{more}; expected the columns {required}"
                        f"{what}", file=file, column=missing[0])
    if not allow_extra:
        wanted = set(required)
        extra = [c for c in columns if c not in wanted]
        if extra:
            more = f" (all extra: {extra})" if len(extra) > 1 else ""
            raise DataError(f"unexpected column{more}; expected only the columns {required}{what}",
                            file=file, column=extra[0])


# --------------------------------------------------------------------------------- entry point
def validate_long_frame(frame: pd.DataFrame, config: ExperimentConfig, file: str,
                        allow_extra: bool = True) -> None:
    """Checks a long-format frame against ``config``; raises :class:`DataError` on the first problem.

    ``file`` is the name used in messages (the path the frame was read from). Rows are reported by
    0-based position in ``frame``. Returns None when the frame is valid.
    """
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"got {type(frame).__name__}; expected a pandas DataFrame", file=file)
    if len(frame) == 0:
        raise DataError("no rows; expected at least one row", file=file)
    data = config.data
    check_columns(frame, required_columns(config), file, allow_extra,
                  what=" (flow, use_case, data.label_column, data.group_column and each feature)")
    check_allowed_values(frame[FLOW_COLUMN], data.flows, file, FLOW_COLUMN, "flow", "data.flows")
    check_allowed_values(frame[USE_CASE_COLUMN], data.use_cases, file, USE_CASE_COLUMN, "use case",
                         "data.use_cases")
    check_binary(frame[data.label_column], file, data.label_column)
    _check_no_missing(frame[data.group_column], file, data.group_column,
                      "a group id (data.group_column) on every row")
    for feature in config.features:
        check_feature(frame[feature.name], feature, file)
