"""DeepCTR 0.9.4's multi-task models (the optional ``peers`` extra) on the very rows GRec-TF sees, shared by
the ``throughput`` and ``quality`` benchmarks.

DeepCTR's models are person-level: one row per person with one label per task, where GRec-TF reads one
long row per (person, task). Only single-flow data fits (e.g. Adult: flow ``adult``, tasks ``income`` and
``never_married``). Categorical features become ``SparseFeat`` (embedding width 16, vocabulary of the
training split, unknown values -> index 0), numerical ones ``DenseFeat`` normalized with training
statistics. Scores come back in GRec-TF's long format, so both are measured by the same code.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import pandas as pd
import tensorflow as tf

from grec_tf.config import ExperimentConfig
from grec_tf.data.dataset import make_dataset
from grec_tf.training.optimizer import make_optimizer, planned_steps

#: benchmark model name -> DeepCTR builder in ``deepctr.models.multitask``
PEER_MODELS = {"deepctr_mmoe": "MMOE", "deepctr_shared_bottom": "SharedBottom", "deepctr_ple": "PLE"}
#: builder -> arguments beside DeepCTR's defaults: 8 experts, as GRec-TF's default (PLE: 4 shared + 2 per
#: task for two tasks)
BUILDER_ARGUMENTS = {"MMOE": {"num_experts": 8}, "PLE": {"shared_expert_num": 4, "specific_expert_num": 2}}
EMBEDDING_DIM = 16
INSTALL_HINT = "install the optional extra: pip install -e '.[peers]'"


def import_peers() -> Union[str, Dict[str, type]]:
    """DeepCTR's builders (``PEER_MODELS`` values) and ``SparseFeat`` / ``DenseFeat`` by name, or the
    ImportError's message."""
    try:
        from deepctr.feature_column import DenseFeat, SparseFeat
        from deepctr.models.multitask import MMOE, PLE, SharedBottom
    except ImportError as error:
        return f"{type(error).__name__}: {error}"
    return {"MMOE": MMOE, "SharedBottom": SharedBottom, "PLE": PLE, "SparseFeat": SparseFeat,
            "DenseFeat": DenseFeat}


def person_table(frame: pd.DataFrame, config: ExperimentConfig) -> Tuple[pd.DataFrame, pd.DataFrame]:
    """One row per person of a single-flow long-format split: its features and its ``[persons, tasks]``
    labels (columns: the config's use cases), both indexed by the group column."""
    group, label = config.data.group_column, config.data.label_column
    labels = frame.pivot(index=group, columns="use_case", values=label)[list(config.data.use_cases)]
    features = frame.drop_duplicates(group).set_index(group).loc[labels.index]
    return features, labels


def peer_arrays(splits: Dict[str, pd.DataFrame], config: ExperimentConfig,
                peers: Dict[str, type]) -> Tuple[Dict[str, Dict[str, np.ndarray]], list]:
    """DeepCTR inputs per split (``name -> [persons, 1]``, labels under ``label/{use case}``: [persons]) and
    the feature columns: vocabularies and normalization come from the training split only."""
    tables = {split: person_table(frame, config) for split, frame in splits.items()}
    train = tables["train"][0]
    categorical = [f.name for f in config.features if f.kind == "categorical"]
    numerical = [f.name for f in config.features if f.kind == "numerical"]
    vocabularies = {name: {v: i + 1 for i, v in enumerate(sorted(train[name].astype(str).unique()))}
                    for name in categorical}  # index 0: a value the training split never showed
    moments = {name: (float(train[name].mean()), float(train[name].std()) or 1.0) for name in numerical}
    arrays = {}
    for split, (features, labels) in tables.items():
        columns = {name: features[name].astype(str).map(vocabularies[name]).fillna(0).to_numpy(np.int32)[:, None]
                   for name in categorical}
        columns.update({name: ((features[name].to_numpy(np.float64) - mean) / std).astype(np.float32)[:, None]
                        for name, (mean, std) in moments.items()})
        columns.update({f"label/{task}": labels[task].to_numpy(np.float32) for task in labels.columns})
        arrays[split] = columns
    feature_columns = [peers["SparseFeat"](name, len(vocabularies[name]) + 1, embedding_dim=EMBEDDING_DIM)
                       for name in categorical] + [peers["DenseFeat"](name, 1) for name in numerical]
    return arrays, feature_columns


