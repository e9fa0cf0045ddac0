"""The embedded telecom dataset: contract, consistency, determinism, planted signal, atomic writes, CLI."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from scipy import sparse
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import LogisticRegression

from grec_tf.data import telecom
from grec_tf.data.telecom import dataset as telecom_dataset
from grec_tf.data.telecom.world import BRANDS
from grec_tf.errors import DataError
from grec_tf.metrics import roc_auc, task_sentence_metrics

REPO = Path(__file__).resolve().parents[2]
SIGNAL_ROWS = 48_000      # impressions generated for the signal tests
SIGNAL_FIT = 12_000       # impressions [0, SIGNAL_FIT) fit the simple models; the rest evaluates them


@pytest.fixture(scope="module")
def tables():
    return telecom.generate_tables(SIGNAL_ROWS, seed=11)


@pytest.fixture(scope="module")
def full(tables):
    return pa.concat_tables([tables[s] for s in telecom.SPLITS])


def _np(table, column):
    return table.column(column).to_numpy()


# ------------------------------------------------------------------------------------------------
# contract
# ------------------------------------------------------------------------------------------------
def test_schema_is_the_contract(tables):
    expected = [
        ("impression_id", pa.int64()), ("customer_id", pa.int64()), ("flow", pa.string()),
        ("use_case", pa.string()), ("label", pa.int64()), ("oracle_p", pa.float64()),
        ("device_os", pa.string()), ("channel", pa.string()), ("region", pa.string()), ("plan", pa.string()),
        ("tenure_months", pa.float32()), ("lines_on_account", pa.float32()), ("monthly_bill", pa.float32()),
        ("days_since_upgrade", pa.float32()), ("search_query", pa.string()),
        ("viewed_pages", pa.list_(pa.string())), ("viewed_items", pa.list_(pa.string())),
        ("item_id", pa.string()), ("item_brand", pa.string()), ("item_category", pa.string()),
        ("item_price", pa.float32()), ("item_rating", pa.float32()), ("item_description", pa.string()),
        ("item_image_vec", pa.list_(pa.float32())), ("item_text_vec", pa.list_(pa.float32())),
    ]
    for split in telecom.SPLITS:
        schema = tables[split].schema
        assert [(f.name, f.type) for f in schema] == expected, split
        for f in schema:
            assert tables[split].column(f.name).null_count == 0, f.name
    t = tables["train"]
    assert set(pc.unique(t.column("flow")).to_pylist()) == {"AAL", "EUP", "NSE"}
    assert set(pc.unique(t.column("use_case")).to_pylist()) == {"CTR", "ATC", "CVR", "CTCVR"}
    assert set(pc.unique(t.column("item_category")).to_pylist()) == {"phone", "tablet", "watch", "accessory"}
    assert set(np.unique(_np(t, "label"))) == {0, 1}
    p = _np(t, "oracle_p")
    assert ((p > 0) & (p < 1)).all()
    for name in telecom.CONTEXT_NUMERICAL + telecom.ITEM_NUMERICAL:
        assert np.isfinite(_np(t, name)).all(), name
    for name in telecom.ITEM_EMBEDDINGS:
        assert (pc.list_value_length(t.column(name)).to_numpy() == 64).all()
    assert pc.all(pc.match_substring_regex(t.column("item_id"), r"^item_\d{4}$")).as_py()
    assert telecom.TASK_SENTENCES == tuple(f"{f}/{u}" for f in ("AAL", "EUP", "NSE")
                                           for u in ("CTR", "ATC", "CVR", "CTCVR"))


def test_pandas_frames_have_contract_dtypes():
    frames = telecom.generate_frames(600, seed=2)
    df = frames["train"]
    assert list(df.columns) == list(telecom.COLUMNS)
    for name in ("impression_id", "customer_id", "label"):
        assert df[name].dtype == np.int64
    assert df["oracle_p"].dtype == np.float64
    for name in telecom.CONTEXT_NUMERICAL + telecom.ITEM_NUMERICAL:
        assert df[name].dtype == np.float32, name
    for name in ("flow", "use_case", "search_query", "item_id", "item_description") + telecom.CONTEXT_CATEGORICAL:
        assert pd.api.types.is_string_dtype(df[name]), name
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 and v.shape == (64,) for v in df["item_image_vec"])
    assert all(isinstance(v, np.ndarray) and len(v) <= 20 for v in df["viewed_items"])


def test_funnel_consistency(full):
    df = full.select(["impression_id", "use_case", "label", "oracle_p"]).to_pandas()
    label = df.pivot(index="impression_id", columns="use_case", values="label")
    prob = df.pivot(index="impression_id", columns="use_case", values="oracle_p")
    assert label[["CTR", "ATC", "CTCVR"]].notna().all().all()
    # CVR rows exist exactly on clicked impressions
    assert (label["CVR"].notna() == (label["CTR"] == 1)).all()
    clicked = label[label["CTR"] == 1]
    assert (label.loc[label["CTCVR"] == 1, ["CTR", "ATC"]] == 1).all().all()  # CTCVR => click and cart
    assert (label.loc[label["ATC"] == 1, "CTR"] == 1).all()                   # cart needs a click
    assert (clicked["CVR"] == clicked["CTCVR"]).all()                          # CVR = CTCVR given click
    # oracle probabilities follow the funnel: p(CTCVR) = p(CTR) * p(CVR | click) <= p(ATC) <= p(CTR)
    pc_ = prob.loc[clicked.index]
    assert np.allclose(pc_["CTCVR"], pc_["CTR"] * pc_["CVR"], rtol=1e-12)
    assert (prob["CTCVR"] <= prob["ATC"]).all() and (prob["ATC"] <= prob["CTR"]).all()
    # sparse conversion
    ctcvr = label["CTCVR"].mean()
    assert 0.002 < ctcvr < 0.02
    assert 0.05 < label["CTR"].mean() < 0.3
    assert clicked["CVR"].mean() < 0.3


def test_rows_of_an_impression_are_contiguous_and_split_80_10_10(tables):
    seen = set()
    counts = {}
    for split in telecom.SPLITS:
        ids = _np(tables[split], "impression_id")
        assert (np.diff(ids) >= 0).all()  # grouped by impression
        uniq = set(np.unique(ids).tolist())
        assert not (uniq & seen)
        seen |= uniq
        counts[split] = len(uniq)
    assert counts == {"train": 38_400, "valid": 4_800, "test": 4_800}
    assert seen == set(range(SIGNAL_ROWS))


def test_search_query_is_often_empty_and_relates_to_the_item(full):
    df = full.filter(pc.equal(full.column("use_case"), "CTR")).select(
        ["search_query", "item_brand", "item_category", "label"]).to_pandas()
    empty = (df["search_query"] == "").mean()
    assert 0.35 < empty < 0.65
    words = df["search_query"].str.split()
    has_brand = np.array([b in w for b, w in zip(df["item_brand"], words)])
    mentions_brand = df["search_query"].str.contains("|".join(BRANDS[:5]))
    other = mentions_brand & ~has_brand
    # a query naming the candidate's brand clicks more than one naming another brand
    assert df["label"][has_brand].mean() > 1.3 * df["label"][other].mean()


def test_sequences_have_variable_length_within_bounds(full):
    ctr = full.filter(pc.equal(full.column("use_case"), "CTR"))
    catalogue = set(pc.unique(full.column("item_id")).to_pylist())
    for name in telecom.SEQUENCE_COLUMNS:
        lengths = pc.list_value_length(ctr.column(name)).to_numpy()
        assert lengths.min() == 0 and lengths.max() <= telecom.MAX_SEQUENCE_LENGTH
        assert len(np.unique(lengths)) >= 12
        assert 0.02 < (lengths == 0).mean() < 0.5
    assert set(pc.unique(pc.list_flatten(ctr.column("viewed_items"))).to_pylist()) <= \
        set(f"item_{i:04d}" for i in range(1000))
    assert len(catalogue) > 100
    pages = set(pc.unique(pc.list_flatten(ctr.column("viewed_pages"))).to_pylist())
    assert {"home", "plans", "cart", "phones", "phones/apple"} <= pages


def test_item_vectors_are_noisy_views_of_one_item_latent(full):
    item_ids = _np(full, "item_id")
    _, first, inverse = np.unique(item_ids, return_index=True, return_inverse=True)
    price = _np(full, "item_price")
    assert (price == price[first][inverse]).all()  # item features are constant per item
    vectors = lambda c: full.column(c).combine_chunks().flatten().to_numpy().reshape(full.num_rows, 64)
    img, txt = vectors("item_image_vec")[first], vectors("item_text_vec")[first]
    assert np.allclose(np.linalg.norm(img, axis=1), 1.0, atol=1e-5)
    # image and text vectors of an item agree through the latent: their Gram matrices correlate
    g_img, g_txt = img @ img.T, txt @ txt.T
    off = ~np.eye(len(img), dtype=bool)
    assert np.corrcoef(g_img[off], g_txt[off])[0, 1] > 0.5


def test_flows_change_price_sensitivity_and_brand_loyalty(full):
    df = full.filter(pc.equal(full.column("use_case"), "CTR")).select(
        ["flow", "oracle_p", "item_price", "item_category", "item_brand", "device_os"]).to_pandas()
    df["logit"] = np.log(df["oracle_p"] / (1 - df["oracle_p"]))
    df["log_price"] = np.log(df["item_price"].astype(np.float64))
    slope, loyalty = {}, {}
    for flow, g in df.groupby("flow"):
        g = g[g["item_category"] == "phone"]
        slope[flow] = np.polyfit(g["log_price"], g["logit"], 1)[0]
        apple = g[g["item_brand"] == "apple"]
        loyalty[flow] = (apple.loc[apple["device_os"] == "ios", "logit"].mean()
                         - apple.loc[apple["device_os"] == "android", "logit"].mean())
    assert slope["NSE"] < slope["AAL"] < slope["EUP"]   # NSE price-sensitive, EUP price-tolerant
    assert loyalty["EUP"] > loyalty["AAL"] > loyalty["NSE"]  # EUP brand-loyal


def test_use_cases_share_structure_but_differ(full):
    df = full.select(["impression_id", "use_case", "oracle_p"]).to_pandas()
    prob = df.pivot(index="impression_id", columns="use_case", values="oracle_p").dropna()  # clicked
    logit = lambda p: np.log(p / (1 - p))
    click = logit(prob["CTR"])
    cart_given_click = logit(prob["ATC"] / prob["CTR"])
    conversion_given_click = logit(prob["CVR"])
    for other in (cart_given_click, conversion_given_click):
        r = np.corrcoef(click, other)[0, 1]
        assert 0.3 < r < 0.95, r  # shared affinity, use-case specific terms


# ------------------------------------------------------------------------------------------------
# planted signal: each feature family alone vs the oracle
# ------------------------------------------------------------------------------------------------
def _one_hot(table, columns):
    blocks = []
    for name in columns:
        codes = pc.dictionary_encode(table.column(name)).combine_chunks().indices.to_numpy()
        blocks.append(sparse.csr_matrix((np.ones(len(codes)), (np.arange(len(codes)), codes))))
    return sparse.hstack(blocks).tocsr()


def _bag(column, n):
    arr = column.combine_chunks()
    codes = pc.dictionary_encode(pc.list_flatten(arr)).indices.to_numpy()
    owner = pc.list_parent_indices(arr).to_numpy()
    return sparse.csr_matrix((np.ones(len(codes)), (owner, codes)), shape=(n, codes.max() + 1))


def _families(t):
    n = t.num_rows
    numeric = lambda cols: np.log1p(np.stack([_np(t, c).astype(np.float64) for c in cols], axis=1))
    query = t.column("search_query").to_pylist()
    hashing = HashingVectorizer(n_features=2 ** 12, token_pattern=r"\S+", alternate_sign=False, norm=None)
    lengths = np.stack([pc.list_value_length(t.column(c)).to_numpy() for c in telecom.SEQUENCE_COLUMNS], 1)
    vec = lambda c: t.column(c).combine_chunks().flatten().to_numpy().reshape(n, -1)
    return {
        "context": sparse.hstack([_one_hot(t, telecom.CONTEXT_CATEGORICAL),
                                  numeric(telecom.CONTEXT_NUMERICAL)]).tocsr(),
        "search text": sparse.hstack([hashing.transform(query),
                                      (np.array(query) == "")[:, None].astype(float)]).tocsr(),
        "sequences": sparse.hstack([_bag(t.column("viewed_pages"), n), _bag(t.column("viewed_items"), n),
                                    lengths / 20.0]).tocsr(),
        "item": sparse.hstack([_one_hot(t, ["item_brand", "item_category"]),
                               np.log(_np(t, "item_price").astype(np.float64))[:, None] - 5.0,
                               _np(t, "item_rating").astype(np.float64)[:, None] - 4.0]).tocsr(),
        "item vectors": np.hstack([vec("item_image_vec"), vec("item_text_vec")]),
    }


def test_every_feature_family_carries_signal_and_the_oracle_beats_them_all(full):
    features = _families(full)
    flow, use_case = _np(full, "flow"), _np(full, "use_case")
    label, oracle = _np(full, "label"), _np(full, "oracle_p")
    fit = _np(full, "impression_id") < SIGNAL_FIT
    results = {}
    for key in telecom.TASK_SENTENCES:
        f, u = key.split("/")
        rows = (flow == f) & (use_case == u)
        train, test = np.flatnonzero(rows & fit), np.flatnonzero(rows & ~fit)
        results[key] = {"oracle": roc_auc(label[test], oracle[test])}
        for name, x in features.items():
            model = LogisticRegression(C=0.1, max_iter=400).fit(x[train], label[train])
            results[key][name] = roc_auc(label[test], model.decision_function(x[test]))
    table = pd.DataFrame(results).T
    print(table.round(3))
    for name in features:
        assert table[name].max() >= 0.55, f"{name} alone carries no signal:\n{table}"
        assert (table["oracle"] > table[name]).all(), f"{name} beats the oracle somewhere:\n{table}"
    # realistic difficulty: the oracle is good, not perfect
    assert table["oracle"].between(0.62, 0.92).all(), table["oracle"]


# ------------------------------------------------------------------------------------------------
# determinism, card, atomic writes, errors
# ------------------------------------------------------------------------------------------------
def test_same_seed_same_data_other_seed_other_data():
    a = telecom.generate_tables(1500, seed=5)
    b = telecom.generate_tables(1500, seed=5)
    c = telecom.generate_tables(1500, seed=6)
    for split in telecom.SPLITS:
        assert a[split].equals(b[split])
    assert not a["train"].equals(c["train"])
    # the world (catalogue) is shared by every seed
    items = lambda t: dict(zip(t.column("item_id").to_pylist(), t.column("item_price").to_pylist()))
    ia, ic = items(a["train"]), items(c["train"])
    assert all(ia[k] == ic[k] for k in set(ia) & set(ic))


def test_write_dataset_card_matches_the_test_split(tmp_path):
    out = tmp_path / "ds"
    card = telecom.write_dataset(out, rows=4000, seed=3)
    assert sorted(os.listdir(out)) == ["card.json", "test.parquet", "train.parquet", "valid.parquet"]
    assert json.loads((out / "card.json").read_text()) == card
    assert card["task_sentences"] == list(telecom.TASK_SENTENCES)
    assert (card["rows"], card["seed"]) == (4000, 3)
    test = pd.read_parquet(out / "test.parquet")
    recomputed = task_sentence_metrics(test, "oracle_p", "customer_id")
    for key in telecom.TASK_SENTENCES:
        for metric in ("auc", "ap", "rows", "positive_rate"):
            stored, value = card["oracle"][key][metric], recomputed[key][metric]
            if stored is None:  # undefined (a single class) is stored as JSON null
                assert np.isnan(value), (key, metric)
            else:
                assert stored == pytest.approx(value, abs=1e-12), (key, metric)
    for split in telecom.SPLITS:
        assert card["splits"][split] == pq.read_metadata(out / f"{split}.parquet").num_rows
    assert card["impressions"] == {"train": 3200, "valid": 400, "test": 400}
    # same as the in-memory tables, byte for byte in the file
    mem = telecom.generate_tables(4000, seed=3)["test"]
    assert pq.read_table(out / "test.parquet").cast(mem.schema).equals(mem)
    # the text table names every task sentence
    text = telecom.format_card(card)
    assert all(k in text for k in telecom.TASK_SENTENCES) and "oracle AUC" in text
    # regenerating with the same arguments writes identical bytes; ensure_dataset reuses it
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert telecom.ensure_dataset(out, 4000, 3) == card
    telecom.write_dataset(out, rows=4000, seed=3)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_writes_are_atomic(tmp_path, monkeypatch):
    out = tmp_path / "ds"
    telecom.write_dataset(out, rows=500, seed=1)
    before = (out / "train.parquet").read_bytes()
    calls = {"n": 0}
    real = telecom_dataset.long_table

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(telecom_dataset, "long_table", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        telecom.write_dataset(out, rows=700, seed=2)
    # the previous dataset is untouched and no temporary folder is left behind
    assert (out / "train.parquet").read_bytes() == before
    assert telecom.read_card(out)["rows"] == 500
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
    calls["n"] = 0
    with pytest.raises(RuntimeError):
        telecom.write_dataset(tmp_path / "fresh", rows=700, seed=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(DataError, match="rows"):
        telecom.generate_tables(5, seed=0)
    with pytest.raises(DataError, match="seed"):
        telecom.generate_tables(100, seed=-1)
    with pytest.raises(DataError, match="unknown flow.*XYZ"):
        telecom.generate_tables(100, seed=0, flows=["AAL", "XYZ"])
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="refusing to overwrite"):
        telecom.write_dataset(precious, rows=100, seed=0)
    assert (precious / "notes.txt").read_text() == "keep me"


def test_subset_of_task_sentences():
    t = telecom.generate_tables(800, seed=0, flows=["EUP"], use_cases=["CTR", "CTCVR"])["train"]
    assert set(pc.unique(t.column("flow")).to_pylist()) == {"EUP"}
    assert set(pc.unique(t.column("use_case")).to_pylist()) == {"CTR", "CTCVR"}


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------
def test_cli_subprocess_writes_dataset_and_prints_card(tmp_path):
    out = tmp_path / "telecom"
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.generate", "--rows", "2000", "--seed", "4", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")})
    assert proc.returncode == 0, proc.stderr
    for key in telecom.TASK_SENTENCES:
        assert key in proc.stdout
    assert "oracle AUC" in proc.stdout and "oracle AP" in proc.stdout
    card = telecom.read_card(out)
    assert (card["rows"], card["seed"]) == (2000, 4)
    assert all((out / f"{s}.parquet").is_file() for s in telecom.SPLITS)


def test_cli_config_defaults_and_flag_precedence(tmp_path, capsys):
    from pipelines.generate import main

    config = tmp_path / "c.yaml"
    config.write_text("data:\n  rows: 900\n  seed: 4\n")
    assert main(["--config", str(config), "--set", "data.seed=9", "--out", str(tmp_path / "a"), "--quiet"]) == 0
    card = telecom.read_card(tmp_path / "a")
    assert (card["rows"], card["seed"]) == (900, 9)
    assert main(["--config", str(config), "--set", "data.seed=9", "--rows", "700", "--seed", "2",
                 "--out", str(tmp_path / "b"), "--quiet"]) == 0
    card = telecom.read_card(tmp_path / "b")
    assert (card["rows"], card["seed"]) == (700, 2)
    capsys.readouterr()
    assert main(["--set", "data.rows=many", "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "data.rows" in err and "integer" in err
    assert main(["--rows", "3", "--out", str(tmp_path / "d")]) == 2
    assert "rows" in capsys.readouterr().err
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()
