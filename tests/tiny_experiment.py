"""A tiny long-format experiment with every feature kind, for fast model and pipeline tests.

The label is planted: P(click) rises with the context category ``plan == "max"``, with the query
word "apple" when the item brand is apple, and with the item vector's first component, so a model
that learns anything reaches AUC well above 0.5 within a few hundred steps.
"""
import numpy as np
import pandas as pd

from grec_tf.config import parse_config

FLOWS = ["AAL", "EUP"]
USE_CASES = ["CTR", "CVR"]

FEATURES = [
    {"name": "plan", "kind": "categorical"},
    {"name": "tenure", "kind": "numerical"},
    {"name": "query", "kind": "text", "max_length": 4},
    {"name": "viewed", "kind": "sequence", "max_length": 5},
    {"name": "item_id", "kind": "item_id", "group": "item"},
    {"name": "brand", "kind": "categorical", "group": "item"},
    {"name": "price", "kind": "numerical", "group": "item"},
    {"name": "item_vec", "kind": "embedding", "group": "item", "dim": 4},
]


def tiny_config(**model):
    raw = {"name": "tiny",
           "data": {"source": "parquet", "flows": FLOWS, "use_cases": USE_CASES, "batch_size": 64, "seed": 1},
           "features": FEATURES,
           "model": {"d_model": 16, "embedding_dim": 8, "expert_hidden": 32, "num_experts": 4, "top_k": 2,
                     "num_heads": 2, "tower_units": [16], "text_encoder": {"vocab_size": 60}, **model},
           "train": {"epochs": 2, "learning_rate": 0.01, "checkpoint_every": 20}}
    return parse_config(raw)


def tiny_frame(rows: int = 512, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    plan = rng.choice(["basic", "plus", "max"], rows)
    brand = rng.choice(["apple", "samsung", "google"], rows)
    wants_apple = rng.random(rows) < 0.5
    query = np.where(rng.random(rows) < 0.4, "", np.where(wants_apple, "apple phone", "cheap case"))
    vec = rng.normal(size=(rows, 4)).astype(np.float32)
    logit = (-1.0 + 1.5 * (plan == "max") + 1.5 * ((query == "apple phone") & (brand == "apple"))
             + 1.0 * vec[:, 0])
    p = 1 / (1 + np.exp(-logit))
    lengths = rng.integers(0, 8, rows)
    items = [f"i{k}" for k in range(20)]
    frame = pd.DataFrame({
        "flow": rng.choice(FLOWS, rows),
        "use_case": rng.choice(USE_CASES, rows),
        "label": (rng.random(rows) < p).astype(np.int64),
        "customer_id": rng.integers(0, 50, rows),
        "plan": plan,
        "tenure": rng.gamma(2.0, 10.0, rows).astype(np.float32),
        "query": query,
        "viewed": [list(rng.choice(items, n)) for n in lengths],
        "item_id": rng.choice(items, rows),
        "brand": brand,
        "price": rng.uniform(50, 1000, rows).astype(np.float32),
        "item_vec": list(vec),
        "oracle_p": p,
    })
    return frame


def tiny_impression_frame(impressions: int = 128, seed: int = 0) -> pd.DataFrame:
    """Long format with several rows per impression: each row of :func:`tiny_frame` is an impression with a
    CTR row and, for about 60% of them, a CVR row with the same features (flow and features repeat, the label
    is drawn per row); rows shuffled so that an impression's rows are not adjacent. ``impression`` numbers
    them."""
    rng = np.random.default_rng(seed + 1)
    base = tiny_frame(impressions, seed).assign(impression=np.arange(impressions))
    converted = base[rng.random(impressions) < 0.6]
    cvr = converted.assign(use_case="CVR", label=(rng.random(len(converted)) < 0.3).astype(np.int64))
    frame = pd.concat([base.assign(use_case="CTR"), cvr])
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
