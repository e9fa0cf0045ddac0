"""The telecom dataset on disk: ``{train,valid,test}.parquet`` plus ``card.json``, written atomically.

The card holds the generator version, size and seed, the rows and impressions per split, and the
oracle metrics per task sentence on the test split (AUC, AP, GAUC, logloss of ``oracle_p``): the
ceiling a model that knew the hidden variables would reach.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from grec_tf.data.telecom.schema import GENERATOR_VERSION, SCHEMA, SPLITS
from grec_tf.data.telecom.simulation import Impressions, simulate
from grec_tf.data.telecom.tables import long_table, split_bounds
from grec_tf.data.telecom.task_world import DEFAULT_WORLD, TaskWorld
from grec_tf.data.telecom.validation import check_generator_args
from grec_tf.errors import DataError

_CARD_COLUMNS = ["flow", "use_case", "label", "oracle_p", "customer_id"]


def _json_number(value: float):
    return None if value is None or (isinstance(value, float) and not math.isfinite(value)) else value


def dataset_card(test, rows: int, seed: int, splits: Optional[Dict[str, int]] = None,
                 impressions: Optional[Dict[str, int]] = None, world: TaskWorld = DEFAULT_WORLD) -> dict:
    """The dataset card: oracle metrics per task sentence on the test split (a frame or Arrow table).

    ``task_sentences`` lists those of ``world`` present in ``test`` (it tells the world apart: a
    larger world's card lists its extra flows and use cases).

    Returns ``{"dataset", "version", "rows", "seed", "task_sentences", "splits", "impressions",
    "oracle": {"AAL/CTR": {"auc", "ap", "gauc", "logloss", "rows", "positive_rate"}, ...},
    "oracle_use_case": {"CTR": {...}, ...}}``; undefined metrics are ``None`` (JSON null).
    """
    from grec_tf.metrics.ranking import task_sentence_metrics
    import pandas as pd

    if isinstance(test, pa.Table):
        test = pd.DataFrame({c: test.column(c).to_numpy() for c in _CARD_COLUMNS})
    metrics = task_sentence_metrics(test, "oracle_p", "customer_id")
    clean = {k: {m: _json_number(v) for m, v in e.items()} for k, e in metrics.items()}
    sentences = [k for k in world.task_sentences if k in clean]
    return {
        "dataset": "telecom",
        "version": GENERATOR_VERSION,
        "rows": int(rows),
        "seed": int(seed),
        "task_sentences": sentences,
        "splits": dict(splits or {}),
        "impressions": dict(impressions or {}),
        "oracle": {k: clean[k] for k in sentences},
        "oracle_use_case": {k.split("/", 1)[1]: v for k, v in clean.items() if k.startswith("use_case/")},
    }


def _write_split(path: Path, imp: Impressions, lo: int, hi: int, flows: Sequence[str], use_cases: Sequence[str],
                 chunk_impressions: int, card_parts: Optional[List[pa.Table]]) -> int:
    """Writes impressions ``[lo, hi)`` to ``path`` chunk by chunk; returns the rows written.

    The card's columns of every chunk are appended to ``card_parts`` when it is a list.
    """
    writer = pq.ParquetWriter(path, SCHEMA, compression="snappy")
    count = 0
    try:
        for a in range(lo, max(hi, lo + 1), chunk_impressions):
            table = long_table(imp, a, min(hi, a + chunk_impressions), flows, use_cases)
            writer.write_table(table, row_group_size=1 << 20)
            count += table.num_rows
            if card_parts is not None:
                card_parts.append(table.select(_CARD_COLUMNS))
            del table
    finally:
        writer.close()
    return count


def _check_replaceable(out: Path) -> None:
    """An existing ``out`` may be replaced only if it is an empty folder or a generated dataset."""
    if out.exists():
        if not out.is_dir():
            raise DataError(f"{out}: exists and is not a directory; expected a dataset folder")
        if any(out.iterdir()) and not (out / "card.json").is_file():
            raise DataError(f"{out}: folder exists and is not a generated dataset (no card.json); "
                            "refusing to overwrite it; choose another --out")


def _move_into_place(tmp: Path, out: Path) -> None:
    """Renames ``tmp`` to ``out``; a previous ``out`` is put back if the rename fails."""
    if not out.exists():
        os.replace(tmp, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    os.replace(out, old / "data")
    try:
        os.replace(tmp, out)
    except BaseException:
        os.replace(old / "data", out)  # put the previous dataset back
        shutil.rmtree(old, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


def write_dataset(out_dir, rows: int, seed: int = 0, flows: Optional[Sequence[str]] = None,
                  use_cases: Optional[Sequence[str]] = None, chunk_impressions: int = 200_000,
                  world: TaskWorld = DEFAULT_WORLD) -> dict:
    """Writes ``out_dir/{train,valid,test}.parquet`` and ``out_dir/card.json`` atomically; returns the card.

    Files are written into a temporary folder next to ``out_dir`` and renamed into place, so a reader
    never sees a half-written dataset. An existing ``out_dir`` is replaced only if it is empty or holds
    a previous dataset (has ``card.json``); otherwise :class:`DataError` is raised. ``world``: the
    flows x use cases simulated (:func:`.task_world.task_world`), 3 x 4 by default.
    """
    rows, seed, flows, use_cases = check_generator_args(rows, seed, flows, use_cases, world)
    out = Path(out_dir).resolve()
    _check_replaceable(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        imp = simulate(rows, seed, world)
        split_rows, split_imps, test_parts = {}, {}, []
        for split, (lo, hi) in split_bounds(rows).items():
            split_rows[split] = _write_split(tmp / f"{split}.parquet", imp, lo, hi, flows, use_cases,
                                             chunk_impressions, test_parts if split == "test" else None)
            split_imps[split] = hi - lo
        card = dataset_card(pa.concat_tables(test_parts), rows, seed, split_rows, split_imps, world)
        (tmp / "card.json").write_text(json.dumps(card, indent=2) + "\n")
        os.chmod(tmp, 0o755)
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return card


def read_card(out_dir) -> dict:
    """Reads ``out_dir/card.json``."""
    path = Path(out_dir) / "card.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: dataset card not found; generate the data with python -m pipelines.generate") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: malformed dataset card ({err})") from None


def ensure_dataset(out_dir, rows: int, seed: int = 0, world: TaskWorld = DEFAULT_WORLD) -> dict:
    """Returns the card of the dataset in ``out_dir``, generating it first unless it exists with the same
    rows, seed, generator version and task sentences (those of ``world``)."""
    path = Path(out_dir)
    if (path / "card.json").is_file() and all((path / f"{s}.parquet").is_file() for s in SPLITS):
        try:
            card = read_card(path)
        except DataError:
            card = {}
        if (card.get("rows"), card.get("seed"), card.get("version")) == (rows, seed, GENERATOR_VERSION) \
                and card.get("task_sentences") == list(world.task_sentences):
            return card
    return write_dataset(path, rows, seed, world=world)


def format_card(card: dict) -> str:
    """The dataset card as a readable text table."""
    def num(v, fmt):
        return format(v, fmt) if v is not None else format("-", f">{fmt.split('.')[0]}")

    def line(key: str, e: dict) -> str:
        return (f"{key:<14} {e['rows']:>9,} {num(e['positive_rate'], '9.4f')} {num(e['auc'], '10.4f')} "
                f"{num(e['ap'], '9.4f')} {num(e.get('gauc'), '11.4f')}")

    lines = [f"telecom dataset (generator v{card.get('version')}): {card.get('rows'):,} impressions, "
             f"seed {card.get('seed')}"]
    if card.get("splits"):
        lines.append("rows: " + ", ".join(f"{s} {card['splits'][s]:,} ({card['impressions'].get(s, 0):,} "
                                          f"impressions)" for s in card["splits"]))
    lines.append("oracle on the test split:")
    header = f"{'task sentence':<14} {'rows':>9} {'pos. rate':>9} {'oracle AUC':>10} {'oracle AP':>9} {'oracle GAUC':>11}"
    lines += [header, "-" * len(header)]
    lines += [line(key, card["oracle"][key]) for key in card["task_sentences"]]
    if card.get("oracle_use_case"):
        lines.append("-" * len(header))
        lines += [line("all/" + key, e) for key, e in card["oracle_use_case"].items()]
    return "\n".join(lines)
