"""``tf.data`` input pipelines over model-input arrays (see :mod:`grec_tf.data.feature_arrays`).

The pipeline shuffles and batches row *indices* and gathers each whole batch from the in-memory tensors in one
``tf.gather`` per feature. Slicing the arrays into per-row elements first (``from_tensor_slices``, element-wise
shuffle, ``batch``) moves every row of ~40 tensors, many of them strings, through tf.data one at a time: that
cost as much per batch as the model's training step.
"""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import tensorflow as tf

#: groups whose rows are looked up together (one vectorized map call instead of one per group)
GROUPS_PER_LOOKUP = 1024


def as_tensors(arrays: Dict[str, np.ndarray]) -> Dict[str, tf.Tensor]:
    """The arrays as tensors of the same shapes: object (string) arrays become ``tf.string``, others keep
    their dtype."""
    return {name: tf.constant(value.astype(str) if value.dtype == object else value)
            for name, value in arrays.items()}


def row_count(arrays: Dict[str, np.ndarray]) -> int:
    """The number of rows N shared by every array (each is [N, ...]); ValueError naming the arrays if they
    disagree or if there are none."""
    counts = {name: len(value) for name, value in arrays.items()}
    if not counts:
        raise ValueError("make_dataset: no arrays given (expected a dict name -> [rows, ...] array)")
    if len(set(counts.values())) > 1:
        raise ValueError(f"make_dataset: arrays have different row counts: {counts}")
    return next(iter(counts.values()))


def make_dataset(arrays: Dict[str, np.ndarray], batch_size: int, shuffle: bool = False,
                 shuffle_buffer: int = 50_000, seed: Optional[int] = None,
                 repeat: bool = False, group_key: Optional[str] = None) -> tf.data.Dataset:
    """Batched, optionally shuffled, prefetching dataset of feature dicts.

    Each element is a dict name -> [batch, ...] tensor with the dtypes of ``arrays`` (object arrays become
    ``tf.string``). Without ``repeat`` one pass yields every row exactly once and keeps the last partial batch,
    so evaluation sees every row; with ``repeat`` the passes follow each other without a gap (batches may span
    two passes).

    Shuffling: ``shuffle_buffer`` is the window of a ``tf.data`` shuffle over row indices (capped at the row
    count), the order is redrawn at each pass (each Keras epoch, or each repetition), and ``seed`` makes the
    sequence of orders reproducible. The buffer holds only int64 indices (8 bytes a row), so a buffer of at least
    the row count costs little, and it gives a full uniform permutation per pass, which is better than a window:
    a window of W rows only mixes rows within about W positions of each other, so any order in the arrays
    (e.g. rows grouped by flow or by date) leaks into the batches.

    ``group_key``: the name of an [N] array of group ids (e.g. ``impression_key``). When shuffling, the
    *groups* are shuffled (the buffer then counts groups) and their rows follow each other, so the rows of a
    group share a batch, except where a batch boundary cuts one in two; batches still hold ``batch_size`` rows.
    Without shuffling the array order is kept (predictions line up with the rows), so groups share batches
    as far as their rows are adjacent in the arrays.
    """
    tensors = as_tensors(arrays)
    rows = row_count(arrays)
    if shuffle and group_key is not None:
        indices = shuffled_group_rows(arrays[group_key], shuffle_buffer, seed)
    else:
        indices = tf.data.Dataset.range(rows)
        if shuffle:
            indices = indices.shuffle(max(1, min(shuffle_buffer, rows)), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        indices = indices.repeat()

    def gather(batch_indices: tf.Tensor) -> Dict[str, tf.Tensor]:  # [batch] int64 -> name -> [batch, ...]
        return {name: tf.gather(tensor, batch_indices) for name, tensor in tensors.items()}

    return (indices.batch(batch_size)
            .map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .prefetch(tf.data.AUTOTUNE))


def shuffled_group_rows(keys: np.ndarray, shuffle_buffer: int, seed: Optional[int]) -> tf.data.Dataset:
    """Row indices (scalar int64 elements) of one pass: the groups of ``keys`` [N] in a shuffled order
    (redrawn at each pass, reproducible with ``seed``; a window of ``shuffle_buffer`` groups), each group's
    rows one after the other in array order."""
    order = np.argsort(keys, kind="stable")  # rows grouped by key, array order within a group
    _, starts, counts = np.unique(np.asarray(keys)[order], return_index=True, return_counts=True)
    order_t, starts_t = tf.constant(order, tf.int64), tf.constant(starts, tf.int64)
    ends_t = tf.constant(starts + counts, tf.int64)

    def rows_of(groups: tf.Tensor) -> tf.Tensor:  # [g] group numbers -> [rows of those groups]
        ranges = tf.ragged.range(tf.gather(starts_t, groups), tf.gather(ends_t, groups))
        return tf.gather(order_t, ranges.flat_values)

    groups = len(starts)
    # unbatch loses the cardinality; Keras needs it to count the steps of an epoch without running into the
    # end of the data (a step that hits the end still advances the optimizer's iteration counter)
    return (tf.data.Dataset.range(groups)
            .shuffle(max(1, min(shuffle_buffer, groups)), seed=seed, reshuffle_each_iteration=True)
            .batch(GROUPS_PER_LOOKUP)
            .map(rows_of)
            .unbatch()
            .apply(tf.data.experimental.assert_cardinality(len(order))))
