"""Exact, vectorized ranking metrics in NumPy (no TensorFlow): AUC, AP, GAUC, logloss.

These are the reference implementations used for the dataset card (oracle metrics), for offline
evaluation and for reports. They are exact (rank based, no binning) and treat tied scores the way
scikit-learn does:

* :func:`roc_auc` equals ``sklearn.metrics.roc_auc_score`` (Mann-Whitney U with ties counted 1/2).
* :func:`average_precision` equals ``sklearn.metrics.average_precision_score``: the step-wise
  ``sum_n (R_n - R_{n-1}) P_n`` over distinct score thresholds (no interpolation).
* :func:`group_auc` is the AUC of each group (e.g. customer) weighted by the group's number of rows;
  groups with a single class are skipped.
* :func:`log_loss` is the mean binary cross-entropy with probabilities clipped to ``[eps, 1 - eps]``.

Undefined values are ``nan`` (never an exception): AUC with a single class, AP without a positive,
GAUC when no group has both classes, any metric of zero rows.

:func:`task_sentence_metrics` computes all of them per task sentence (``FLOW/USE_CASE``) and per use
case (``use_case/USE_CASE``) from a long-format frame (SPEC §2).
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np

__all__ = [
    "roc_auc",
    "average_precision",
    "group_auc",
    "log_loss",
    "task_sentence_metrics",
    "METRIC_KEYS",
]

#: Keys of each entry returned by :func:`task_sentence_metrics`.
METRIC_KEYS = ("auc", "ap", "gauc", "logloss", "rows", "positive_rate")

# Canonical display order; flows/use cases not listed here follow, sorted.
_FLOW_ORDER = ("AAL", "EUP", "NSE")
_USE_CASE_ORDER = ("CTR", "ATC", "CVR", "CTCVR")


def _as_labels(labels, name: str = "labels") -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1:
        y = y.reshape(-1)
    if y.dtype == bool:
        return y.astype(np.float64)
    y = y.astype(np.float64, copy=False)
    bad = (y != 0) & (y != 1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}: expected 0/1 labels, got {labels[first]!r} at position {first}")
    return y


def _as_scores(scores, n: int, name: str = "scores") -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if s.shape[0] != n:
        raise ValueError(f"{name}: expected {n} values (one per label), got {s.shape[0]}")
    bad = ~np.isfinite(s)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}: expected finite values, got {s[first]!r} at position {first}")
    return s


def _tie_averaged_ranks(sorted_scores: np.ndarray) -> np.ndarray:
    """1-based ranks of an ascending array, tied values sharing their average rank."""
    n = sorted_scores.shape[0]
    new_block = np.empty(n, dtype=bool)
    new_block[0] = True
    np.not_equal(sorted_scores[1:], sorted_scores[:-1], out=new_block[1:])
    starts = np.flatnonzero(new_block)
    ends = np.append(starts[1:], n)
    average = (starts + 1 + ends) / 2.0  # mean of ranks start+1 .. end
    return average[np.cumsum(new_block) - 1]


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve (exact; ties count 1/2). ``nan`` unless both classes occur.

    Args:
      labels: shape ``[n]``, values 0/1 (bool or numbers).
      scores: shape ``[n]``, finite; higher means more likely positive.
    """
    y = _as_labels(labels)
    s = _as_scores(scores, y.shape[0])
    n = y.shape[0]
    n_pos = float(y.sum())
    n_neg = n - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = _tie_averaged_ranks(s[order])
    rank_sum = float(np.dot(ranks, y[order]))
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def average_precision(labels, scores) -> float:
    """Average precision as scikit-learn defines it: ``sum_n (R_n - R_{n-1}) P_n``.

    The sum runs over distinct score thresholds from high to low (tied scores form one threshold).
    ``nan`` when there is no positive.
    """
    y = _as_labels(labels)
    s = _as_scores(scores, y.shape[0])
    n = y.shape[0]
    if n == 0 or y.sum() == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s_sorted = s[order]
    y_sorted = y[order]
    last_of_threshold = np.append(np.flatnonzero(s_sorted[1:] != s_sorted[:-1]), n - 1)
    tps = np.cumsum(y_sorted)[last_of_threshold]
    fps = (last_of_threshold + 1) - tps
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    recall_gain = np.diff(recall, prepend=0.0)
    return float(np.dot(recall_gain, precision))


