"""Deterministic train/valid/test split of a long frame by key, and the names of the split modes.

All long rows sharing a key (an impression id, AliExpress ``search_id``, census/adult ``row_id``)
land in the same split, so no task sentence of an impression leaks across splits. The distinct
keys are sorted, shuffled with ``numpy.random.default_rng(seed)`` and cut into exact fractions of the
key count; the result depends only on the set of keys and the seed, not on row order.

How an experiment's splits come about is one of :data:`SPLIT_MODES` (chosen by
:func:`grec_tf.data.sources.load_data` from ``data.source`` and what ``data.path`` holds):

- ``generated``: the telecom generator wrote ``train/valid/test.parquet``; used as written;
- ``files``: a folder with ``train``, ``valid`` and ``test`` files, used as given (no fractions, no seed);
- ``release_test``: a public release's own train and test files; the test file is the test split and
  valid is carved from the train file by key (``data.valid_fraction``, ``data.seed``);
- ``split_by_group``: one file, split by key into all three (``data.valid_fraction``,
  ``data.test_fraction``, ``data.seed``).
"""
from __future__ import annotations

from typing import Dict

import numpy as np
import pandas as pd

from grec_tf.config import SPLIT_MODES  # noqa: F401  (re-exported: how the splits came about)
from grec_tf.errors import ConfigError, DataError

SPLITS = ("train", "valid", "test")


def split_frame(frame: pd.DataFrame, valid_fraction: float, test_fraction: float, seed: int,
                key_column: str, file: str = "<frame>") -> Dict[str, pd.DataFrame]:
    """Splits ``frame`` into ``{"train", "valid", "test"}`` by ``key_column``.

    ``round(n_keys * fraction)`` keys go to valid and to test (so a fraction of 0 gives an empty
    split); train keeps the rest and must not be empty. Rows keep their relative order; each part
    has a fresh 0..n-1 index.

    Raises:
      ConfigError: fractions outside [0, 1) or summing to 1 or more (``data.valid_fraction`` /
        ``data.test_fraction``).
      DataError: ``key_column`` is missing or has a missing value (naming the first row), or there
        are too few keys to leave any for training.
    """
    for name, value in (("data.valid_fraction", valid_fraction), ("data.test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"{name}: expected a fraction in [0, 1), got {value!r}")
    if valid_fraction + test_fraction >= 1.0:
        raise ConfigError(f"data.valid_fraction + data.test_fraction: expected < 1 so that training "
                          f"keeps data, got {valid_fraction} + {test_fraction}")
    if key_column not in frame.columns:
        raise DataError(f"split key column is missing; expected one of {list(frame.columns)[:12]}",
                        file=file, column=key_column)
    keys = frame[key_column]
    missing = keys.isna().to_numpy()
    if missing.any():
        row = int(np.argmax(missing))
        raise DataError(f"missing split key {keys.iloc[row]!r}; expected a key on every row",
                        file=file, column=key_column, row=row)

    codes, uniques = pd.factorize(keys, sort=True)
    n_keys = len(uniques)
    n_test = int(round(n_keys * test_fraction))
    n_valid = int(round(n_keys * valid_fraction))
    if n_keys - n_test - n_valid < 1:
        raise DataError(f"only {n_keys} distinct keys: nothing left for training with valid_fraction="
                        f"{valid_fraction} and test_fraction={test_fraction}", file=file,
                        column=key_column)
    assignment = np.zeros(n_keys, dtype=np.int8)  # 0 train, 1 valid, 2 test
    permutation = np.random.default_rng(seed).permutation(n_keys)
    assignment[permutation[:n_test]] = 2
    assignment[permutation[n_test:n_test + n_valid]] = 1
    part = assignment[codes]
    return {name: frame.iloc[np.flatnonzero(part == i)].reset_index(drop=True)
            for i, name in enumerate(SPLITS)}
