"""Vectorized draws the telecom simulation is made of: categorical choices, pools and sequence layouts."""
from __future__ import annotations

from typing import Tuple

import numpy as np


def choice(rng: np.random.Generator, cdf: np.ndarray, size: int) -> np.ndarray:
    """``[size]`` indices drawn from a 1-d CDF (a uniform beyond the last value picks the last index)."""
    cdf = np.asarray(cdf, dtype=np.float64)
    return np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), cdf.shape[0] - 1)


def choice_rows(u: np.ndarray, cdf_rows: np.ndarray) -> np.ndarray:
    """``[n]`` index drawn from a per-row CDF ``[n, m]`` given uniforms ``u [n]``."""
    return np.minimum((cdf_rows <= u[:, None]).sum(axis=1), cdf_rows.shape[1] - 1)


def from_pool(u: np.ndarray, order: np.ndarray, start: np.ndarray, size: np.ndarray) -> np.ndarray:
    """A uniform member of each row's pool given uniforms ``u [n]`` (``start``/``size`` ``[n]``; sizes > 0)."""
    return order[start + np.minimum((u * size).astype(np.int64), size - 1)]


def sequence_layout(n: int, lengths: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(offsets [n + 1], owner [m], recency [m])`` of ``n`` sequences with ``lengths [n]``.

    ``owner`` is each element's sequence; ``recency`` is (position + 1) / length, 1.0 = most recent.
    """
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    owner = np.repeat(np.arange(n), lengths)
    position = np.arange(offsets[-1]) - offsets[owner]
    recency = (position + 1) / np.maximum(lengths[owner], 1)
    return offsets, owner, recency
