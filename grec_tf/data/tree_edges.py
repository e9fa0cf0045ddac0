"""Target-aware bin edges of a numerical for ``model.piecewise_linear_edges: tree`` (PLE-T, Gorishniy et al.,
NeurIPS '22, section 3.2.2).

Quantile edges follow the values alone: a zero-inflated column such as adult's capital_gain (0 on 92% of the rows)
gets a handful of them, none where the label changes. A small decision tree fitted on the column against the label
puts its split thresholds where the label's rate changes, which is where a bin of the piecewise-linear encoding
helps most. The data are long format, one row per (impression, task sentence) with that task's 0/1 label, so one
tree is fitted per task sentence (a column may matter to a click and not to a conversion) and the edges are the
union of their thresholds. The tree settings are those of the reference implementation (rtdl_num_embeddings'
``compute_bins``: ``min_samples_leaf`` 64, ``min_impurity_decrease`` 1e-4, ``max_leaf_nodes`` the bin count, here
shared between the task sentences). Each tree reads at most :data:`TREE_SAMPLE_ROWS` rows of its task sentence, so
the cost does not grow with the training split beyond that (1M rows, 12 task sentences: 0.4 s a numerical).
"""
from __future__ import annotations

from typing import List

import numpy as np
from sklearn.tree import DecisionTreeClassifier

from grec_tf.data.feature_statistics import distinct_edges

#: rows a task sentence's tree reads at most (a seeded uniform sample of them beyond that)
TREE_SAMPLE_ROWS = 100_000
#: rtdl_num_embeddings' tree settings for the tree-based bins
TREE_MIN_SAMPLES_LEAF = 64
TREE_MIN_IMPURITY_DECREASE = 1e-4


def tree_edges(values: np.ndarray, labels: np.ndarray, tasks: np.ndarray, bins: int, seed: int = 0) -> List[float]:
    """The distinct bin edges of one numerical: the finite minimum and maximum and the split thresholds of one
    decision tree per task sentence (``max(2, bins // task sentences)`` leaves each), by :func:`distinct_edges`.

    Args:
      values: [N] float, the numerical (rows with a NaN or infinite value are skipped).
      labels: [N] 0/1, each row's label for its task sentence.
      tasks: [N] the task sentence of each row (any hashable ids, e.g. ``flow/use_case`` strings or codes).
      bins: the bin budget shared by the task sentences' trees.
      seed: seeds the sample of rows of a task sentence with more than :data:`TREE_SAMPLE_ROWS` of them.

    Returns:
      The sorted distinct edges, at least two. A task sentence whose rows hold one label adds no threshold.
    """
    values, labels, tasks = np.asarray(values, np.float64), np.asarray(labels), np.asarray(tasks)
    names, codes = np.unique(tasks, return_inverse=True)
    finite = np.isfinite(values)
    leaves = max(2, bins // max(len(names), 1))
    rng = np.random.default_rng(seed)
    edges = [values[finite].min(), values[finite].max()] if finite.any() else []
    order = np.argsort(np.where(finite, codes, len(names)), kind="stable")  # finite rows grouped by task
    counts = np.bincount(codes[finite], minlength=len(names))
    for rows in np.split(order[:counts.sum()], np.cumsum(counts)[:-1]):
        if rows.size > TREE_SAMPLE_ROWS:
            rows = np.sort(rng.choice(rows, TREE_SAMPLE_ROWS, replace=False))
        edges += split_thresholds(values[rows], labels[rows], leaves, seed)
    return distinct_edges(edges)


def split_thresholds(values: np.ndarray, labels: np.ndarray, leaves: int, seed: int = 0) -> List[float]:
    """The split thresholds of a decision tree of at most ``leaves`` leaves fitted on ``values`` [n] (finite)
    against ``labels`` [n]; none when the labels hold one class (nothing to split for)."""
    if np.unique(labels).size < 2:
        return []
    tree = DecisionTreeClassifier(max_leaf_nodes=leaves, min_samples_leaf=TREE_MIN_SAMPLES_LEAF,
                                  min_impurity_decrease=TREE_MIN_IMPURITY_DECREASE, random_state=seed)
    structure = tree.fit(values.reshape(-1, 1), labels).tree_
    split = structure.children_left != structure.children_right  # leaves have both children -1
    return [float(t) for t in structure.threshold[split]]
