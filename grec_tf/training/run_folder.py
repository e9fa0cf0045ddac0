"""A training run's folder: the resolved config, statistics and weights needed to rebuild the model.

Layout of ``{out}``: ``config.yaml`` (the resolved experiment), ``statistics.json`` (vocabularies and
normalization of the training split), ``checkpoints/final*`` (weights), ``metrics.json``, ``logs/``
(TensorBoard), ``backup/`` (mid-training state, emptied when training completes), ``exports/`` (SavedModels,
unless ``export.export_dir`` is absolute) and ``data/`` (the generated telecom data when ``data.path`` is unset).
"""
from __future__ import annotations

import json
import os
from typing import Dict, Optional, Tuple

import yaml

from grec_tf.atomic_files import write_json_atomic, write_text_atomic
from grec_tf.config import ExperimentConfig, parse_config
from grec_tf.data.feature_statistics import FeatureStatistics
from grec_tf.errors import ConfigError

FINAL_WEIGHTS = os.path.join("checkpoints", "final")


def save_config(config: ExperimentConfig, out_dir: str, values: Optional[Dict] = None) -> None:
    """Writes ``config.yaml``: ``values`` (e.g. only the keys that applied) or the whole config."""
    text = yaml.safe_dump(values if values is not None else config.to_dict(), sort_keys=False)
    write_text_atomic(os.path.join(out_dir, "config.yaml"), text)


def save_statistics(statistics: FeatureStatistics, out_dir: str) -> None:
    write_json_atomic(os.path.join(out_dir, "statistics.json"), statistics.to_dict())


def read_run(out_dir: str) -> Tuple[ExperimentConfig, FeatureStatistics, str]:
    """(config, statistics, weights prefix) of a finished run; ConfigError naming what is missing."""
    paths = {name: os.path.join(out_dir, name) for name in ("config.yaml", "statistics.json")}
    for name, path in paths.items():
        if not os.path.isfile(path):
            raise ConfigError(f"{out_dir}: not a finished training run ({name} is missing)")
    weights = os.path.join(out_dir, FINAL_WEIGHTS)
    if not os.path.isfile(weights + ".index"):
        raise ConfigError(f"{out_dir}: not a finished training run ({FINAL_WEIGHTS} is missing)")
    with open(paths["config.yaml"], encoding="utf-8") as handle:
        config = parse_config(yaml.safe_load(handle), source=paths["config.yaml"])
    with open(paths["statistics.json"], encoding="utf-8") as handle:
        statistics = FeatureStatistics.from_dict(json.load(handle))
    return config, statistics, weights


def resolve_export_dir(config: ExperimentConfig, run_dir: str, export_dir: Optional[str] = None) -> str:
    """Where a run's SavedModels go: ``export_dir`` as given (a command-line flag, relative to the working
    directory), else ``export.export_dir``, which - when relative - is relative to the run folder, for
    ``pipelines.train`` and ``pipelines.export`` alike."""
    if export_dir:
        return export_dir
    configured = config.export.export_dir
    return configured if os.path.isabs(configured) else os.path.join(run_dir, configured)
