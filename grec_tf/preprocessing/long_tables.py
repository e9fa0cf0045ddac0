"""Beam reading of long-format tables in chunks that know their place in their file.

A chunk is ``(file, first_row, frame, file_index)``: ``frame`` holds rows ``first_row ..`` of ``file`` (0-based
data rows, the header not counted, whatever the reader: Parquet row groups and CSV chunks number on from the
rows before them), so that a validation error can name the row of the file, as the in-memory path does;
``file_index`` is the file's position in the list :class:`ReadLongTables` was given, so that ``(file_index, file
row)`` names a row uniquely among several files (the impression keys of :mod:`grec_tf.preprocessing.examples`
are built from it). Parquet files are cut into work units by row group (a large file is read by several
workers); a CSV file is one work unit, read in chunks by pandas (the same parser, hence the same column types
and the same messages as :func:`grec_tf.data.validation.read_table`). Files are opened through Beam's
``FileSystems``, so ``gs://``, ``hdfs://`` and ``s3://`` paths work on the runners that have those file systems.
"""
from __future__ import annotations

from typing import Iterator, List, NamedTuple, Optional, Tuple

import apache_beam as beam
import pandas as pd
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from grec_tf.errors import DataError

#: rows of one chunk: a pandas frame of this many rows is what one validation / encoding call handles
CHUNK_ROWS = 65_536
_PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")


class Chunk(NamedTuple):
    """Rows ``first_row ..`` of ``file`` (the ``file_index``-th file read) as a long-format frame."""

    file: str
    first_row: int
    frame: pd.DataFrame
    file_index: int = 0


class WorkUnit(NamedTuple):
    """One file (``row_group`` None) or one row group of a Parquet file, starting at ``first_row``."""

    file: str
    row_group: Optional[int]
    first_row: int
    file_index: int = 0


def is_parquet(path: str) -> bool:
    return path.lower().endswith(_PARQUET_SUFFIXES)


def _parquet_file(path: str) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(FileSystems.open(path))
    except Exception as err:  # pyarrow raises several types for corrupt files
        raise DataError(f"cannot read as Parquet ({type(err).__name__}: {err}); expected a valid Parquet file",
                        file=path) from None


def work_units(path: str, file_index: int = 0) -> List[WorkUnit]:
    """The work units of a file (the ``file_index``-th one read): one per row group of a Parquet file, the whole
    file otherwise."""
    if not FileSystems.exists(path):
        raise DataError("file not found", file=path)
    if not is_parquet(path):
        return [WorkUnit(path, None, 0, file_index)]
    metadata = _parquet_file(path).metadata
    units, first = [], 0
    for group in range(metadata.num_row_groups):
        units.append(WorkUnit(path, group, first, file_index))
        first += metadata.row_group(group).num_rows
    return units


def read_unit(unit: WorkUnit, chunk_rows: int = CHUNK_ROWS) -> Iterator[Chunk]:
    """The chunks of a work unit, in file order."""
    first = unit.first_row
    if unit.row_group is not None:
        for batch in _parquet_file(unit.file).iter_batches(chunk_rows, row_groups=[unit.row_group]):
            yield Chunk(unit.file, first, batch.to_pandas(), unit.file_index)
            first += batch.num_rows
        return
    sep = "\t" if unit.file.lower().endswith(".tsv") else ","
    try:
        for frame in pd.read_csv(FileSystems.open(unit.file), sep=sep, chunksize=chunk_rows):
            yield Chunk(unit.file, first, frame.reset_index(drop=True), unit.file_index)
            first += len(frame)
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise DataError(f"malformed CSV after data row {first} ({str(err).strip()}); expected the same number of "
                        f"fields on every line as in the header, in UTF-8", file=unit.file) from None


def table_columns(path: str) -> Tuple[str, ...]:
    """The column names of a table file, read from its Parquet schema or CSV header."""
    if is_parquet(path):
        return tuple(_parquet_file(path).schema_arrow.names)
    sep = "\t" if path.lower().endswith(".tsv") else ","
    return tuple(pd.read_csv(FileSystems.open(path), sep=sep, nrows=0).columns)


class ReadLongTables(beam.PTransform):
    """``PBegin`` -> ``PCollection[Chunk]`` of the given files, work units spread over the workers."""

    def __init__(self, files: List[str], chunk_rows: int = CHUNK_ROWS):
        super().__init__()
        self.files, self.chunk_rows = list(files), chunk_rows

    def expand(self, pbegin):
        return (pbegin
                | "Files" >> beam.Create(list(enumerate(self.files)))
                | "WorkUnits" >> beam.FlatMapTuple(lambda index, path: work_units(path, index))
                | "Spread" >> beam.Reshuffle()
                | "Read" >> beam.FlatMap(read_unit, self.chunk_rows))