def group_auc(labels, scores, groups) -> float:
    """AUC per group, averaged with weights = rows of the group; single-class groups are skipped.

    Args:
      labels: shape ``[n]``, 0/1.
      scores: shape ``[n]``.
      groups: shape ``[n]``, any hashable/sortable ids (ints or strings), e.g. ``customer_id``.

    Returns ``nan`` when no group has both classes.
    """
    y = _as_labels(labels)
    n = y.shape[0]
    s = _as_scores(scores, n)
    g = np.asarray(groups).reshape(-1)
    if g.shape[0] != n:
        raise ValueError(f"groups: expected {n} values (one per label), got {g.shape[0]}")
    if n == 0:
        return float("nan")
    _, gid = np.unique(g, return_inverse=True)
    gid = gid.reshape(-1)
    order = np.lexsort((s, gid))  # by group, then ascending score
    g_sorted, s_sorted, y_sorted = gid[order], s[order], y[order]

    new_group = np.empty(n, dtype=bool)
    new_group[0] = True
    np.not_equal(g_sorted[1:], g_sorted[:-1], out=new_group[1:])
    new_block = new_group.copy()
    new_block[1:] |= s_sorted[1:] != s_sorted[:-1]

    position = np.arange(n)
    group_start = np.maximum.accumulate(np.where(new_group, position, 0))
    block_starts = np.flatnonzero(new_block)
    block_ends = np.append(block_starts[1:], n)
    base = group_start[block_starts]
    average = ((block_starts - base) + 1 + (block_ends - base)) / 2.0
    ranks = average[np.cumsum(new_block) - 1]

    n_groups = int(gid.max()) + 1
    size = np.bincount(g_sorted, minlength=n_groups).astype(np.float64)
    n_pos = np.bincount(g_sorted, weights=y_sorted, minlength=n_groups)
    rank_sum = np.bincount(g_sorted, weights=ranks * y_sorted, minlength=n_groups)
    n_neg = size - n_pos
    valid = (n_pos > 0) & (n_neg > 0)
    if not valid.any():
        return float("nan")
    auc = (rank_sum[valid] - n_pos[valid] * (n_pos[valid] + 1) / 2.0) / (n_pos[valid] * n_neg[valid])
    weight = size[valid]
    return float(np.dot(weight, auc) / weight.sum())


def log_loss(labels, probs, eps: float = 1e-15) -> float:
    """Mean binary cross-entropy; probabilities are clipped to ``[eps, 1 - eps]``. ``nan`` if empty."""
    y = _as_labels(labels)
    p = _as_scores(probs, y.shape[0], name="probs")
    if y.shape[0] == 0:
        return float("nan")
    p = np.clip(p, eps, 1.0 - eps)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


def _ordered(values: Iterable[str], canonical: Sequence[str]) -> List[str]:
    present = set(values)
    known = [v for v in canonical if v in present]
    return known + sorted(present - set(canonical))


def _entry(y: np.ndarray, s: np.ndarray, g: Optional[np.ndarray]) -> Dict[str, float]:
    n = int(y.shape[0])
    return {
        "auc": roc_auc(y, s),
        "ap": average_precision(y, s),
        "gauc": group_auc(y, s, g) if g is not None else float("nan"),
        "logloss": log_loss(y, s),
        "rows": n,
        "positive_rate": float(y.mean()) if n else float("nan"),
    }


def task_sentence_metrics(frame, score_column: str,
                          group_column: Optional[str] = "customer_id") -> Dict[str, Dict[str, float]]:
    """Metrics per task sentence and per use case from a long-format frame.

    Args:
      frame: a pandas DataFrame with columns ``flow``, ``use_case``, ``label`` (0/1), ``score_column``
        (probabilities; logloss clips them) and, unless ``group_column`` is None, ``group_column``.
      score_column: the column holding the scores (e.g. ``"oracle_p"`` or a model's ``"probability"``).
      group_column: the group id for GAUC; ``None`` leaves ``gauc`` as ``nan``.

    Returns:
      ``{"AAL/CTR": {"auc", "ap", "gauc", "logloss", "rows", "positive_rate"}, ...,
      "use_case/CTR": {...}, ...}``: first every task sentence present (flows in the order AAL, EUP,
      NSE then others sorted; use cases CTR, ATC, CVR, CTCVR then others sorted), then each use case
      pooled over flows. Undefined metrics are ``nan``.
    """
    required = ["flow", "use_case", "label", score_column] + ([group_column] if group_column else [])
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(f"task_sentence_metrics: missing column(s) {missing}; "
                         f"frame has {list(frame.columns)}")
    flows = np.asarray(frame["flow"].astype(str))
    use_cases = np.asarray(frame["use_case"].astype(str))
    y = _as_labels(frame["label"].to_numpy(), name="column 'label'")
    s = _as_scores(frame[score_column].to_numpy(), y.shape[0], name=f"column '{score_column}'")
    g = np.asarray(frame[group_column]) if group_column else None

    result: Dict[str, Dict[str, float]] = {}
    if y.shape[0] == 0:
        return result
    flow_order = _ordered(np.unique(flows), _FLOW_ORDER)
    use_case_order = _ordered(np.unique(use_cases), _USE_CASE_ORDER)
    flow_idx = _codes(flows, flow_order)
    use_case_idx = _codes(use_cases, use_case_order)
    key = flow_idx * len(use_case_order) + use_case_idx
    order = np.argsort(key, kind="stable")
    bounds = np.searchsorted(key[order], np.arange(len(flow_order) * len(use_case_order) + 1))
    for fi, flow in enumerate(flow_order):
        for ui, use_case in enumerate(use_case_order):
            k = fi * len(use_case_order) + ui
            rows = order[bounds[k]:bounds[k + 1]]
            if rows.size:
                result[f"{flow}/{use_case}"] = _entry(y[rows], s[rows], None if g is None else g[rows])
    for ui, use_case in enumerate(use_case_order):
        rows = np.flatnonzero(use_case_idx == ui)
        result[f"use_case/{use_case}"] = _entry(y[rows], s[rows], None if g is None else g[rows])
    return result


def _codes(values: np.ndarray, vocabulary: Sequence[str]) -> np.ndarray:
    """Index of each value in ``vocabulary`` (every value must occur in it)."""
    vocab = np.asarray(vocabulary)
    sorter = np.argsort(vocab)
    return sorter[np.searchsorted(vocab, values, sorter=sorter)].astype(np.int64)
