"""``data.source`` -> validated long-format train/valid/test frames.

- ``telecom``: the embedded generator; ``data.path`` (or the caller's default folder) holds
  ``{train,valid,test}.parquet`` + ``card.json`` and is (re)generated when missing or stale.
- ``aliexpress``, ``census_income``, ``adult``: the raw public files at ``data.path``; a folder with
  a train and a test file keeps the release's test split (valid is carved from train), a single file
  is split by ``data.group_column``.
- ``csv`` / ``parquet``: tables already in long format: a folder with ``{train,valid,test}.{csv,parquet}``
  or one file, split by ``data.group_column``.

Every split is checked by :func:`grec_tf.data.validation.validate_long_frame` and restricted to the
configured flows and use cases.
"""
from __future__ import annotations

import os
from typing import Callable, Dict, Optional, Tuple

import pandas as pd

from grec_tf.config import ExperimentConfig
from grec_tf.data.splits import SPLITS, split_frame
from grec_tf.data.validation import read_table, validate_long_frame
from grec_tf.errors import ConfigError, DataError

# source -> file names of the release's train and test parts inside a data.path folder
_RAW_FILES: Dict[str, Tuple[str, str]] = {
    "aliexpress": ("train.csv", "test.csv"),
    "census_income": ("census-income.data", "census-income.test"),
    "adult": ("adult.parquet", ""),
}


def _raw_loader(source: str) -> Callable[[str, ExperimentConfig], pd.DataFrame]:
    if source == "aliexpress":
        from grec_tf.data.aliexpress import load_aliexpress

        def load(path, config):
            if not config.data.flow:
                raise ConfigError("data.flow: the AliExpress country of this file set (e.g. NL) is required")
            return load_aliexpress(path, config.data.flow, tuple(config.data.use_cases))
        return load
    if source == "census_income":
        from grec_tf.data.census_income import load_census_income

        return lambda path, config: load_census_income(path, config.data.flows[0])
    if source == "adult":
        from grec_tf.data.adult import load_adult

        return lambda path, config: load_adult(path, config.data.flows[0])
    return lambda path, config: read_table(path)


def _long_table_files(folder: str) -> Optional[Dict[str, str]]:
    for ext in (".parquet", ".csv"):
        files = {split: os.path.join(folder, split + ext) for split in SPLITS}
        if all(os.path.isfile(f) for f in files.values()):
            return files
    return None


def _split(frame: pd.DataFrame, config: ExperimentConfig, file: str) -> Dict[str, pd.DataFrame]:
    d = config.data
    return split_frame(frame, d.valid_fraction, d.test_fraction, d.seed, d.group_column, file=file)


def _load_raw_splits(config: ExperimentConfig, default_dir: Optional[str]) -> Tuple[Dict[str, pd.DataFrame],
                                                                                     Dict[str, str]]:
    d = config.data
    if d.source == "telecom":
        from grec_tf.data.telecom import ensure_dataset

        folder = d.path or default_dir
        if folder is None:
            raise ConfigError("data.path: a folder for the generated telecom data is required")
        ensure_dataset(folder, d.rows, d.seed)
        files = {split: os.path.join(folder, f"{split}.parquet") for split in SPLITS}
        return {split: pd.read_parquet(path) for split, path in files.items()}, files
    if not d.path:
        raise ConfigError(f"data.path: required for data.source {d.source!r}")
    if not os.path.exists(d.path):
        raise DataError(f"not found; expected the {d.source} data at data.path", file=d.path)
    load = _raw_loader(d.source)
    if os.path.isdir(d.path):
        long_files = _long_table_files(d.path) if d.source in ("csv", "parquet") else None
        if long_files:
            return {split: load(path, config) for split, path in long_files.items()}, long_files
        train_name, test_name = _RAW_FILES.get(d.source, ("", ""))
        train_path = os.path.join(d.path, train_name) if train_name else ""
        test_path = os.path.join(d.path, test_name) if test_name else ""
        if train_path and test_path and os.path.isfile(train_path) and os.path.isfile(test_path):
            test = load(test_path, config)
            parts = split_frame(load(train_path, config), d.valid_fraction, 0.0, d.seed, d.group_column,
                                file=train_path)
            return ({"train": parts["train"], "valid": parts["valid"], "test": test},
                    {"train": train_path, "valid": train_path, "test": test_path})
        if train_path and os.path.isfile(train_path):
            return _split(load(train_path, config), config, train_path), dict.fromkeys(SPLITS, train_path)
        raise DataError(f"folder holds none of the expected files ({train_name or 'train/valid/test'}"
                        f"{', ' + test_name if test_name else ''})", file=d.path)
    return _split(load(d.path, config), config, d.path), dict.fromkeys(SPLITS, d.path)


def load_splits(config: ExperimentConfig, default_dir: Optional[str] = None) -> Dict[str, pd.DataFrame]:
    """Validated ``{"train", "valid", "test"}`` long-format frames for ``config``.

    ``default_dir``: where the telecom data lives when ``data.path`` is not set.
    """
    frames, files = _load_raw_splits(config, default_dir)
    d = config.data
    out = {}
    for split in SPLITS:
        frame = frames[split]
        if {"flow", "use_case"} <= set(frame.columns) and d.source == "telecom":
            # the generated data holds every task sentence; keep the configured ones
            frame = frame[frame["flow"].isin(d.flows) & frame["use_case"].isin(d.use_cases)]
            frame = frame.reset_index(drop=True)
        validate_long_frame(frame, config, files[split])
        out[split] = frame
    return out
