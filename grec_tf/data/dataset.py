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
                 repeat: bool = False) -> tf.data.Dataset:
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
    """
    tensors = as_tensors(arrays)
    rows = row_count(arrays)
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
