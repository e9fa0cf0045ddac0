"""Loader for UCI Adult with the same two tasks as census-income.

Input: a Parquet (or CSV with a header) table with the UCI Adult columns, e.g.
``../shared/data/adult/adult.parquet``. Column names are normalized (stripped, lower-cased,
``-`` -> ``_``) and the UCI spellings ``education-num`` / ``sex`` are accepted for
``educational_num`` / ``gender``. String values are stripped (raw UCI files have a leading
space); ``?`` stays a category of its own.

Output (long format, flow ``"adult"`` by default), one row per (person, use case):

- use case ``income``: label 1 when income is ``>50K`` (a final ``.``, as in ``adult.test``, is
  ignored), 0 when it is ``<=50K``;
- use case ``never_married``: label 1 when ``marital_status`` is ``Never-married``.

``income`` and ``marital_status`` are dropped (they are the labels); ``fnlwgt`` (the census sampling
weight) is kept as a column but is not a feature. As for census-income there is no person id:
``row_id`` (0-based position in the file) is the group column and the split key; GAUC is
degenerate, read AUC/AP. ``relationship`` (Husband/Wife/...) partly reveals marital status; it is
kept as a feature, as in the usual Adult multi-task setting.
"""
from __future__ import annotations

import os
from typing import Dict

import numpy as np
import pandas as pd

from grec_tf.data.long_format import wide_to_long
from grec_tf.data.validation import map_label_values, numeric_column, read_table
from grec_tf.errors import DataError

CATEGORICAL_COLUMNS = ("workclass", "education", "occupation", "relationship", "race", "gender",
                       "native_country")
NUMERICAL_COLUMNS = ("age", "educational_num", "capital_gain", "capital_loss", "hours_per_week")
FEATURE_COLUMNS = CATEGORICAL_COLUMNS + NUMERICAL_COLUMNS
WEIGHT_COLUMN = "fnlwgt"
LABEL_SOURCES = ("income", "marital_status")
COLUMNS = FEATURE_COLUMNS + (WEIGHT_COLUMN,) + LABEL_SOURCES
GROUP_COLUMN = "row_id"
DEFAULT_FLOW = "adult"
USE_CASES = ("income", "never_married")
ALIASES: Dict[str, str] = {"education_num": "educational_num", "sex": "gender"}
_INCOME_VALUES: Dict[str, int] = {">50K": 1, "<=50K": 0}
NEVER_MARRIED = "Never-married"


def _normalize(name: object) -> str:
    key = str(name).strip().lower().replace("-", "_").replace(" ", "_")
    return ALIASES.get(key, key)


def load_adult(path: str, flow: str = DEFAULT_FLOW) -> pd.DataFrame:
    """Reads UCI Adult into long format (module docstring).

    Returns:
      Columns ``flow, use_case, label, row_id, fnlwgt`` then the 7 categorical (str) and 5 numerical
      (float64) feature columns; 2 rows per input row.

    Raises:
      DataError: missing/empty/unreadable file, a missing column, a non-numeric value in a numerical
        column, a missing categorical value, or an income other than ``<=50K``/``>50K``.
    """
    path = os.fspath(path)
    raw = read_table(path)
    raw.columns = [_normalize(c) for c in raw.columns]
    missing = [c for c in COLUMNS if c not in raw.columns]
    if missing:
        raise DataError(f"Adult column is missing (all missing: {missing}); expected the columns "
                        f"{list(COLUMNS)}", file=path, column=missing[0])

    frame = pd.DataFrame({GROUP_COLUMN: np.arange(len(raw), dtype=np.int64)})
    frame[WEIGHT_COLUMN] = numeric_column(raw[WEIGHT_COLUMN], path)
    for name in CATEGORICAL_COLUMNS:
        frame[name] = _strings(raw[name], path)
    for name in NUMERICAL_COLUMNS:
        frame[name] = numeric_column(raw[name], path)

    income = _strings(raw["income"], path).str.replace(" ", "", regex=False).str.rstrip(".").str.upper()
    frame["income"] = map_label_values(raw["income"], income, _INCOME_VALUES, path, "income", "'<=50K' or '>50K'")
    marital = _strings(raw["marital_status"], path)
    frame["never_married"] = (marital == NEVER_MARRIED).to_numpy(dtype=np.int64)
    return wide_to_long(frame, {"income": "income", "never_married": "never_married"}, flow=flow,
                        file=path)


def _strings(series: pd.Series, path: str) -> pd.Series:
    """Stripped string values; a missing value is an error naming its row."""
    missing = series.isna().to_numpy()
    if missing.any():
        row = int(np.argmax(missing))
        raise DataError(f"missing value {series.iloc[row]!r}; expected a string ('?' for unknown)",
                        file=path, column=str(series.name), row=row)
    return series.astype(str).str.strip()
