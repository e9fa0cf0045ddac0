"""The Beam preprocessing pipeline: statistics equal to the pandas path (on the rows it keeps), its output folder,
bad rows failing the run with their file and row or going to the dead letters, and the command line."""
import dataclasses
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from grec_tf.data.feature_statistics import compute_feature_statistics
from grec_tf.errors import DataError
from grec_tf.preprocessing.pipeline import run_preprocessing
from tests.data.conftest import BAD_ROWS, beam_config, write_split_tables, write_tables_with_bad_rows
from tests.tiny_experiment import tiny_impression_frame


def test_two_worker_run_gives_the_pandas_statistics(preprocessed):
    expected = compute_feature_statistics(preprocessed.splits["train"], preprocessed.config)
    with open(os.path.join(preprocessed.out, "statistics.json")) as handle:
        got = json.load(handle)
    assert got["vocabularies"] == expected.vocabularies  # order, ties and the max_vocab cut included
    assert len(got["vocabularies"]["item_id"]) == 6 and got["vocabularies"]["viewed"] == got["vocabularies"]["item_id"]
    assert got["text_vocabularies"] == expected.text_vocabularies
    assert set(got["moments"]) == set(expected.moments) == {"tenure", "price"}
    for name, (mean, variance) in expected.moments.items():
        np.testing.assert_allclose(got["moments"][name], [mean, variance], rtol=1e-6)



def test_two_worker_run_gives_quantile_edges_near_the_pandas_ones(preprocessed):
    """tf.Transform's quantiles are approximate (rank error QUANTILE_EPSILON) and pick data values where numpy
    interpolates, so each pandas edge must have a Beam edge within 1/48 of the rows in rank, not equal."""
    from grec_tf.config import PIECEWISE_LINEAR_BINS

    config = dataclasses.replace(preprocessed.config, model=dataclasses.replace(
        preprocessed.config.model, numerical_embedding="piecewise_linear"))
    expected = compute_feature_statistics(preprocessed.splits["train"], config).quantiles
    with open(os.path.join(preprocessed.out, "statistics.json")) as handle:
        got = json.load(handle)["quantiles"]  # computed whatever the config's numerical_embedding
    assert set(got) == set(expected) == {"tenure", "price"}
    for name, edges in expected.items():
        values = np.sort(preprocessed.splits["train"][name].to_numpy(np.float64))
        beam = np.asarray(got[name])
        assert beam[0] == pytest.approx(values[0], rel=1e-6) and beam[-1] == pytest.approx(values[-1], rel=1e-6)
        assert np.all(np.diff(beam) > 0) and len(beam) >= len(edges) // 2
        rank = lambda x: np.searchsorted(values, x, side="right") / len(values)  # noqa: E731
        nearest = np.min(np.abs(rank(np.asarray(edges))[:, None] - rank(beam)[None, :]), axis=1)
        assert nearest.max() <= 1.0 / PIECEWISE_LINEAR_BINS, name
    from grec_tf.data.feature_statistics import FeatureStatistics
    from grec_tf.models.factory import numerical_spec

    with open(os.path.join(preprocessed.out, "statistics.json")) as handle:  # what training from the folder reads
        statistics = FeatureStatistics.from_dict(json.load(handle))
    assert len(numerical_spec("price", statistics, "piecewise_linear")["edges"]) == len(got["price"])


def test_two_worker_run_gives_the_pandas_tree_edges(preprocessed):
    """Streamed from the shards, every task sentence below the sample cap keeps all its rows, and the trees read the
    same float32 values as the pandas path's: the same edges, up to their float32 round trip through the shards."""
    expected = compute_feature_statistics(preprocessed.splits["train"], preprocessed.config).tree_edges
    with open(os.path.join(preprocessed.out, "statistics.json")) as handle:
        got = json.load(handle)["tree_edges"]  # computed whatever the config's numerical_embedding
    assert set(got) == set(expected) == {"tenure", "price"}
    for name, edges in expected.items():
        values = preprocessed.splits["train"][name].to_numpy(np.float32)
        assert edges[0] == values.min() and edges[-1] == values.max()
        np.testing.assert_allclose(got[name], edges, rtol=1e-6, err_msg=name)


