"""What the Bayes ceiling reads from a long-format frame: each impression's features as world indices.

Item ids, page names and context values are mapped back to the indices the generator drew, and the
search query is parsed into its brand word, category word and intent word
(:func:`.queries.parse_query`). A value the generator cannot produce raises ``ValueError`` naming
the column and the value.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from grec_tf.data.telecom.ceiling_likelihood import likelihood
from grec_tf.data.telecom.queries import parse_query
from grec_tf.data.telecom.schema import FLOWS, MAX_SEQUENCE_LENGTH
from grec_tf.data.telecom.world import CHANNELS, DEVICE_OS, PLANS


@dataclass
class Sequence:
    offsets: np.ndarray   # [n + 1]
    codes: np.ndarray     # [total] world indices
    owner: np.ndarray     # [total] impression of each element
    position: np.ndarray  # [total] 0-based position (most recent last)
    length: np.ndarray    # [n]


@dataclass
class Observed:
    n: int
    flow: np.ndarray
    channel: np.ndarray
    device: np.ndarray
    plan: np.ndarray
    tenure: np.ndarray
    lines: np.ndarray
    days: np.ndarray
    item: np.ndarray
    has_query: np.ndarray
    q_brand: np.ndarray    # brand index of the query's brand word, -1 if none
    q_cat: np.ndarray      # category of the query's category word, -1 if none
    q_intent: np.ndarray   # the query has an intent word
    items: Sequence
    pages: Sequence


def codes(values, vocabulary, column: str) -> np.ndarray:
    """``[n]`` index of each value in ``vocabulary``; ValueError on a value the generator cannot produce."""
    index = vocabulary if isinstance(vocabulary, pd.Index) else pd.Index(list(vocabulary))
    values = np.asarray(values, dtype=object)
    found = index.get_indexer(values)
    if (found < 0).any():
        raise ValueError(f"{column}: value {values[found < 0][0]!r} is not in the telecom vocabulary")
    return found.astype(np.int64)


def _sequence(values: np.ndarray, index: pd.Index, column: str) -> Sequence:
    length = np.fromiter((len(v) for v in values), dtype=np.int64, count=values.shape[0])
    if (length > MAX_SEQUENCE_LENGTH).any():
        raise ValueError(f"{column}: sequences longer than {MAX_SEQUENCE_LENGTH} are not telecom data")
    offsets = np.zeros(values.shape[0] + 1, dtype=np.int64)
    np.cumsum(length, out=offsets[1:])
    flat = np.concatenate([np.asarray(v, dtype=object) for v in values]) if offsets[-1] else np.array([], object)
    owner = np.repeat(np.arange(values.shape[0]), length)
    return Sequence(offsets, codes(flat, index, column), owner, np.arange(offsets[-1]) - offsets[owner], length)


def observe(frame: pd.DataFrame, rows: np.ndarray) -> Observed:
    """Observed features of the impressions whose representative rows are ``rows`` (``[n]`` positions)."""
    m = likelihood()

    def col(name):
        return frame[name].to_numpy()[rows]

    queries = col("search_query")
    uniq, inverse = np.unique(queries.astype(str), return_inverse=True)
    parsed = np.array([parse_query(q) for q in uniq], dtype=np.int64).reshape(-1, 4)[inverse]
    return Observed(
        n=rows.shape[0],
        flow=codes(col("flow"), FLOWS, "flow"),
        channel=codes(col("channel"), CHANNELS, "channel"),
        device=codes(col("device_os"), DEVICE_OS, "device_os"),
        plan=codes(col("plan"), PLANS, "plan"),
        tenure=col("tenure_months").astype(np.float64),
        lines=col("lines_on_account").astype(np.float64),
        days=col("days_since_upgrade").astype(np.float64),
        item=codes(col("item_id"), m.item_index, "item_id"),
        has_query=parsed[:, 0].astype(bool), q_brand=parsed[:, 1], q_cat=parsed[:, 2],
        q_intent=parsed[:, 3].astype(bool),
        items=_sequence(col("viewed_items"), m.item_index, "viewed_items"),
        pages=_sequence(col("viewed_pages"), m.page_index, "viewed_pages"),
    )


def take(obs: Observed, lo: int, hi: int) -> Observed:
    """Impressions ``[lo, hi)`` of ``obs``."""
    def seq(s: Sequence) -> Sequence:
        a, b = s.offsets[lo], s.offsets[hi]
        return Sequence(s.offsets[lo:hi + 1] - a, s.codes[a:b], s.owner[a:b] - lo, s.position[a:b], s.length[lo:hi])

    fields = {k: v[lo:hi] for k, v in obs.__dict__.items() if isinstance(v, np.ndarray)}
    return Observed(n=hi - lo, items=seq(obs.items), pages=seq(obs.pages), **fields)
