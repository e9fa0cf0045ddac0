"""``data.source`` -> validated long-format train/valid/test frames, and how they were split.

- ``telecom``: the embedded generator; ``data.path`` (or the caller's default folder) holds
  ``{train,valid,test}.parquet`` + ``card.json`` and is (re)generated when missing or stale (another
  size, seed or task world: ``data.telecom_flows`` x ``data.telecom_use_cases``).
- ``aliexpress``, ``census_income``, ``adult``: the raw public files at ``data.path``; a folder with
  a train and a test file keeps the release's test split (valid is carved from train), a single file
  is split by ``data.group_column``.
- ``csv`` / ``parquet``: tables already in long format: a folder with ``{train,valid,test}.{csv,parquet}``
  or one file, split by ``data.group_column``.
- ``tfrecord``: the output folder of ``python -m pipelines.preprocess``, streamed from its shards
  (:mod:`grec_tf.data.tfrecord_source`): ``LoadedData.frames`` stands for the splits but holds no frame.

:func:`load_data` says which of the four split modes applied
(:data:`grec_tf.data.splits.SPLIT_MODES`), in ``LoadedData.split_mode`` and in a one-line
``LoadedData.description`` for logs. Every file is
checked by :func:`grec_tf.data.validation.validate_long_frame` as read, before it is split, so that
an error's row is the row's position in that file's long-format table; the generated data is first
restricted to the configured flows and use cases.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Dict, NamedTuple, Optional, Tuple

import numpy as np
import pandas as pd

from grec_tf.config import ExperimentConfig
from grec_tf.data.splits import SPLIT_MODES, SPLITS, split_frame
from grec_tf.data.validation import read_table, validate_long_frame
from grec_tf.errors import ConfigError, DataError

# source -> file names of the release's train and test parts inside a data.path folder
_RAW_FILES: Dict[str, Tuple[str, str]] = {
    "aliexpress": ("train.csv", "test.csv"),
    "census_income": ("census-income.data", "census-income.test"),
    "adult": ("adult.parquet", ""),
}
_LONG_TABLE_EXTENSIONS = (".parquet", ".csv")

Loader = Callable[[str, ExperimentConfig], pd.DataFrame]


@dataclass
class LoadedData:
    """The validated splits of an experiment and where they came from.

    ``frames``: ``{"train", "valid", "test"}`` long-format frames. ``files``: split -> the file its
    rows were read from (the same file for splits carved from one file). ``split_mode``: one of
    :data:`grec_tf.data.splits.SPLIT_MODES`. ``description``: one line naming what was read and how
    it was split, with the row count of each split.
    """

    frames: Dict[str, pd.DataFrame]
    files: Dict[str, str]
    split_mode: str
    description: str

    def __post_init__(self) -> None:
        if self.split_mode not in SPLIT_MODES:
            raise ValueError(f"split_mode: expected one of {list(SPLIT_MODES)}, got {self.split_mode!r}")


class _RawSplits(NamedTuple):
    frames: Dict[str, pd.DataFrame]
    files: Dict[str, str]
    split_mode: str
    origin: str  # the description without the row counts


def _validating(read: Loader) -> Loader:
    def read_and_validate(path: str, config: ExperimentConfig) -> pd.DataFrame:
        frame = read(path, config)
        validate_long_frame(frame, config, path)
        return frame
    return read_and_validate


def _raw_loader(source: str) -> Loader:
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
    for ext in _LONG_TABLE_EXTENSIONS:
        files = {split: os.path.join(folder, split + ext) for split in SPLITS}
        if all(os.path.isfile(f) for f in files.values()):
            return files
    return None


def _telecom_world(config: ExperimentConfig):
    """The task world of ``data.telecom_flows`` x ``data.telecom_use_cases``; ConfigError when
    ``data.flows`` / ``data.use_cases`` name a flow or use case it does not have."""
    from grec_tf.data.telecom.task_world import task_world

    d = config.data
    world = task_world(d.telecom_flows, d.telecom_use_cases)
    for key, chosen, names, size_key in (("flows", d.flows, world.flows, "telecom_flows"),
                                         ("use_cases", d.use_cases, world.use_cases, "telecom_use_cases")):
        unknown = [name for name in chosen if name not in names]
        if unknown:
            raise ConfigError(f"data.{key}: {unknown} not in the telecom task world of data.{size_key} = "
                              f"{len(names)} ({', '.join(names)}); pick among those or raise data.{size_key}")
    return world


def _generated_files(config: ExperimentConfig, default_dir: Optional[str]) -> Tuple[Dict[str, str], str]:
    from grec_tf.data.telecom import ensure_dataset

    d = config.data
    folder = d.path or default_dir
    if folder is None:
        raise ConfigError("data.path: a folder for the generated telecom data is required")
    world = _telecom_world(config)
    ensure_dataset(folder, d.rows, d.seed, world)
    files = {split: os.path.join(folder, f"{split}.parquet") for split in SPLITS}
    size = "" if world.is_default else f", task world {len(world.flows)} flows x {len(world.use_cases)} use cases"
    origin = (f"telecom generator folder {folder} ({d.rows:,} impressions, seed {d.seed}{size}; "
              f"{_names(files)})")
    return files, origin


def _generated(config: ExperimentConfig, default_dir: Optional[str]) -> _RawSplits:
    files, origin = _generated_files(config, default_dir)
    frames = {split: _read_generated_split(path, config) for split, path in files.items()}
    return _RawSplits(frames, files, "generated", origin)


def configured_rows(frame: pd.DataFrame, config: ExperimentConfig) -> np.ndarray:
    """bool [N]: the rows of a generated frame whose task sentence the config declares (the generator writes
    them all)."""
    return (frame["flow"].isin(config.data.flows) & frame["use_case"].isin(config.data.use_cases)).to_numpy()


def _read_generated_split(path: str, config: ExperimentConfig) -> pd.DataFrame:
    """One generated split, restricted to the configured task sentences and validated."""
    frame = pd.read_parquet(path)
    frame = frame[configured_rows(frame, config)].reset_index(drop=True)
    validate_long_frame(frame, config, path)
    return frame


def split_files(config: ExperimentConfig, default_dir: Optional[str] = None) -> Tuple[Dict[str, str], str, str]:
    """``(split -> file, origin, split mode)`` of the sources that come as three split files: the telecom
    generator's folder (generated first when missing) and a csv / parquet folder with train, valid and test
    files. For readers that stream the files themselves (the Beam preprocessing pipeline).

    Raises:
      ConfigError / DataError: another source, or a ``data.path`` that is not such a folder.
    """
    d = config.data
    if d.source == "telecom":
        files, origin = _generated_files(config, default_dir)
        return files, origin, "generated"
    files = _long_table_files(d.path) if d.source in ("csv", "parquet") and d.path and os.path.isdir(d.path) \
        else None
    if files is None:
        raise DataError(f"expected a folder with train, valid and test files ({', '.join(_LONG_TABLE_EXTENSIONS)}) "
                        f"for data.source {d.source!r}, or data.source telecom; preprocessing reads already split "
                        f"long tables (split one file first, e.g. with grec_tf.data.splits.split_frame)",
                        file=d.path or "data.path")
    return files, f"{d.source} folder {d.path} ({_names(files)})", "files"


def _one_file(config: ExperimentConfig, load: Loader, path: str) -> _RawSplits:
    d = config.data
    frames = split_frame(load(path, config), d.valid_fraction, d.test_fraction, d.seed, d.group_column,
                         file=path)
    origin = (f"one file {path} split by {d.group_column} (valid {d.valid_fraction:g}, "
              f"test {d.test_fraction:g}, seed {d.seed})")
    return _RawSplits(frames, dict.fromkeys(SPLITS, path), "split_by_group", origin)


def _release_test(config: ExperimentConfig, load: Loader, train_path: str, test_path: str) -> _RawSplits:
    d = config.data
    parts = split_frame(load(train_path, config), d.valid_fraction, 0.0, d.seed, d.group_column,
                        file=train_path)
    frames = {"train": parts["train"], "valid": parts["valid"], "test": load(test_path, config)}
    files = {"train": train_path, "valid": train_path, "test": test_path}
    origin = (f"{d.source} folder {d.path} (the release's {os.path.basename(test_path)} as test; "
              f"{os.path.basename(train_path)} split by {d.group_column} into train and valid "
              f"(valid {d.valid_fraction:g}, seed {d.seed}))")
    return _RawSplits(frames, files, "release_test", origin)


def _folder(config: ExperimentConfig, load: Loader) -> _RawSplits:
    d = config.data
    if d.source in ("csv", "parquet"):
        files = _long_table_files(d.path)
        if files is None:
            raise DataError(f"folder holds no complete set of split files; expected train.parquet, "
                            f"valid.parquet and test.parquet (or the same names in .csv), or set data.path "
                            f"to one file to split it by data.group_column ({d.group_column})", file=d.path)
        kind = os.path.splitext(files["train"])[1][1:]
        frames = {split: load(path, config) for split, path in files.items()}
        return _RawSplits(frames, files, "files", f"{kind} folder {d.path} ({_names(files)} used as given)")
    train_name, test_name = _RAW_FILES[d.source]
    train_path = os.path.join(d.path, train_name)
    test_path = os.path.join(d.path, test_name) if test_name else ""
    if os.path.isfile(train_path) and test_path and os.path.isfile(test_path):
        return _release_test(config, load, train_path, test_path)
    if os.path.isfile(train_path):
        return _one_file(config, load, train_path)
    expected = f"{train_name} and {test_name}, or {train_name} alone" if test_name else train_name
    raise DataError(f"folder holds none of the expected files; expected {expected} for data.source "
                    f"{d.source}", file=d.path)


def _names(files: Dict[str, str]) -> str:
    return ", ".join(os.path.basename(files[split]) for split in SPLITS)


def _read_splits(config: ExperimentConfig, default_dir: Optional[str]) -> _RawSplits:
    d = config.data
    if d.source == "telecom":
        return _generated(config, default_dir)
    if not d.path:
        raise ConfigError(f"data.path: required for data.source {d.source!r}")
    if not os.path.exists(d.path):
        raise DataError(f"not found; expected the {d.source} data at data.path", file=d.path)
    load = _validating(_raw_loader(d.source))
    if os.path.isdir(d.path):
        return _folder(config, load)
    return _one_file(config, load, d.path)


def load_data(config: ExperimentConfig, default_dir: Optional[str] = None) -> LoadedData:
    """Reads, splits and validates the data ``config.data`` describes (see the module docstring).

    ``default_dir``: where the telecom data lives when ``data.path`` is not set.

    Raises:
      ConfigError: a missing ``data.path`` (or ``data.flow`` for AliExpress), bad split fractions.
      DataError: a missing file or folder, a file that fails validation (file, column, and row: the
        position in that file's long-format table, before any split), or an empty split.
    """
    if config.data.source == "tfrecord":  # streamed: no frames, the folder says what it holds
        from grec_tf.data.tfrecord_source import load_tfrecord_data

        return load_tfrecord_data(config)
    raw = _read_splits(config, default_dir)
    for split in SPLITS:
        if len(raw.frames[split]) == 0:
            raise DataError(f"the {split} split has no rows; expected at least one (data: {raw.origin})",
                            file=raw.files[split])
    counts = " / ".join(f"{len(raw.frames[split]):,}" for split in SPLITS)
    description = f"data: {raw.origin}: {counts} rows (train / valid / test)"
    return LoadedData(raw.frames, raw.files, raw.split_mode, description)


def load_splits(config: ExperimentConfig, default_dir: Optional[str] = None) -> Dict[str, pd.DataFrame]:
    """Validated ``{"train", "valid", "test"}`` long-format frames for ``config`` (the frames of
    :func:`load_data`).

    ``default_dir``: where the telecom data lives when ``data.path`` is not set.
    """
    return load_data(config, default_dir).frames
