"""LightGBM as the peer a practitioner would try first: ONE gradient-boosted model over every task sentence,
on the same long-format rows GRec-TF reads (the optional ``peers`` extra).

The table (:class:`TableEncoder`), all of it learned from the training split:

- ``flow`` and ``use_case``, and every ``categorical`` / ``item_id`` feature: pandas categories (categories
  of the training split; an unseen value is missing), split on natively by LightGBM;
- ``numerical`` features as they are;
- ``embedding`` features: one column per vector component;
- ``sequence`` and ``text`` features: bag of ids (text: of whitespace-separated lower-case words), one count
  column for each of the ``top_n`` most frequent ids of the training split.

Training: fixed defaults (never tuned on test): 63 leaves, learning rate 0.05, up to 2000 rounds with early
stopping after 50 rounds without a lower log-loss on the valid split, and 80% row and feature subsampling,
which is what makes LightGBM's ``seed`` change the model.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Union

import numpy as np
import pandas as pd

from grec_tf.config import ExperimentConfig

TASK_COLUMNS = ("flow", "use_case")
CATEGORY_KINDS = ("categorical", "item_id")
BAG_KINDS = ("sequence", "text")
TOP_N = 50
PARAMETERS = {"objective": "binary", "num_leaves": 63, "learning_rate": 0.05, "feature_fraction": 0.8,
              "bagging_fraction": 0.8, "bagging_freq": 1, "force_col_wise": True, "verbosity": -1}
MAX_ROUNDS, EARLY_STOPPING_ROUNDS = 2000, 50


def import_lightgbm() -> Union[str, object]:
    """The ``lightgbm`` module, or the ImportError's message."""
    try:
        import lightgbm
    except ImportError as error:
        return f"{type(error).__name__}: {error}"
    return lightgbm


def _tokens(value, kind: str) -> List[str]:
    """The ids of one cell: a text's lower-case words, a sequence's items (a list or array; None is empty)."""
    if kind == "text":
        return str(value).lower().split() if isinstance(value, str) else []
    return [str(v) for v in value] if value is not None and not isinstance(value, float) else []


def _categorical(values: pd.Series, categories: List[str]) -> pd.Categorical:
    """``values`` as strings over ``categories``; a value outside them is missing."""
    text = values.astype(str)
    return pd.Categorical(text.where(text.isin(categories)), categories=categories)


@dataclass
class TableEncoder:
    """What the training split says about each feature: categories, kept bag ids, vector widths."""

    categories: Dict[str, List[str]]  # column -> categories of the training split
    numerical: List[str]
    embedding_dims: Dict[str, int]  # feature -> vector width
    bags: Dict[str, List[str]]  # feature -> its kept ids, most frequent first
    kinds: Dict[str, str]  # bag feature -> sequence / text

    @classmethod
    def fit(cls, train: pd.DataFrame, config: ExperimentConfig, top_n: int = TOP_N) -> "TableEncoder":
        """Learns the encoding from a long-format training split (every configured feature must be a column)."""
        features = config.features
        categories = {name: sorted(train[name].astype(str).unique())
                      for name in list(TASK_COLUMNS) + [f.name for f in features if f.kind in CATEGORY_KINDS]}
        bags, kinds = {}, {}
        for f in features:
            if f.kind in BAG_KINDS:
                counts = Counter(token for cell in train[f.name] for token in _tokens(cell, f.kind))
                bags[f.name] = [token for token, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top_n]]
                kinds[f.name] = f.kind
        dims = {f.name: int(np.asarray(train[f.name].iloc[0]).shape[-1]) for f in features if f.kind == "embedding"}
        return cls(categories, [f.name for f in features if f.kind == "numerical"], dims, bags, kinds)

    def encode(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The LightGBM table of a long-format split: one row per row of ``frame``, in its order.
        Column names are ASCII-safe (``{feature}__{i}``: the i-th vector component or kept bag id)."""
        parts = [pd.DataFrame({name: _categorical(frame[name], cats) for name, cats in self.categories.items()},
                              index=frame.index),
                 frame[self.numerical].astype(np.float32)]
        for name, dim in self.embedding_dims.items():
            vectors = np.stack([np.asarray(v, np.float32) for v in frame[name]]).reshape(len(frame), dim)
            parts.append(pd.DataFrame(vectors, index=frame.index, columns=[f"{name}__{i}" for i in range(dim)]))
        for name, kept in self.bags.items():
            parts.append(pd.DataFrame(self._bag_counts(frame[name], name, kept), index=frame.index,
                                      columns=[f"{name}__{i}" for i in range(len(kept))]))
        return pd.concat(parts, axis=1)

    def _bag_counts(self, cells: Iterable, name: str, kept: List[str]) -> np.ndarray:
        """[rows, len(kept)] float32 counts of each kept id in each cell (other ids are dropped)."""
        index = {token: i for i, token in enumerate(kept)}
        cells = list(cells)
        counts = np.zeros((len(cells), len(kept)), np.float32)
        for row, cell in enumerate(cells):
            for token in _tokens(cell, self.kinds[name]):
                column = index.get(token)
                if column is not None:
                    counts[row, column] += 1
        return counts


def train_lightgbm(splits: Dict[str, pd.DataFrame], config: ExperimentConfig, seed: int,
                   max_rounds: int = MAX_ROUNDS, top_n: int = TOP_N, threads: int = 0,
                   lightgbm: Optional[object] = None) -> Dict[str, object]:
    """Trains one model on ``splits["train"]`` (early-stopped on ``splits["valid"]``, LightGBM's ``seed``);
    returns ``scores`` (test probabilities, [test rows] in the test split's order), ``rounds`` (the best
    iteration) and ``features`` (the table's width). ``threads``: 0 is every core; on a machine shared with
    other jobs use 1 (OpenMP threads that wait for a busy core slow LightGBM down ten-fold).
    ImportError when lightgbm is not importable."""
    lgb = lightgbm or import_lightgbm()
    if isinstance(lgb, str):
        raise ImportError(lgb)
    encoder = TableEncoder.fit(splits["train"], config, top_n)
    label = config.data.label_column
    train = lgb.Dataset(encoder.encode(splits["train"]), splits["train"][label].to_numpy(), free_raw_data=True)
    valid = lgb.Dataset(encoder.encode(splits["valid"]), splits["valid"][label].to_numpy(), reference=train)
    booster = lgb.train({**PARAMETERS, "seed": seed, "num_threads": threads}, train, num_boost_round=max_rounds,
                        valid_sets=[valid], callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)])
    test = encoder.encode(splits["test"])
    return {"scores": booster.predict(test, num_iteration=booster.best_iteration).astype(np.float64),
            "rounds": int(booster.best_iteration), "features": int(test.shape[1])}
