"""The long format of the telecom dataset: one row per (impression, task sentence), and the splits.

Rows of an impression are contiguous, in use-case order:

* ``CTR``   on every impression: label = click; ``oracle_p`` = p_click.
* ``ATC``   on every impression: label = click and add-to-cart (adding to cart needs a click);
  ``oracle_p`` = p_click * p_atc.
* ``CVR``   only on clicked impressions: label = add-to-cart and purchase given the click (a purchase
  goes through the cart); ``oracle_p`` = p_atc * p_buy.
* ``CTCVR`` on every impression: label = click and add-to-cart and purchase; ``oracle_p`` =
  p_click * p_atc * p_buy.

So a CTCVR positive implies CTR, ATC and CVR positives on the same impression. A larger task world
(:mod:`.task_world`) appends its extra use cases: a dense one on every impression, a sparse one only on
clicked impressions; label = the event, ``oracle_p`` = its probability. ``oracle_p`` is the exact
probability the row's label was drawn with (never a model feature).

Splits are by impression (80/10/10 in impression order; impressions are i.i.d.), so all rows of an
impression share a split.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from grec_tf.data.telecom.schema import (
    CONTEXT_CATEGORICAL, CONTEXT_NUMERICAL, ITEM_CATEGORICAL, ITEM_EMBEDDINGS, ITEM_NUMERICAL, ITEM_TEXT, SCHEMA)
from grec_tf.data.telecom.simulation import Impressions, Viewed, simulate
from grec_tf.data.telecom.task_world import DEFAULT_USE_CASES, DEFAULT_WORLD, TaskWorld
from grec_tf.data.telecom.validation import check_generator_args
from grec_tf.data.telecom.world import CHANNELS, DEVICE_OS, PLANS, REGIONS, fixed_world

_CATEGORICAL_VOCAB = {"device_os": DEVICE_OS, "channel": CHANNELS, "region": REGIONS, "plan": PLANS}


def split_bounds(n: int) -> Dict[str, Tuple[int, int]]:
    """Impression ranges ``[lo, hi)`` of the splits: 80% train, 10% valid, the rest test."""
    n_train = n * 8 // 10
    n_valid = n // 10
    return {"train": (0, n_train), "valid": (n_train, n_train + n_valid), "test": (n_train + n_valid, n)}


def _row_index(imp: Impressions, lo: int, hi: int) -> Tuple[np.ndarray, np.ndarray]:
    """Rows of impressions [lo, hi): (impression index, use-case index), in impression then use-case
    order; a sparse use case (CVR, ...) only when the impression was clicked."""
    sparse = np.array(imp.world.sparse)
    present = ~sparse[None, :] | imp.labels.click[lo:hi, None]     # [impressions, use cases]
    owner, use_case = np.nonzero(present)
    return owner + lo, use_case


def _row_labels(imp: Impressions, owner: np.ndarray, use_case: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``(label [rows] int64, oracle_p [rows] float64)`` of each row's use case."""
    lab = imp.labels
    c, a, b = lab.click[owner], lab.atc[owner], lab.buy[owner]
    pc_, pa_, pb_ = lab.p_click[owner], lab.p_atc[owner], lab.p_buy[owner]
    cases = [use_case == 0, use_case == 1, use_case == 2]
    label = np.select(cases, [c, c & a, a & b], default=c & a & b)
    oracle = np.select(cases, [pc_, pc_ * pa_, pa_ * pb_], default=pc_ * pa_ * pb_)
    extra = use_case >= DEFAULT_USE_CASES
    if extra.any():   # the task world's extra events: label and probability as drawn
        event = use_case[extra] - DEFAULT_USE_CASES
        label[extra] = lab.events[owner[extra], event]
        oracle[extra] = lab.p_events[owner[extra], event]
    return label.astype(np.int64), oracle.astype(np.float64)


def _strings(vocab: Sequence[str], codes: np.ndarray) -> pa.Array:
    return pc.take(pa.array(list(vocab), pa.string()), pa.array(codes, pa.int64()))