def person_count(columns: Dict[str, np.ndarray]) -> int:
    """Persons (rows) in one split's columns of :func:`peer_arrays`."""
    return len(next(iter(columns.values())))


def peer_dataset(arrays: Dict[str, np.ndarray], config: ExperimentConfig, shuffle: bool) -> tf.data.Dataset:
    """``(features, {task: labels})`` batches through the same pipeline GRec-TF uses (same shuffle buffer
    and seed); evaluation batches are as large as GRec-TF's."""
    d = config.data
    size = d.batch_size if shuffle else max(d.batch_size, 1024)
    dataset = make_dataset(arrays, size, shuffle=shuffle, shuffle_buffer=d.shuffle_buffer, seed=d.seed)
    return dataset.map(lambda batch: ({k: v for k, v in batch.items() if not k.startswith("label/")},
                                      {k.split("/", 1)[1]: v for k, v in batch.items() if k.startswith("label/")}))


def build_peer(name: str, peers: Dict[str, type], feature_columns: list, config: ExperimentConfig,
               train_persons: int) -> tf.keras.Model:
    """The compiled DeepCTR model ``name`` (a ``PEER_MODELS`` key) in float32, with GRec-TF's optimizer for
    ``train`` (:func:`grec_tf.training.optimizer.make_optimizer`: rate, schedule and weight decay), its schedule
    planned over ``train.epochs`` epochs of ``train_persons`` persons in ``data.batch_size`` batches.
    Python, NumPy and TensorFlow are seeded with ``train.seed`` (``data.seed`` when unset) first, so the
    initial weights and the training shuffle follow it as GRec-TF's do."""
    tf.keras.mixed_precision.set_global_policy("float32")
    seed = config.train.seed if config.train.seed is not None else config.data.seed
    tf.keras.utils.set_random_seed(seed)
    builder = PEER_MODELS[name]
    tasks = list(config.data.use_cases)
    model = peers[builder](feature_columns, task_types=["binary"] * len(tasks), task_names=tasks, seed=seed,
                           **BUILDER_ARGUMENTS.get(builder, {}))
    # the same optimizer as GRec-TF's models, so a schedule in the config is part of the shared budget
    steps = planned_steps(config.train.epochs, train_persons, config.data.batch_size)
    model.compile(optimizer=make_optimizer(config.train, steps), loss="binary_crossentropy")
    return model


def peer_scores(model: tf.keras.Model, dataset: tf.data.Dataset) -> np.ndarray:
    """[persons, tasks] probabilities of a DeepCTR model over a :func:`peer_dataset`."""
    predict = tf.function(lambda features: tf.concat(model(features, training=False), axis=1))
    return np.concatenate([predict(features).numpy() for features, _ in dataset])


def scores_by_row(frame: pd.DataFrame, config: ExperimentConfig, scores: np.ndarray) -> np.ndarray:
    """[N] score of each long row of ``frame`` (its person's score for its use case), from ``scores``
    [persons, tasks] in :func:`person_table` order: what GRec-TF's evaluation reads."""
    labels = person_table(frame, config)[1]
    rows = labels.index.get_indexer(frame[config.data.group_column])
    columns = labels.columns.get_indexer(frame["use_case"])
    return np.asarray(scores, np.float64)[rows, columns]


def missing_peers_note(models: List[str], reason: str) -> str:
    """Why the DeepCTR rows ``models`` are absent: deepctr is not importable (``reason``)."""
    return f"DeepCTR rows skipped ({', '.join(models)}): deepctr is not importable ({reason}); {INSTALL_HINT}"


def person_level_problem(frame: pd.DataFrame, config: ExperimentConfig) -> Optional[str]:
    """Why DeepCTR's person-level models cannot read this long-format split (None when they can): more
    than one flow, or a (group, use case) pair on several rows."""
    if len(config.data.flows) != 1:
        return f"data.flows has {len(config.data.flows)} flows; DeepCTR's person-level models need one"
    group = config.data.group_column
    if frame.duplicated([group, "use_case"]).any():
        return f"data.group_column {group!r} repeats within a use case (it must name one row per person and task)"
    return None
