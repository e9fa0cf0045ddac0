"""Vocabularies and normalization statistics, computed on the training split only.

They are plain JSON-able values so that the model keeps them in its config: the Keras preprocessing
layers built from them (``StringLookup``, ``Normalization``, the WordPiece tokenizer) travel inside the
SavedModel, and serving needs no side files.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Tuple

import numpy as np
import pandas as pd

from grec_tf.config import PIECEWISE_LINEAR_BINS, ExperimentConfig
from grec_tf.data.feature_arrays import ROUTE_COLUMNS, SEQUENCE_PADDING, feature_array
from grec_tf.errors import ConfigError

#: Feature kinds that are looked up in a vocabulary of string ids.
VOCABULARY_KINDS = ("categorical", "item_id", "sequence")


@dataclass
class FeatureStatistics:
    """Training-split statistics per feature name.

    ``vocabularies``: categorical / item_id / sequence -> ids ordered by descending frequency
    (features sharing a vocabulary through ``vocabulary_of`` hold equal lists).
    ``moments``: numerical -> [mean, variance].
    ``text_vocabularies``: text -> WordPiece vocabulary (reserved tokens first).
    ``quantiles``: numerical -> its distinct quantile bin edges, raw units (read by
    ``model.numerical_embedding: piecewise_linear``; computed whatever the config, as the tf.Transform path does,
    so statistics computed once serve a model with either encoding).
    ``tree_edges``: numerical -> its distinct target-aware bin edges, raw units (read by
    ``model.piecewise_linear_edges: tree``; :func:`grec_tf.data.tree_edges.tree_edges`, computed whatever the
    config too). Statistics saved before a field existed load with it empty.
    """

    vocabularies: Dict[str, List[str]] = field(default_factory=dict)
    moments: Dict[str, List[float]] = field(default_factory=dict)
    text_vocabularies: Dict[str, List[str]] = field(default_factory=dict)
    quantiles: Dict[str, List[float]] = field(default_factory=dict)
    tree_edges: Dict[str, List[float]] = field(default_factory=dict)

    def to_dict(self) -> Dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Dict) -> "FeatureStatistics":
        return cls(**values)


def frequency_vocabulary(values: np.ndarray, max_size: int) -> List[str]:
    """Distinct non-empty strings of ``values`` (any shape), most frequent first, ties by value."""
    counts = pd.Series(values.reshape(-1)).value_counts(sort=False)
    return ranked_vocabulary(counts.items(), max_size)


def ranked_vocabulary(counts: Iterable[Tuple[str, int]], max_size: int) -> List[str]:
    """The ``max_size`` most frequent of ``(id, count)`` pairs (each id once; the padding id ``""`` is
    skipped), ties by id: the one ranking every vocabulary uses, however its counts were computed."""
    ordered = sorted(((str(k), int(n)) for k, n in counts if k != SEQUENCE_PADDING), key=lambda kv: (-kv[1], kv[0]))
    return [k for k, _ in ordered[:max_size]]


def normalization_moments(mean: float, variance: float, count: int) -> List[float]:
    """[mean, variance] a Normalization layer uses: [0, 1] without finite values, variance 1 when it is 0."""
    if count == 0:
        return [0.0, 1.0]
    return [float(mean), float(variance) if variance > 0 else 1.0]


def quantile_edges(values: np.ndarray, bins: int) -> List[float]:
    """The distinct ``bins``-quantiles (``bins + 1`` of them, fewer where values repeat) of the finite
    ``values``, by :func:`distinct_edges`."""
    finite = values[np.isfinite(values)].astype(np.float64)
    return distinct_edges(np.quantile(finite, np.linspace(0.0, 1.0, bins + 1)) if finite.size else finite)


def distinct_edges(edges: Iterable[float], dtype: type = np.float64) -> List[float]:
    """The sorted distinct finite ``edges`` as ``dtype`` values: at least two, so at least one bin (``[v, v + 1]``
    from one value, ``[0, 1]`` from none). The pandas and the tf.Transform statistics both end here, and so do the
    normalized edges a float32 layer reads (two edges equal in float32 would make an empty bin)."""
    edges = np.asarray(list(edges), np.float64).astype(dtype)
    edges = np.unique(edges[np.isfinite(edges)])
    if edges.size == 0:
        return [0.0, 1.0]
    return [float(e) for e in edges] if edges.size >= 2 else [float(edges[0]), float(edges[0]) + 1.0]


def shared_vocabulary_owners(config: ExperimentConfig) -> Dict[str, str]:
    """Feature name -> the feature whose vocabulary it uses (itself, or its ``vocabulary_of``), for every
    categorical / item_id / sequence feature. (The config has already checked every ``vocabulary_of``.)"""
    return {f.name: f.vocabulary_of or f.name for f in config.features if f.kind in VOCABULARY_KINDS}


def task_sentence_codes(frame: pd.DataFrame) -> np.ndarray:
    """[N] int64: one code per distinct (``flow``, ``use_case``) pair of ``frame``'s rows (computed once for all the
    numericals' trees: comparing 1M strings per numerical would cost more than the trees)."""
    return frame.groupby(list(ROUTE_COLUMNS), sort=True).ngroup().to_numpy(np.int64)


def compute_feature_statistics(train: pd.DataFrame, config: ExperimentConfig) -> FeatureStatistics:
    """Statistics of every declared feature over the training frame.

    Features that share a vocabulary (``vocabulary_of``) get the same list, ranked by the combined
    frequency of the ids in all their columns, cut at the owner's ``max_vocab``: an id has the same
    position in each (each feature still has its own lookup layer and embedding table).
    """
    stats = FeatureStatistics()
    owners = shared_vocabulary_owners(config)
    declared = {f.name: f for f in config.features}
    vocabularies = {}
    for owner in dict.fromkeys(owners.values()):
        members = [declared[name] for name, of in owners.items() if of == owner]
        values = np.concatenate([feature_array(train, f).reshape(-1) for f in members])
        vocabularies[owner] = frequency_vocabulary(values, declared[owner].max_vocab)
    stats.vocabularies = {name: list(vocabularies[owner]) for name, owner in owners.items()}
    _numerical_statistics(train, config, stats)
    for feature in config.features:
        if feature.kind == "text" and config.model.text_encoder.type == "transformer":
            from grec_tf.text import build_wordpiece_vocabulary

            stats.text_vocabularies[feature.name] = build_wordpiece_vocabulary(
                [t for t in feature_array(train, feature).tolist() if t], config.model.text_encoder.vocab_size)
    return stats


def _numerical_statistics(train: pd.DataFrame, config: ExperimentConfig, stats: FeatureStatistics) -> None:
    """Fills the moments, quantile edges and tree edges of every numerical (both kinds of edges whatever the
    config, so that statistics computed once serve either ``model.piecewise_linear_edges``)."""
    from grec_tf.data.tree_edges import tree_edges  # scikit-learn, and it imports this module

    numericals = [f for f in config.features if f.kind == "numerical"]
    if not numericals:
        return
    labels, tasks = train[config.data.label_column].to_numpy(), task_sentence_codes(train)
    for feature in numericals:
        values = feature_array(train, feature)
        finite = values[np.isfinite(values)]
        stats.moments[feature.name] = normalization_moments(
            finite.mean() if finite.size else 0.0, finite.var() if finite.size else 0.0, finite.size)
        stats.quantiles[feature.name] = quantile_edges(values, PIECEWISE_LINEAR_BINS)
        stats.tree_edges[feature.name] = tree_edges(values, labels, tasks, PIECEWISE_LINEAR_BINS)
