"""The Beam preprocessing pipeline: long tables -> validated ``tf.Example`` shards + tf.Transform analysis.

Two Beam pipelines run one after the other:

1. for each split (the three files :func:`grec_tf.data.sources.split_files` names: preprocessing takes already
   split data, it does not split): read chunks (:class:`~grec_tf.preprocessing.long_tables.ReadLongTables`),
   validate them (:func:`~grec_tf.preprocessing.row_checks.check_chunk`), encode the valid rows
   (:class:`~grec_tf.preprocessing.examples.ExampleEncoder`: each example with its ``impression_key``, the rows of
   one impression of a chunk one after the other) and write ``DIR/{split}/part-*.tfrecord.gz``, the row count
   to ``DIR/row_counts`` and the rejected rows to the dead-letter folder. Nothing between the encoding and the
   write regroups elements (no shuffle, no fixed shard count), so a chunk's examples reach their shard in the
   order they were emitted; were a runner to reorder them, keys would stay exact, only impressions would be
   encoded more than once per batch;
2. tf.Transform's ``AnalyzeDataset`` over the written training shards (read by tfx-bsl's ``TFExampleRecord``),
   written to ``DIR/transform_output``.

A bad row thus fails the first, small pipeline before tf.Transform's graph (hundreds of transforms) is built,
and the analysis reads examples exactly as training will. Then ``DIR/statistics.json`` is read back from the
transform output and ``DIR/manifest.json`` records what was done (:mod:`grec_tf.data.tfrecord_source`
describes the folder).

Runner options pass through to Beam unchanged (DirectRunner by default).
"""
from __future__ import annotations

import json
import os
import re
from typing import Callable, Dict, Iterator, Optional, Sequence

import apache_beam as beam
import tensorflow as tf
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from grec_tf.config import ExperimentConfig
from grec_tf.data.sources import split_files
from grec_tf.data.splits import SPLITS
from grec_tf.data.tfrecord_source import (MANIFEST_FILE, ORACLE_COLUMN, SCHEMA_FILE, SHARD_SUFFIX, STATISTICS_FILE,
                                          TRANSFORM_OUTPUT, data_contract, reading_config)
from grec_tf.errors import DataError
from grec_tf.preprocessing.examples import ExampleEncoder, example_schema
from grec_tf.preprocessing.long_tables import Chunk, ReadLongTables, table_columns
from grec_tf.preprocessing.row_checks import check_chunk

DEAD_LETTERS = "dead_letters"
ROW_COUNTS = "row_counts"
TEMP = "tmp"  # tf.Transform's scratch folder, removed after the run
_OWNED = (*SPLITS, TRANSFORM_OUTPUT, ROW_COUNTS, SCHEMA_FILE, STATISTICS_FILE, MANIFEST_FILE, TEMP)


class CheckAndEncode(beam.DoFn):
    """Chunk -> serialized examples of its valid rows, grouped by impression (each one's rows one after the
    other, with its ``impression_key``); dead letters on the ``dead_letters`` output."""

    def __init__(self, config: ExperimentConfig, with_oracle: bool, keep_going: bool):
        super().__init__()
        self.config, self.keep_going = config, keep_going
        self.encoder = ExampleEncoder(config, with_oracle)

    def process(self, chunk: Chunk) -> Iterator:
        checked = check_chunk(chunk, self.config, self.keep_going)
        for letter in checked.dead_letters:
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, letter)
        yield from self.encoder.encode(checked.frame, checked.file_rows, chunk.file_index, chunk.file)


def _write_json(path: str, value) -> None:
    with FileSystems.create(path) as handle:
        handle.write(json.dumps(value).encode())


def _count_to(pcoll, path: str, label: str) -> None:
    _ = (pcoll | f"Count{label}" >> beam.combiners.Count.Globally()
         | f"Save{label}Count" >> beam.Map(lambda n: _write_json(path, n)))


def _split_branch(p, split: str, file: str, out: str, encode: CheckAndEncode, dead_letter: Optional[str]) -> None:
    """Reads, checks and writes one split, its row count and its dead letters."""
    parts = (p | f"Read{split}" >> ReadLongTables([file])
             | f"Check{split}" >> beam.ParDo(encode).with_outputs(DEAD_LETTERS, main="examples"))
    examples = parts.examples
    _ = examples | f"Write{split}" >> beam.io.WriteToTFRecord(os.path.join(out, split, "part"),
                                                             file_name_suffix=SHARD_SUFFIX)
    _count_to(examples, os.path.join(out, ROW_COUNTS, f"{split}.json"), split)
    if dead_letter:
        letters = parts[DEAD_LETTERS]
        _ = (letters | f"Json{split}" >> beam.Map(json.dumps)
             | f"DeadLetters{split}" >> beam.io.WriteToText(os.path.join(dead_letter, split), file_name_suffix=".jsonl"))
        _count_to(letters, os.path.join(out, ROW_COUNTS, f"{split}_dead_letters.json"), f"{split}DeadLetters")


