"""Validation of chunks with the in-memory checks, and the dead letters of the rows that fail them.

Every chunk goes through :func:`grec_tf.data.validation.validate_long_frame`, so an error says what it says
on the in-memory path; its row is then moved from the chunk's position to the file's (the position in the
file's long-format table, before any filtering). Without a dead-letter output the first error fails the
pipeline. With one, a row-level error sends that row to the dead letters and the rest of the chunk is checked
again; an error that is not about one row (a missing column, an empty file) still fails the pipeline.
"""
from __future__ import annotations

import json
from typing import Dict, List, NamedTuple, Tuple

import numpy as np
import pandas as pd

from grec_tf.config import ExperimentConfig
from grec_tf.data.sources import configured_rows
from grec_tf.data.validation import validate_long_frame
from grec_tf.errors import DataError
from grec_tf.preprocessing.long_tables import Chunk


class CheckedChunk(NamedTuple):
    """The valid rows of a chunk (fresh 0..n-1 index), the file row of each ([n] int64) and a dead letter per
    rejected row."""

    frame: pd.DataFrame
    dead_letters: List[Dict]
    file_rows: np.ndarray


def in_file(err: DataError, file_rows: np.ndarray) -> DataError:
    """``err`` with its chunk row replaced by the row of the file (``file_rows`` [n]: file row per chunk row)."""
    row = None if err.row is None else int(file_rows[err.row])
    return DataError(err.message, file=err.file, column=err.column, row=row)


def dead_letter(frame: pd.DataFrame, position: int, err: DataError) -> Dict:
    """A JSON-able record of a rejected row: where it was, why, and its values."""
    values = json.loads(frame.iloc[[position]].to_json(orient="records", default_handler=str))[0]
    return {"file": err.file, "row": err.row, "column": err.column, "error": str(err), "values": values}


def _rows_to_check(chunk: Chunk, config: ExperimentConfig) -> Tuple[pd.DataFrame, np.ndarray]:
    """The chunk's rows of the configured task sentences (only generated data holds others) and their file rows."""
    rows = np.arange(len(chunk.frame)) + chunk.first_row
    if config.data.source != "telecom":
        return chunk.frame, rows
    keep = configured_rows(chunk.frame, config)
    return chunk.frame[keep].reset_index(drop=True), rows[keep]


def check_chunk(chunk: Chunk, config: ExperimentConfig, keep_going: bool) -> CheckedChunk:
    """The valid rows of ``chunk``; raises the first DataError (with its file row) unless ``keep_going``,
    which dead-letters rejected rows instead (errors not about one row raise all the same)."""
    frame, file_rows = _rows_to_check(chunk, config)
    letters: List[Dict] = []
    while len(frame):
        try:
            validate_long_frame(frame, config, chunk.file)
            break
        except DataError as err:
            located = in_file(err, file_rows)
            if not keep_going or err.row is None:
                raise located from None
            letters.append(dead_letter(frame, err.row, located))
            kept = np.arange(len(frame)) != err.row
            frame, file_rows = frame[kept].reset_index(drop=True), file_rows[kept]
    return CheckedChunk(frame, letters, file_rows)
