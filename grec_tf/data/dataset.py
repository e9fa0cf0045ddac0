"""``tf.data`` input pipelines over model-input arrays (see :mod:`grec_tf.data.feature_arrays`)."""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import tensorflow as tf


def make_dataset(arrays: Dict[str, np.ndarray], batch_size: int, shuffle: bool = False,
                 shuffle_buffer: int = 50_000, seed: Optional[int] = None,
                 repeat: bool = False) -> tf.data.Dataset:
    """Batched, optionally shuffled, prefetching dataset of feature dicts.

    Each element is a dict name -> [batch, ...] tensor with the dtypes of ``arrays`` (object arrays
    become ``tf.string``). The last partial batch is kept so evaluation sees every row.
    """
    tensors = {name: tf.constant(value.astype(str) if value.dtype == object else value)
               for name, value in arrays.items()}
    dataset = tf.data.Dataset.from_tensor_slices(tensors)
    if shuffle:
        rows = len(next(iter(arrays.values())))
        dataset = dataset.shuffle(min(shuffle_buffer, rows), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