def _analyze(p, config: ExperimentConfig, schema, out: str) -> None:
    """tf.Transform's analysis of the written training shards, read by tfx-bsl's ``TFExampleRecord``."""
    import tensorflow_transform.beam as tft_beam
    from tfx_bsl.public import tfxio

    from grec_tf.preprocessing.analysis import preprocessing_fn

    source = tfxio.TFExampleRecord(os.path.join(out, "train", f"*{SHARD_SUFFIX}"), schema=schema)
    with tft_beam.Context(temp_dir=os.path.join(out, TEMP)):
        batches = p | "ReadTrain" >> source.BeamSource()
        transform_fn = (batches, source.TensorAdapterConfig()) | "Analyze" >> tft_beam.AnalyzeDataset(
            preprocessing_fn(config))
        _ = transform_fn | "WriteTransform" >> tft_beam.WriteTransformFn(os.path.join(out, TRANSFORM_OUTPUT))


def located_data_error(err: BaseException) -> Optional[DataError]:
    """The DataError a pipeline failed on: the error itself, one it wraps, or one a worker process reported
    as text (multi-process runners pass a worker's exception on as a message)."""
    while err is not None:
        if isinstance(err, DataError):
            return err
        match = re.search(r"DataError: (.+?)(?: \[while running|\n|$)", str(err))
        if match:
            return DataError(match.group(1))
        err = err.__cause__ or err.__context__
    return None


def _remove(path: str) -> None:
    if tf.io.gfile.isdir(path):
        tf.io.gfile.rmtree(path)
    elif tf.io.gfile.exists(path):
        tf.io.gfile.remove(path)


def _clear_previous_run(out: str, dead_letter: Optional[str]) -> None:
    """Removes what an earlier run wrote (only the paths this pipeline owns), so no stale shard is read."""
    for name in _OWNED:
        _remove(os.path.join(out, name))
    for split in SPLITS if dead_letter else ():
        for path in tf.io.gfile.glob(os.path.join(dead_letter, f"{split}-*.jsonl")):
            tf.io.gfile.remove(path)


def _write_text(path: str, text: str) -> None:
    with tf.io.gfile.GFile(path, "w") as handle:
        handle.write(text)


def _run(build: Callable[[beam.Pipeline], None], beam_args: Sequence[str]) -> None:
    """Builds and runs one pipeline; a DataError it fails on is raised as such (see :func:`located_data_error`)."""
    try:
        with beam.Pipeline(options=PipelineOptions(list(beam_args))) as p:
            build(p)
    except Exception as err:
        located = located_data_error(err)
        if located is None:
            raise
        raise located from None


def _read_count(out: str, name: str) -> int:
    with tf.io.gfile.GFile(os.path.join(out, ROW_COUNTS, f"{name}.json")) as handle:
        return int(json.load(handle))


def run_preprocessing(config: ExperimentConfig, out: str, beam_args: Sequence[str] = (),
                      dead_letter: Optional[str] = None, default_dir: Optional[str] = None) -> Dict:
    """Preprocesses the data of ``config`` into ``out`` (see the module docstring); returns the manifest.

    ``beam_args``: Beam pipeline options, e.g. ``["--direct_num_workers=2",
    "--direct_running_mode=multi_processing"]``. ``dead_letter``: a folder for rejected rows
    (``{split}-*.jsonl``); without it the first bad row fails the run. ``default_dir``: where the telecom
    data is generated when ``data.path`` is unset.

    Raises:
      DataError: a bad row (file, column and row of the file), a bad file, or an empty split.
    """
    from google.protobuf import text_format

    from grec_tf.preprocessing.analysis import statistics_from_transform_output

    files, origin, split_mode = split_files(config, default_dir)
    with_oracle = ORACLE_COLUMN in table_columns(files["train"])
    schema = example_schema(config, with_oracle)
    _clear_previous_run(out, dead_letter)
    tf.io.gfile.makedirs(out)
    encode = CheckAndEncode(config, with_oracle, keep_going=bool(dead_letter))
    # Two pipelines: a bad row fails the first, cheap one before tf.Transform's large graph is built.
    _run(lambda p: [_split_branch(p, split, files[split], out, encode, dead_letter) for split in SPLITS], beam_args)
    rows = {split: _read_count(out, split) for split in SPLITS}
    for split in SPLITS:
        if rows[split] == 0:
            raise DataError(f"the {split} split has no valid rows; expected at least one", file=files[split])
    _run(lambda p: _analyze(p, config, schema, out), beam_args)
    _remove(os.path.join(out, TEMP))
    _write_text(os.path.join(out, SCHEMA_FILE), text_format.MessageToString(schema))
    statistics = statistics_from_transform_output(reading_config(config, out))
    _write_text(os.path.join(out, STATISTICS_FILE), json.dumps(statistics.to_dict()))
    dead = {split: _read_count(out, f"{split}_dead_letters") for split in SPLITS} if dead_letter else None
    manifest = {"origin": origin, "split_mode": split_mode, "files": files, "rows": rows, "dead_letter_rows": dead,
                "dead_letter_folder": dead_letter, "contract": data_contract(config)}
    _write_text(os.path.join(out, MANIFEST_FILE), json.dumps(manifest, indent=1))
    return manifest
