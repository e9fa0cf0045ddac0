"""Loader for the public AliExpress multi-task dataset.

The release (Alibaba Tianchi; one ``train.csv`` / ``test.csv`` pair per country: NL, ES, FR, US)
has one row per impression with the header::

    search_id, categorical_1 .. categorical_16, numerical_1 .. numerical_63, click, conversion

:func:`load_aliexpress` reads one such file (CSV or Parquet with the same columns) and returns
the canonical long format, with ``flow`` = the country given and, by default, two use cases:

- ``CTR``: label ``click``, on every impression;
- ``CTCVR``: label ``click & conversion``, on every impression (conversion over all impressions);
- ``CVR`` (optional, ``use_cases=(..., "CVR")``): label ``conversion``, only on clicked impressions.

``search_id`` is kept as the group column (GAUC per search) and is the natural split key: all
impressions of one search stay in one split. ``click`` and ``conversion`` are dropped from the
output (they are the labels). Column names are matched after stripping surrounding whitespace
and lower-casing, so ``" Search_ID"`` is accepted; any other column is dropped.
"""
from __future__ import annotations

import os
from typing import Dict, Sequence

import pandas as pd

from grec_tf.data.long_format import RuleSpec, wide_to_long
from grec_tf.data.validation import read_table
from grec_tf.errors import ConfigError, DataError

GROUP_COLUMN = "search_id"
CATEGORICAL_COLUMNS = tuple(f"categorical_{i}" for i in range(1, 17))
NUMERICAL_COLUMNS = tuple(f"numerical_{i}" for i in range(1, 64))
LABEL_COLUMNS = ("click", "conversion")
COLUMNS = (GROUP_COLUMN,) + CATEGORICAL_COLUMNS + NUMERICAL_COLUMNS + LABEL_COLUMNS
FEATURE_COLUMNS = CATEGORICAL_COLUMNS + NUMERICAL_COLUMNS

#: Use case -> label rule (see :mod:`grec_tf.data.long_format`).
ALIEXPRESS_RULES: Dict[str, RuleSpec] = {
    "CTR": "click",
    "CTCVR": "click & conversion",
    "CVR": {"label": "conversion", "where": "click"},
}
DEFAULT_USE_CASES = ("CTR", "CTCVR")
#: The 63 numericals are read as float32: the full release has tens of millions of rows per
#: country, and the model computes in float32 (or bfloat16) anyway.
NUMERICAL_DTYPE = "float32"


def load_aliexpress(path: str, flow: str, use_cases: Sequence[str] = DEFAULT_USE_CASES) -> pd.DataFrame:
    """Reads one AliExpress file (``.csv`` or ``.parquet``) into long format.

    Args:
      path: the file, e.g. ``data/aliexpress/AliExpress_NL/train.csv``.
      flow: the country of this file set (``data.flow`` in the config), e.g. ``"NL"``.
      use_cases: which of :data:`ALIEXPRESS_RULES` to produce, in this order.

    Returns:
      Columns ``flow, use_case, label, search_id, categorical_1..16, numerical_1..63`` (categoricals
      int64 as in the file, numericals float32); one row per (impression, use case),
      impression-major.

    Raises:
      DataError: the file is missing/empty/unreadable, a schema column is missing (named with the
        file), or ``click``/``conversion`` holds a value other than 0/1 (first bad row).
      ConfigError: no flow, or an unknown use case.
    """
    path = os.fspath(path)
    if not isinstance(flow, str) or not flow.strip():
        raise ConfigError(f"data.flow: the AliExpress loader needs the country of {path} as the flow "
                          f"(e.g. 'NL'), got {flow!r}")
    unknown = [u for u in use_cases if u not in ALIEXPRESS_RULES]
    if unknown or not use_cases:
        raise ConfigError(f"data.use_cases: AliExpress offers {list(ALIEXPRESS_RULES)}, got "
                          f"{list(use_cases)}")
    frame = read_table(path, dtype={name: NUMERICAL_DTYPE for name in NUMERICAL_COLUMNS})
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        more = f" ({len(missing)} missing: {missing[:6]}{'...' if len(missing) > 6 else ''})"
        raise DataError(f"AliExpress column is missing{more}; expected the header search_id, "
                        f"categorical_1..16, numerical_1..63, click, conversion",
                        file=path, column=missing[0])
    frame = frame.loc[:, list(COLUMNS)]
    for name in NUMERICAL_COLUMNS:  # headers spelled differently escaped read_table's dtype
        if pd.api.types.is_float_dtype(frame[name].dtype) and frame[name].dtype != NUMERICAL_DTYPE:
            frame[name] = frame[name].astype(NUMERICAL_DTYPE)
    rules = {u: ALIEXPRESS_RULES[u] for u in use_cases}
    return wide_to_long(frame, rules, flow=flow.strip(), file=path)