def test_streamed_tree_edges_match_the_pandas_ones_and_honour_the_sample_cap(preprocessed, monkeypatch):
    """The session's ~75 rows a task sentence are too few for leaves of 64 rows: with leaves of 5 the trees split,
    and the streamed sample's thresholds are the pandas path's; a cap of 30 rows a task sentence is honoured."""
    from grec_tf.data import tree_edges as tree_module
    from grec_tf.data.tfrecord_source import reading_config
    from grec_tf.preprocessing import analysis

    monkeypatch.setattr(tree_module, "TREE_MIN_SAMPLES_LEAF", 5)
    train, folder = preprocessed.splits["train"], reading_config(preprocessed.config, preprocessed.out)
    expected = compute_feature_statistics(train, preprocessed.config).tree_edges
    got = analysis._tree_edges(folder)
    for name, edges in expected.items():
        assert len(edges) > 10, name
        np.testing.assert_allclose(got[name], edges, rtol=1e-6, err_msg=name)
    monkeypatch.setattr(tree_module, "TREE_SAMPLE_ROWS", 30)
    values, labels, tasks = analysis._tree_sample(folder, ["tenure", "price"])
    assert np.bincount(tasks).tolist() == [30] * 4  # every task sentence has more than 30 rows
    rows = set(zip(train["tenure"].astype(np.float32), train["price"].astype(np.float32), train["label"]))
    assert set(zip(values[:, 0], values[:, 1], labels.astype(np.int64))) <= rows  # training rows, kept whole
    assert np.array_equal(analysis._tree_sample(folder, ["tenure", "price"])[0], values)  # seeded


def test_output_folder_holds_shards_schema_and_transform_output(preprocessed):
    out, rows = preprocessed.out, preprocessed.manifest["rows"]
    assert rows == {split: len(frame) for split, frame in preprocessed.splits.items()}
    for split in rows:
        assert glob.glob(os.path.join(out, split, "part-*.tfrecord.gz"))
    schema = open(os.path.join(out, "schema.pbtxt")).read()
    for name in ("flow", "use_case", "label", "customer_id", "oracle_p", "viewed", "item_vec"):
        assert f'name: "{name}"' in schema
    import tensorflow_transform as tft

    transform = tft.TFTransformOutput(os.path.join(out, "transform_output"))
    assert os.path.isfile(transform.vocabulary_file_by_name("vocabularies"))
    assert "numerical_moments" in transform.transformed_feature_spec()


def test_a_bad_row_fails_the_run_naming_file_column_and_row(tmp_path):
    write_tables_with_bad_rows(tmp_path / "tables")
    with pytest.raises(DataError) as raised:
        run_preprocessing(beam_config(str(tmp_path / "tables")), str(tmp_path / "out"))
    assert str(raised.value).startswith(f"file {tmp_path / 'tables' / 'train.parquet'}, column 'label', row 7: "
                                        f"label 2; expected 0 or 1")


def test_dead_letters_hold_the_bad_rows_and_the_rest_is_written(preprocessed):
    letters = [json.loads(line) for path in sorted(glob.glob(os.path.join(preprocessed.dead_letter, "train-*.jsonl")))
               for line in open(path)]
    assert sorted((letter["row"], letter["column"]) for letter in letters) == sorted(BAD_ROWS.items())
    assert all(letter["file"].endswith("train.parquet") and "expected" in letter["error"] for letter in letters)
    assert {letter["row"]: letter["values"]["customer_id"] for letter in letters} == \
        {row: int(preprocessed.written["train"].loc[row, "customer_id"]) for row in BAD_ROWS}
    assert preprocessed.manifest["dead_letter_rows"] == {"train": 2, "valid": 0, "test": 0}


def test_command_help_lists_beam_passthrough_without_tensorflow():
    result = subprocess.run([sys.executable, "-c", "import runpy, sys\nsys.argv = ['preprocess', '--help']\n"
                             "try:\n    runpy.run_module('pipelines.preprocess', run_name='__main__')\n"
                             "except SystemExit:\n    pass\nprint('tensorflow' in sys.modules, 'apache_beam' in sys.modules)"],
                            capture_output=True, text=True, timeout=120)
    assert "--dead_letter" in result.stdout and "Beam pipeline options" in result.stdout
    assert result.stdout.split()[-2:] == ["False", "False"], result.stderr[-2000:]


