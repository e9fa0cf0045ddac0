"""The public entry point: an experiment is a config, its data splits, the training split's statistics,
and the model they describe.

    experiment = load_experiment("configs/telecom.yaml", overrides=["data.rows=30000"])
    model = experiment.build_model()
    model.fit(experiment.dataset("train", shuffle=True), validation_data=experiment.dataset("valid"))
    report = experiment.evaluate(model)
    experiment.export(model, "exports")

or, with checkpoints, TensorBoard, early stopping and ``metrics.json``: ``experiment.train("runs/x")``, on one
device or spread over devices and workers as ``train.distribution`` says (:mod:`grec_tf.training.distribution`).
Splits, statistics and feature arrays are computed on first use and kept.
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
import tensorflow as tf

from grec_tf.atomic_files import write_json_atomic
from grec_tf.config import ExperimentConfig, applied_config, load_config, unapplied_keys
from grec_tf.data.dataset import make_dataset
from grec_tf.data.feature_arrays import IMPRESSION_KEY, frame_to_arrays
from grec_tf.data.feature_statistics import FeatureStatistics, compute_feature_statistics
from grec_tf.data.input_specs import placeholder_batch
from grec_tf.data.sources import LoadedData, load_data
from grec_tf.data.tfrecord_source import (evaluation_frame, read_manifest, read_statistics, shard_files,
                                          tfrecord_dataset)
from grec_tf.models.factory import build_ranker, validate_model_config
from grec_tf.models.multi_task_ranker import MultiTaskRanker
from grec_tf.serving.signatures import export_model
from grec_tf.serving.sub_model import export_sub_model
from grec_tf.training import distribution, run_folder
from grec_tf.training.evaluation import evaluate_scores, predict_probabilities
from grec_tf.training.expert_utilization import expert_utilization
from grec_tf.training.optimizer import make_optimizer, planned_steps
from grec_tf.training.trainer import TrainingRun, count_params, fit

#: model keys named in a run's summary (``metrics.json`` "model"), when they apply -> their label there
SUMMARY_KEYS = {"routing": "routing", "num_experts": "experts", "top_k": "top_k"}
#: evaluation and validation batches are at least this large (no gradients: bigger is faster)
EVAL_BATCH = 1024


class Experiment:
    """One experiment. ``data_dir``: where the telecom data is generated when ``data.path`` is unset;
    ``splits`` / ``statistics``: given frames or statistics instead of loading / computing them."""

    def __init__(self, config: ExperimentConfig, data_dir: Optional[str] = None,
                 splits: Optional[Dict[str, pd.DataFrame]] = None, statistics: Optional[FeatureStatistics] = None):
        validate_model_config(config)
        self.config, self.data_dir = config, data_dir
        self._splits, self._statistics = splits, statistics
        self.data: Optional[LoadedData] = None  # how the splits were read, once they are
        self._arrays: Dict[str, Dict[str, np.ndarray]] = {}
        self._strategy: Optional[tf.distribute.Strategy] = None

    @classmethod
    def from_yaml(cls, path: Optional[str], overrides: Sequence[str] = (), data_dir: Optional[str] = None):
        """The experiment a YAML file (plus ``key.path=value`` overrides) describes."""
        return cls(load_config(path, overrides), data_dir=data_dir)

    @property
    def splits(self) -> Dict[str, pd.DataFrame]:
        """Validated long-format ``train`` / ``valid`` / ``test`` frames."""
        if self._splits is None:
            self.data = load_data(self.config, default_dir=self.data_dir)
            self._splits = self.data.frames
        return self._splits

    @property
    def statistics(self) -> FeatureStatistics:
        """Vocabularies and normalization from the training split."""
        if self._statistics is None and self.streams:
            self.splits  # noqa: B018  (reads the folder's manifest first: it says how the splits came about)
            self._statistics = read_statistics(self.config)
        if self._statistics is None:
            self._statistics = compute_feature_statistics(self.splits["train"], self.config)
        return self._statistics

    @property
    def streams(self) -> bool:
        """True for ``data.source: tfrecord``: splits are streamed from preprocessed shards, never in memory."""
        return self.config.data.source == "tfrecord"

    def arrays(self, split: str) -> Dict[str, np.ndarray]:
        """The model inputs (and ``label``) of a split as numpy arrays."""
        if split not in self._arrays:
            self._arrays[split] = frame_to_arrays(self.splits[split], self.config)
        return self._arrays[split]

    def dataset(self, split: str, shuffle: bool = False, batch_size: Optional[int] = None) -> tf.data.Dataset:
        """Batched ``tf.data`` of feature dicts with ``label`` and ``impression_key``; ``batch_size`` defaults to
        ``data.batch_size`` for training batches and to at least 1024 otherwise. Shuffled batches keep the rows
        of an impression together (the model encodes each impression once per batch), in memory and streamed from
        TFRecord shards alike; unshuffled ones keep the split's row order (streamed: the shards' order)."""
        d = self.config.data
        size = batch_size or (d.batch_size if shuffle else max(d.batch_size, EVAL_BATCH))
        if self.streams:
            return tfrecord_dataset(self.config, split, size, shuffle=shuffle)
        return make_dataset(self.arrays(split), size, shuffle=shuffle, shuffle_buffer=d.shuffle_buffer, seed=d.seed,
                            group_key=IMPRESSION_KEY)

    @property
    def strategy(self) -> tf.distribute.Strategy:
        """The ``tf.distribute`` strategy ``train.distribution`` names (created on first use; a multi-worker
        strategy joins its cluster then)."""
        if self._strategy is None:
            self._strategy = distribution.make_strategy(self.config.train.distribution)
        return self._strategy

    def build_model(self, strategy: Optional[tf.distribute.Strategy] = None,
                    for_training: bool = True) -> MultiTaskRanker:
        """A built, compiled model whose variables live under ``strategy`` (default: :attr:`strategy`);
        ``train.mixed_precision`` becomes the global Keras policy and ``train.seed`` seeds Python, NumPy and
        TensorFlow first. ``for_training=False`` (a model that will only predict, evaluate or export) compiles
        the optimizer without the run's step count, so no data is read for it."""
        t = self.config.train
        tf.keras.mixed_precision.set_global_policy(t.mixed_precision or "float32")
        if t.seed is not None:  # before any variable or shuffle exists, so both follow the seed
            tf.keras.utils.set_random_seed(t.seed)
        statistics = self.statistics
        with (strategy or self.strategy).scope():
            model = build_ranker(self.config, statistics)
            model(placeholder_batch(self.config), training=False)  # variables exist before fit/restore
            # only a schedule reads the step count, and counting reads the training split (or its manifest)
            steps = self.total_train_steps() if for_training and t.learning_rate_schedule != "constant" else 0
            model.compile(optimizer=make_optimizer(t, steps), steps_per_execution=t.steps_per_execution)
        return model

    def total_train_steps(self) -> int:
        """Optimizer steps of a full run: ``train.epochs`` x the training batches of an epoch, ceil(train rows /
        ``data.batch_size``) (a training batch holds ``data.batch_size`` rows, the last one fewer; under a
        distribution strategy ``data.batch_size`` is the global batch, one optimizer step)."""
        rows = read_manifest(self.config)["rows"]["train"] if self.streams else len(self.splits["train"])
        return planned_steps(self.config.train.epochs, rows, self.config.data.batch_size)

    def evaluate(self, model: tf.keras.Model, split: str = "test") -> Dict:
        """``{"test": metrics per task sentence and use case}`` (+ ``"oracle"`` when the data has one)."""
        scores = predict_probabilities(model, self.dataset(split))
        frame = evaluation_frame(self.config, split) if self.streams else self.splits[split]
        return evaluate_scores(frame, scores, self.config)

    def export(self, model: tf.keras.Model, export_dir: str, version: Optional[int] = None,
               task_sentences: Optional[Union[str, Sequence[str]]] = None) -> str:
        """Writes ``{export_dir}/{model name}/{version}`` atomically (next version by default); returns it.
        ``task_sentences`` ("FLOW/USE_CASE" names, a list or one comma-separated string): export only the
        sub-model serving them (:mod:`grec_tf.serving.sub_model`: their experts and towers, routes frozen)."""
        if task_sentences is not None:
            return export_sub_model(model, self.config, task_sentences, export_dir, version)
        return export_model(model, self.config, export_dir, version)

    def train(self, out_dir: str, callbacks: Sequence[tf.keras.callbacks.Callback] = (),
              verbose: int = 1) -> TrainingRun:
        """Fits on ``train`` (early stopping on ``valid``), evaluates on ``test`` and writes the run folder
        (see :mod:`grec_tf.training.run_folder`); a folder holding a backup resumes from it.

        Under a multi-worker ``train.distribution`` every worker runs this; the chief writes ``out_dir``, the
        others write into a temporary folder they remove, and all of them back up to (and resume from) the
        chief's ``{out_dir}/backup``.
        """
        strategy = self.strategy  # first: a multi-worker strategy must join its cluster before other TF work
        distribution.check_global_batch(self.config.data.batch_size, strategy)
        statistics = self.statistics  # reads the splits first: the split mode decides which keys applied
        with distribution.writable_dir(out_dir, strategy) as write_dir:
            run_folder.save_config(self.config, write_dir, applied_config(self.config, self.split_mode))
            run_folder.save_statistics(statistics, write_dir)
            model = self.build_model(strategy)
            result = fit(model, self._sharded(self.dataset("train", shuffle=True), "train"),
                         self._sharded(self.dataset("valid"), "valid"), out_dir, self.config.train,
                         callbacks, verbose, write_dir=write_dir)
            report = self.evaluate(model)
            report["model"] = {**self.model_summary(), "params": count_params(model)}
            report["train"] = result.report
            report["utilization"] = result.utilization or self.expert_utilization(model, max_batches=8)
            write_json_atomic(os.path.join(write_dir, "metrics.json"), report)
        return TrainingRun(model=model, statistics=self.statistics, metrics=report, history=result.history,
                           chief=distribution.is_chief(strategy))

    def _sharded(self, dataset: tf.data.Dataset, split: str) -> tf.data.Dataset:
        """``dataset`` of ``split`` with its auto-shard policy: by file for shards, unless a split has fewer shard
        files than the cluster has workers (a small split is often one file)."""
        files = len(shard_files(self.config, split)) if self.streams else None
        return distribution.shard_policy(dataset, self.config.data.source, files)

    @property
    def split_mode(self) -> Optional[str]:
        """How train/valid/test came about (``generated``, ``files``, ``release_test``, ``split_by_group``),
        once the data is read; None for splits given to the constructor."""
        return self.data.split_mode if self.data else None

    def unapplied_keys(self) -> List[str]:
        """Keys set to a non-default value that this run does not read (e.g. ``model.top_k`` for MMoE)."""
        return unapplied_keys(self.config, self.split_mode)

    def expert_utilization(self, model: tf.keras.Model, split: str = "valid",
                           max_batches: Optional[int] = None) -> Dict[str, list]:
        """Mean routing weight of each expert over the rows of each task sentence (empty without routing)."""
        return expert_utilization(model, self.dataset(split), max_batches)

    def model_summary(self) -> Dict:
        """The model type and the hyper-parameters that define it, only those that apply to the type."""
        applied = applied_config(self.config)["model"]
        return {"type": applied["type"],
                **{label: applied[key] for key, label in SUMMARY_KEYS.items() if key in applied}}


def load_experiment(path: Optional[str], overrides: Sequence[str] = (), data_dir: Optional[str] = None) -> Experiment:
    """The experiment a YAML config describes (``None``: the built-in defaults), with ``--set``-style overrides."""
    return Experiment.from_yaml(path, overrides, data_dir)


def load_run(run_dir: str) -> Tuple[Experiment, MultiTaskRanker]:
    """The experiment of a finished training run (data read lazily, from the run's ``data/`` for telecom when
    ``data.path`` is unset) and its model with the final weights restored."""
    config, statistics, weights = run_folder.read_run(run_dir)
    experiment = Experiment(config, data_dir=os.path.join(run_dir, "data"), statistics=statistics)
    # one process, whatever trained it; the run is over, so its data need not be there to export it
    model = experiment.build_model(tf.distribute.get_strategy(), for_training=False)
    model.load_weights(weights).expect_partial()
    return experiment, model
