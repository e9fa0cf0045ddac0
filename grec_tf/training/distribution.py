"""Training on several devices or workers with ``tf.distribute`` (``train.distribution``).

* ``none``: TensorFlow's default strategy (one device, no replication), or the caller's inside its scope.
* ``mirrored``: ``MirroredStrategy`` over this machine's devices.
* ``multi_worker``: ``MultiWorkerMirroredStrategy`` over the cluster ``TF_CONFIG`` describes (every worker runs
  the same command with its own ``TF_CONFIG``; without one it is a cluster of one).
* ``auto``: ``multi_worker`` when ``TF_CONFIG`` names more than one task, else ``none``.

``data.batch_size`` is the global batch: Keras splits each batch into ``batch_size / replicas`` rows per replica,
and the gradients are summed over replicas (the loss of each replica is its rows' share of the global batch's
loss). In-memory datasets are auto-sharded by DATA (every worker builds the same batches and keeps its replicas'
slices); sources read from files shard by FILE (each worker reads its own files).

Only the chief writes the run folder; the other workers write into a temporary folder that is removed
(:func:`writable_dir`). Keras' ``BackupAndRestore`` handles its own folder: the chief's backup is the one every
worker restores from, so the run folder must be storage every worker sees (a shared disk, GCS, ...).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from typing import Dict, Iterator, Mapping, Optional

import tensorflow as tf

from grec_tf.errors import ConfigError

#: data sources whose splits are files: datasets shard by FILE (each worker reads its own files); the in-memory
#: sources shard by DATA (each worker keeps its replicas' slices of every global batch)
FILE_SOURCES = frozenset({"tfrecord"})
_STRATEGIES: Dict[str, tf.distribute.Strategy] = {}


def cluster_tasks(environ: Mapping[str, str] = os.environ) -> int:
    """The number of chief and worker tasks ``TF_CONFIG`` names (0 without ``TF_CONFIG``); ConfigError when it
    is not a JSON object with a ``cluster`` mapping."""
    text = environ.get("TF_CONFIG", "").strip()
    if not text:
        return 0
    try:
        cluster = json.loads(text).get("cluster", {})
    except (json.JSONDecodeError, AttributeError) as err:
        raise ConfigError(f"TF_CONFIG: expected a JSON object like {{\"cluster\": {{\"worker\": [...]}}, "
                          f"\"task\": {{...}}}}, got {text[:80]!r} ({err})") from None
    if not isinstance(cluster, dict):
        raise ConfigError(f"TF_CONFIG: cluster: expected a mapping of task type -> addresses, got {cluster!r}")
    return sum(len(cluster.get(kind, [])) for kind in ("chief", "worker"))


def resolve_distribution(name: str, environ: Mapping[str, str] = os.environ) -> str:
    """``train.distribution`` with ``auto`` decided from ``TF_CONFIG``: ``none``, ``mirrored`` or
    ``multi_worker``."""
    if name == "auto":
        return "multi_worker" if cluster_tasks(environ) > 1 else "none"
    return name


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The strategy ``train.distribution`` names. ``none`` is the current strategy: TensorFlow's default (one
    device), or the caller's own inside ``with strategy.scope()``. The others are created once per process (a
    multi-worker strategy joins its cluster on creation, and a process can join only once)."""
    resolved = resolve_distribution(name)
    if resolved == "none":
        return tf.distribute.get_strategy()
    if resolved not in _STRATEGIES:
        if resolved == "multi_worker":
            _STRATEGIES[resolved] = tf.distribute.MultiWorkerMirroredStrategy()
        elif resolved == "mirrored":
            _STRATEGIES[resolved] = tf.distribute.MirroredStrategy()
        else:
            raise ConfigError(f"train.distribution: expected one of none, mirrored, multi_worker, auto; "
                              f"got {name!r}")
    return _STRATEGIES[resolved]


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's files (always, outside a multi-worker cluster)."""
    return bool(strategy.extended.should_checkpoint)


def check_global_batch(batch_size: int, strategy: tf.distribute.Strategy) -> None:
    """ConfigError unless the global batch splits evenly over the replicas (unequal slices would weigh rows
    unequally in the summed gradient)."""
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise ConfigError(f"data.batch_size: {batch_size} rows do not split evenly over the {replicas} replicas "
                          f"of train.distribution (each replica takes batch_size / replicas rows); expected a "
                          f"multiple of {replicas}")


def shard_policy(dataset: tf.data.Dataset, source: str, files: Optional[int] = None) -> tf.data.Dataset:
    """``dataset`` with the auto-shard policy of its source: FILE for :data:`FILE_SOURCES`, DATA otherwise
    (an in-memory dataset has no files to split, and AUTO would fall back to DATA with a warning).

    ``files``: how many files the dataset reads, when known. Fewer files than the cluster has tasks (``TF_CONFIG``)
    cannot be split by FILE (tf.data fails at the first batch), so such a dataset is sharded by DATA: every worker
    reads all files and keeps its replicas' slices."""
    options = tf.data.Options()
    policy = tf.data.experimental.AutoShardPolicy
    by_file = source in FILE_SOURCES and (files is None or files >= cluster_tasks())
    options.experimental_distribute.auto_shard_policy = policy.FILE if by_file else policy.DATA
    return dataset.with_options(options)


@contextlib.contextmanager
def writable_dir(path: str, strategy: tf.distribute.Strategy) -> Iterator[str]:
    """Yields ``path`` (created) on the chief; on the other workers a temporary folder, removed on exit.

    Every worker runs the same saves (saving may read distributed variables, a collective step all workers
    must join), and only the chief's land in ``path``.
    """
    if is_chief(strategy):
        os.makedirs(path, exist_ok=True)
        yield path
        return
    temp = tempfile.mkdtemp(prefix=f"grec_worker{_task_id(strategy)}_")
    try:
        yield temp
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def _task_id(strategy: tf.distribute.Strategy) -> Optional[int]:
    resolver = getattr(strategy, "cluster_resolver", None)
    return getattr(resolver, "task_id", None)