def test_preprocessing_needs_split_files(tmp_path, capsys):
    from pipelines.preprocess import main

    one_file = tmp_path / "all.parquet"
    write_split_tables(tmp_path)["train"].to_parquet(one_file)
    code = main(["--set", "data.source=parquet", "--set", f"data.path={one_file}", "--out", str(tmp_path / "o")])
    assert code == 2
    assert f"file {one_file}: expected a folder with train, valid and test files" in capsys.readouterr().err


def test_csv_chunks_know_their_file_rows_and_errors_name_them(tmp_path):
    from grec_tf.config import parse_config
    from grec_tf.preprocessing.long_tables import read_unit, work_units
    from grec_tf.preprocessing.row_checks import check_chunk

    frame = write_split_tables(tmp_path)["train"][["flow", "use_case", "label", "customer_id", "plan", "tenure"]]
    frame = frame.iloc[:10].copy()
    frame.loc[6, "label"] = 2
    path = tmp_path / "train.csv"
    frame.to_csv(path, index=False)
    config = parse_config({"data": {"source": "csv", "flows": ["AAL", "EUP"], "use_cases": ["CTR", "CVR"]},
                           "features": [{"name": "plan", "kind": "categorical"},
                                        {"name": "tenure", "kind": "numerical"}]})
    (unit,) = work_units(str(path))
    chunks = list(read_unit(unit, chunk_rows=4))
    assert [c.first_row for c in chunks] == [0, 4, 8]
    assert check_chunk(chunks[0], config, keep_going=False).frame.shape == (4, 6)
    with pytest.raises(DataError, match=rf"^file {path}, column 'label', row 6: label 2; expected 0 or 1$"):
        check_chunk(chunks[1], config, keep_going=False)
    kept = check_chunk(chunks[1], config, keep_going=True)
    assert len(kept.frame) == 3 and [letter["row"] for letter in kept.dead_letters] == [6]


def test_impression_keys_are_exact_across_chunks_readers_and_files(tmp_path):
    """A CSV read in chunks of 4 and a Parquet file of row groups of 5 read in chunks of 4, as files 0 and 1:
    each row's key is its file index << 40 plus the file row of its impression's first row in its chunk."""
    from grec_tf.config import parse_config
    from grec_tf.data.feature_arrays import IMPRESSION_KEY
    from grec_tf.preprocessing.examples import FILE_ROW_BITS, example_columns, shard_impression_keys
    import apache_beam as beam
    from apache_beam.testing.util import assert_that, equal_to

    from grec_tf.preprocessing.long_tables import ReadLongTables, read_unit, work_units
    from grec_tf.preprocessing.row_checks import check_chunk

    frame = tiny_impression_frame(12, seed=2)[["flow", "use_case", "label", "customer_id", "plan", "tenure",
                                               "impression"]]
    frame.to_csv(tmp_path / "a.csv", index=False)
    frame.to_parquet(tmp_path / "b.parquet", row_group_size=5)
    config = parse_config({"data": {"source": "csv", "flows": ["AAL", "EUP"], "use_cases": ["CTR", "CVR"]},
                           "features": [{"name": "plan", "kind": "categorical"},
                                        {"name": "tenure", "kind": "numerical"}]})
    files = [str(tmp_path / name) for name in ("a.csv", "b.parquet")]
    keys, places = {}, []
    for index, path in enumerate(files):
        for unit in work_units(path, index):
            for chunk in read_unit(unit, chunk_rows=4):
                places.append((chunk.file, chunk.file_index, chunk.first_row))
                checked = check_chunk(chunk, config, keep_going=False)
                got = shard_impression_keys(example_columns(checked.frame, config, False)[IMPRESSION_KEY],
                                            checked.file_rows, chunk.file_index, chunk.file)
                impression = chunk.frame["impression"].to_numpy()
                first = [int(np.flatnonzero(impression == i)[0]) for i in impression]
                np.testing.assert_array_equal(got, (index << FILE_ROW_BITS) + chunk.first_row + np.array(first))
                keys.setdefault(chunk.file_index, []).extend(got)
    assert len(frame) > frame["impression"].nunique() and len(keys[1]) == len(frame)
    assert not set(keys[0]) & set(keys[1])
    with beam.Pipeline() as p:  # the Beam transform numbers the files and chunks alike
        read = p | ReadLongTables(files, chunk_rows=4) | beam.Map(lambda c: (c.file, c.file_index, c.first_row))
        assert_that(read, equal_to(places))
