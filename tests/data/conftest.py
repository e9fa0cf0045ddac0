"""Tiny split long tables of impressions of one or two rows, with two bad rows, preprocessed once per session by
the Beam pipeline in two worker processes with a dead-letter output."""
import copy
from types import SimpleNamespace

import pytest

from grec_tf.config import parse_config
from grec_tf.data.splits import split_frame
from tests.tiny_experiment import FEATURES, tiny_config, tiny_impression_frame

#: a real parallel run of the DirectRunner on this machine
TWO_WORKERS = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]


def beam_config(path: str, epochs: int = 1):
    """The tiny experiment reading the parquet folder ``path``, with a shared vocabulary (viewed items use the
    item ids') cut at 6 ids among ties, so that ranking and cutting are both exercised."""
    raw = tiny_config().to_dict()
    raw["features"] = copy.deepcopy(FEATURES)
    for feature in raw["features"]:
        if feature["name"] == "viewed":
            feature["vocabulary_of"] = "item_id"
        if feature["name"] == "item_id":
            feature["max_vocab"] = 6
    raw["data"]["path"] = path
    raw["train"]["epochs"] = epochs
    return parse_config(raw)


def write_split_tables(folder, impressions: int = 375) -> dict:
    """``{split: frame}`` of a tiny long frame (~1.6 rows an impression, an impression's rows apart, numbered
    in ``impression``) split by customer, each written to ``folder/{split}.parquet``."""
    folder.mkdir(parents=True, exist_ok=True)
    splits = split_frame(tiny_impression_frame(impressions, seed=3), 0.2, 0.2, 0, "customer_id")
    for split, frame in splits.items():
        frame.to_parquet(folder / f"{split}.parquet")
    return splits


BAD_ROWS = {7: "label", 11: "tenure"}  # train rows the session's data spoils, and the column each spoils


def write_tables_with_bad_rows(folder) -> dict:
    """Like :func:`write_split_tables`, with a label 2 at train row 7 and a NaN tenure at train row 11 (the
    frames returned are as written, bad rows included)."""
    splits = write_split_tables(folder)
    train = splits["train"]
    train.loc[7, "label"] = 2
    train.loc[11, "tenure"] = float("nan")
    train.to_parquet(folder / "train.parquet")
    return splits


@pytest.fixture(scope="session")
def preprocessed(tmp_path_factory):
    """The session's Beam run: two worker processes, bad rows sent to the dead letters. ``splits`` holds the
    valid rows only (what the pipeline keeps), ``written`` the tables as written."""
    from grec_tf.preprocessing.pipeline import run_preprocessing

    root = tmp_path_factory.mktemp("beam")
    written = write_tables_with_bad_rows(root / "tables")
    splits = dict(written, train=written["train"].drop(index=list(BAD_ROWS)).reset_index(drop=True))
    config = beam_config(str(root / "tables"))
    out, dead_letter = str(root / "preprocessed"), str(root / "dead_letters")
    manifest = run_preprocessing(config, out, TWO_WORKERS, dead_letter=dead_letter)
    return SimpleNamespace(config=config, splits=splits, written=written, out=out, manifest=manifest,
                           dead_letter=dead_letter, root=root)
