"""A training run's folder: the resolved config, statistics and weights needed to rebuild the model.

Layout of ``{out}``: ``config.yaml`` (resolved experiment), ``statistics.json`` (vocabularies and
normalization of the training split), ``checkpoints/final*`` (weights), ``metrics.json``, ``logs/``
(TensorBoard), ``backup/`` (mid-training state, removed when training completes).
"""
from __future__ import annotations

import json
import os

import yaml

from grec_tf.atomic_files import write_text_atomic
from grec_tf.config import ExperimentConfig, parse_config
from grec_tf.data.feature_statistics import FeatureStatistics
from grec_tf.errors import ConfigError


def save_config(config: ExperimentConfig, out_dir: str) -> None:
    write_text_atomic(os.path.join(out_dir, "config.yaml"), yaml.safe_dump(config.to_dict(), sort_keys=False))


def load_run(out_dir: str):
    """(config, model) of a finished training run, with its final weights restored."""
    from grec_tf.serving.signatures import placeholder_batch
    from grec_tf.training.trainer import build_model

    paths = {name: os.path.join(out_dir, name) for name in ("config.yaml", "statistics.json")}
    for name, path in paths.items():
        if not os.path.isfile(path):
            raise ConfigError(f"{out_dir}: not a finished training run ({name} is missing)")
    if not os.path.isfile(os.path.join(out_dir, "checkpoints", "final.index")):
        raise ConfigError(f"{out_dir}: not a finished training run (checkpoints/final is missing)")
    with open(paths["config.yaml"], encoding="utf-8") as handle:
        config = parse_config(yaml.safe_load(handle), source=paths["config.yaml"])
    with open(paths["statistics.json"], encoding="utf-8") as handle:
        statistics = FeatureStatistics.from_dict(json.load(handle))
    model = build_model(config, statistics)
    model(placeholder_batch(config), training=False)  # create the variables, then restore them
    model.load_weights(os.path.join(out_dir, "checkpoints", "final")).expect_partial()
    return config, model