def _sequence_array(viewed: Viewed, vocab: Sequence[str], owner: np.ndarray) -> pa.Array:
    """Arrow list<string> array ``[rows]``: the sequence of each row's impression."""
    offsets = viewed.offsets
    lengths = (offsets[1:] - offsets[:-1])[owner]
    row_offsets = np.zeros(owner.shape[0] + 1, dtype=np.int64)
    np.cumsum(lengths, out=row_offsets[1:])
    gather = np.repeat(offsets[owner] - row_offsets[:-1], lengths) + np.arange(row_offsets[-1])
    values = _strings(vocab, viewed.codes[gather])
    return pa.ListArray.from_arrays(pa.array(row_offsets.astype(np.int32)), values)


def long_table(imp: Impressions, lo: int, hi: int, flows: Sequence[str], use_cases: Sequence[str]) -> pa.Table:
    """The long-format rows (schema :data:`SCHEMA`) of impressions ``[lo, hi)`` in the given task sentences
    (names of ``imp.world``'s flows and use cases)."""
    w = fixed_world()
    owner, use_case = _row_index(imp, lo, hi)
    keep = np.isin(imp.flow[owner], [imp.world.flows.index(f) for f in flows]) & \
        np.isin(use_case, [imp.world.use_cases.index(u) for u in use_cases])
    if not keep.all():
        owner, use_case = owner[keep], use_case[keep]
    label, oracle = _row_labels(imp, owner, use_case)
    item_rows = w.table.take(pa.array(imp.item[owner]))
    cols = {
        "impression_id": pa.array(owner.astype(np.int64)),
        "customer_id": pa.array(imp.context["customer_id"][owner]),
        "flow": _strings(imp.world.flows, imp.flow[owner]),
        "use_case": _strings(imp.world.use_cases, use_case),
        "label": pa.array(label),
        "oracle_p": pa.array(oracle),
    }
    for name in CONTEXT_CATEGORICAL:
        cols[name] = _strings(_CATEGORICAL_VOCAB[name], imp.context[name][owner])
    for name in CONTEXT_NUMERICAL:
        cols[name] = pa.array(imp.context[name][owner])
    cols["search_query"] = _strings(imp.queries.vocab, imp.queries.code[owner])
    cols["viewed_pages"] = _sequence_array(imp.viewed_pages, w.page_vocab, owner)
    cols["viewed_items"] = _sequence_array(imp.viewed_items, w.item_ids, owner)
    for name in ITEM_CATEGORICAL + ITEM_NUMERICAL + ITEM_TEXT + ITEM_EMBEDDINGS:
        cols[name] = item_rows.column(name).combine_chunks()
    return pa.Table.from_arrays([cols[f.name] for f in SCHEMA], schema=SCHEMA)


def generate_tables(rows: int, seed: int = 0, flows: Optional[Sequence[str]] = None,
                    use_cases: Optional[Sequence[str]] = None, world: TaskWorld = DEFAULT_WORLD) -> Dict[str, pa.Table]:
    """Generates the dataset in memory: ``{"train", "valid", "test"}`` -> Arrow table (schema :data:`SCHEMA`).

    Args:
      rows: number of impressions (the long format has about 3.1 rows per impression).
      seed: the dataset seed; the same seed gives identical tables.
      flows, use_cases: optional subsets of ``world.flows`` / ``world.use_cases`` to keep (rows of other
        task sentences are dropped; the impressions and labels are unchanged).
      world: the flows x use cases to simulate (:func:`.task_world.task_world`); the default is 3 x 4.
    """
    rows, seed, flows, use_cases = check_generator_args(rows, seed, flows, use_cases, world)
    imp = simulate(rows, seed, world)
    return {split: long_table(imp, lo, hi, flows, use_cases) for split, (lo, hi) in split_bounds(rows).items()}


def generate_frames(rows: int, seed: int = 0, flows: Optional[Sequence[str]] = None,
                    use_cases: Optional[Sequence[str]] = None, world: TaskWorld = DEFAULT_WORLD):
    """Like :func:`generate_tables` but returns pandas DataFrames (list columns hold NumPy arrays)."""
    return {split: table.to_pandas()
            for split, table in generate_tables(rows, seed, flows, use_cases, world).items()}
