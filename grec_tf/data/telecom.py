"""The embedded synthetic telecom dataset (SPEC §7): deterministic, vectorized, any size from a seed.

It mimics the paper's internal setting. A fixed **world** (the item catalogue, item latent vectors,
their CLIP-like image/text vectors and the planted label weights; the same for every seed) is sampled
by **customers** and **sessions** drawn from the seed:

* Customers have a latent taste vector ``u`` (anchored on a preferred brand), a price sensitivity and
  context: ``device_os`` (iOS mostly for Apple lovers), ``region``, ``plan``, ``tenure_months``,
  ``lines_on_account``, ``monthly_bill``, ``days_since_upgrade``. Prospects (no account: plan ``none``,
  numericals 0) only shop in the ``NSE`` flow; existing customers shop in ``AAL`` or ``EUP``.
* A session (= impression) has a flow, a channel, a hidden purchase **intent** and a hidden **wanted**
  item (a brand x category; flows differ in how often the wanted brand is the preferred brand). Its
  ``viewed_items`` / ``viewed_pages`` (0..20, most recent last, more relevant near the end) and its
  optional ``search_query`` (empty for about half the sessions) are noisy views of the wanted brand
  and category and of the intent. The candidate item shown is picked by a simple recommender
  (partly relevant, partly popular).
* Items (phones, tablets, watches, accessories) have a latent vector ``z`` (brand + category +
  individual parts); ``item_image_vec`` and ``item_text_vec`` are noisy unit-norm 64-d projections of
  ``z``; price, rating and a text description complete them.

Planted labels, a click -> add-to-cart -> purchase funnel with a shared affinity ``A``::

    A      = intent + match(candidate, wanted brand/category) + flow brand loyalty * [preferred brand]
             + taste u.z + item appeal + rating - flow price sensitivity * log relative price
             + seen-in-sequence / query-word matches + plan, tenure, lines, upgrade eligibility, channel
    click  ~ Bernoulli(sigmoid(b_click[flow] + A + click terms))             (channel, query, cart pages)
    atc    ~ Bernoulli(sigmoid(b_atc[flow] + 0.35 A + add-to-cart terms))    (intent, price, rating)
    buy    ~ Bernoulli(sigmoid(b_buy[flow] + 0.2 A + purchase terms))       (credit, store, eligibility)

(``A`` is scaled by ``AFFINITY_SCALE``.) The oracle AUC per task sentence is about 0.68-0.73 for
CVR, 0.75-0.80 for CTR and 0.83-0.87 for ATC and CTCVR; CTR is about 15%, CTCVR about 1.4%.

Flows change behaviour: ``NSE`` is price-sensitive and barely brand-loyal, ``EUP`` brand-loyal and
price-tolerant (and buys when eligible for an upgrade), ``AAL`` in between (buys more with more lines).

Long format, one row per (impression, task sentence), rows of an impression contiguous:

* ``CTR``   on every impression: label = click; ``oracle_p`` = p_click.
* ``ATC``   on every impression: label = click and add-to-cart (adding to cart needs a click);
  ``oracle_p`` = p_click * p_atc.
* ``CVR``   only on clicked impressions: label = add-to-cart and purchase given the click (a purchase
  goes through the cart); ``oracle_p`` = p_atc * p_buy.
* ``CTCVR`` on every impression: label = click and add-to-cart and purchase; ``oracle_p`` =
  p_click * p_atc * p_buy.

So a CTCVR positive implies CTR, ATC and CVR positives on the same impression. ``oracle_p`` is the exact
probability the row's label was drawn with (never a model feature): the oracle AUC/AP per task sentence
(:func:`dataset_card`) is the ceiling a model is measured against.

Splits are by impression (80/10/10 in impression order; impressions are i.i.d.), so all rows of an
impression share a split. Everything is vectorized NumPy + Arrow; one million impressions take well
under a minute.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from grec_tf.errors import DataError

__all__ = [
    "FLOWS", "USE_CASES", "TASK_SENTENCES", "SPLITS", "COLUMNS", "SCHEMA",
    "CONTEXT_CATEGORICAL", "CONTEXT_NUMERICAL", "TEXT_COLUMNS", "SEQUENCE_COLUMNS", "ITEM_CATEGORICAL",
    "ITEM_NUMERICAL", "ITEM_EMBEDDINGS", "FEATURE_COLUMNS", "MAX_SEQUENCE_LENGTH", "VECTOR_DIM",
    "generate_tables", "generate_frames", "dataset_card", "write_dataset", "ensure_dataset",
    "read_card", "format_card", "observed_logits", "price_sensitivity_mean",
]

GENERATOR_VERSION = 1
FLOWS: Tuple[str, ...] = ("AAL", "EUP", "NSE")
USE_CASES: Tuple[str, ...] = ("CTR", "ATC", "CVR", "CTCVR")
TASK_SENTENCES: Tuple[str, ...] = tuple(f"{f}/{u}" for f in FLOWS for u in USE_CASES)
SPLITS: Tuple[str, ...] = ("train", "valid", "test")
MAX_SEQUENCE_LENGTH = 20
VECTOR_DIM = 64
LATENT_DIM = 16
WORLD_SEED = 20230421  # the catalogue and planted weights: identical for every dataset seed

CONTEXT_CATEGORICAL = ("device_os", "channel", "region", "plan")
CONTEXT_NUMERICAL = ("tenure_months", "lines_on_account", "monthly_bill", "days_since_upgrade")
TEXT_COLUMNS = ("search_query",)
SEQUENCE_COLUMNS = ("viewed_pages", "viewed_items")
ITEM_CATEGORICAL = ("item_id", "item_brand", "item_category")
ITEM_NUMERICAL = ("item_price", "item_rating")
ITEM_TEXT = ("item_description",)
ITEM_EMBEDDINGS = ("item_image_vec", "item_text_vec")
FEATURE_COLUMNS = (CONTEXT_CATEGORICAL + CONTEXT_NUMERICAL + TEXT_COLUMNS + SEQUENCE_COLUMNS
                   + ITEM_CATEGORICAL + ITEM_NUMERICAL + ITEM_TEXT + ITEM_EMBEDDINGS)

SCHEMA = pa.schema(
    [("impression_id", pa.int64()), ("customer_id", pa.int64()), ("flow", pa.string()),
     ("use_case", pa.string()), ("label", pa.int64()), ("oracle_p", pa.float64())]
    + [(c, pa.string()) for c in CONTEXT_CATEGORICAL]
    + [(c, pa.float32()) for c in CONTEXT_NUMERICAL]
    + [("search_query", pa.string())]
    + [(c, pa.list_(pa.string())) for c in SEQUENCE_COLUMNS]
    + [("item_id", pa.string()), ("item_brand", pa.string()), ("item_category", pa.string()),
       ("item_price", pa.float32()), ("item_rating", pa.float32()), ("item_description", pa.string())]
    + [(c, pa.list_(pa.float32())) for c in ITEM_EMBEDDINGS]
)
#: Column name -> Arrow type, in file order.
COLUMNS: Dict[str, pa.DataType] = {f.name: f.type for f in SCHEMA}

# --------------------------------------------------------------------------------------------------
# The world: catalogue and planted weights (fixed; see WORLD_SEED)
# --------------------------------------------------------------------------------------------------
CATEGORIES = ("phone", "tablet", "watch", "accessory")
CATEGORY_PAGES = ("phones", "tablets", "watches", "accessories")
BRANDS = ("apple", "samsung", "google", "motorola", "oneplus", "garmin", "belkin", "anker", "otterbox")
MAIN_BRANDS = 5  # customers' preferred brand is one of the first five
PREFERRED_BRAND_SHARE = (0.38, 0.30, 0.13, 0.11, 0.08)
# items per (category, brand); 0 = the brand does not make that category
CATALOGUE = {
    "phone": {"apple": 40, "samsung": 45, "google": 25, "motorola": 30, "oneplus": 20},
    "tablet": {"apple": 25, "samsung": 25, "google": 10, "anker": 0},
    "watch": {"apple": 20, "samsung": 20, "google": 12, "garmin": 18},
    "accessory": {"apple": 30, "samsung": 30, "belkin": 35, "anker": 35, "otterbox": 30},
}
CATEGORY_PRICE = {"phone": (700.0, 0.40), "tablet": (450.0, 0.40), "watch": (300.0, 0.35),
                  "accessory": (35.0, 0.55)}
BRAND_PREMIUM = {"apple": 0.25, "samsung": 0.1, "google": 0.0, "motorola": -0.45, "oneplus": -0.2,
                 "garmin": 0.1, "belkin": 0.0, "anker": -0.25, "otterbox": 0.1}
CATEGORY_WORDS = {"phone": ("phone", "smartphone"), "tablet": ("tablet",),
                  "watch": ("watch", "smartwatch"), "accessory": ("case", "charger", "earbuds")}
INTENT_WORDS = ("buy", "deal", "price", "financing", "order")
NOISE_WORDS = ("best", "new", "5g", "128gb", "black", "review", "unlimited", "vs", "cheap", "2024")
FEATURE_WORDS = ("pro camera", "long battery", "compact", "rugged", "premium design", "fast charging",
                 "bright display", "lightweight")

DEVICE_OS = ("ios", "android", "other")
CHANNELS = ("web", "app", "store", "call_center")
CHANNEL_SHARE = (0.36, 0.34, 0.20, 0.10)
REGIONS = ("northeast", "southeast", "midwest", "southwest", "west")
REGION_SHARE = (0.22, 0.24, 0.2, 0.14, 0.2)
PLANS = ("unlimited_premium", "unlimited_plus", "unlimited_basic", "prepaid", "none")
PLAN_SHARE = (0.22, 0.35, 0.27, 0.16)  # existing customers; prospects have plan "none"
GENERIC_PAGES = ("home", "plans", "support", "account", "search", "trade-in", "coverage")
INTENT_PAGES = ("deals", "cart", "checkout")
FLOW_PAGES = ("add-a-line", "upgrade", "switch")  # per flow AAL, EUP, NSE

# planted weights
FLOW_WANTS_CATEGORY = np.array([[0.55, 0.15, 0.20, 0.10],   # AAL: phone, tablet, watch, accessory
                                [0.68, 0.10, 0.10, 0.12],   # EUP
                                [0.80, 0.07, 0.05, 0.08]])  # NSE
FLOW_LOYALTY_WANT = np.array([0.6, 0.8, 0.35])   # P(wanted brand = preferred brand)
FLOW_LOYALTY = np.array([0.5, 0.9, 0.1])         # affinity bonus for the preferred brand
FLOW_PRICE_SENS = np.array([0.55, 0.25, 1.0])    # affinity penalty per unit of log relative price
B_CLICK = np.array([-3.45, -3.25, -3.55])
B_ATC = np.array([-1.75, -1.6, -1.95])
B_BUY = np.array([-1.85, -2.1, -1.6])
PLAN_EFFECT = np.array([0.25, 0.1, 0.0, -0.3, 0.0])    # affinity
PLAN_CREDIT = np.array([0.3, 0.15, 0.0, -0.7, -0.2])   # purchase
CHANNEL_CLICK = np.array([0.0, 0.25, 0.1, -0.2])
CHANNEL_BUY = np.array([0.0, 0.1, 0.6, 0.3])
AFFINITY_SCALE = 0.6
AFFINITY_CENTER = np.array([0.0, 0.0, 0.0])  # per flow: keeps base rates in the B_* intercepts
ATC_SHARE = 0.35
BUY_SHARE = 0.2
ATC_INTENT = 0.3
# hidden terms of the affinity (weights) and the spread of the customer-level noises
INTENT_WEIGHT = 0.9
WANTED_BRAND_WEIGHT = 0.8
WANTED_CATEGORY_WEIGHT = 0.5
TASTE_WEIGHT = 0.45
TASTE_NOISE_SD = 0.8
PRICE_SENS_NOISE_SD = 0.25
CUSTOMER_OFFSET_SD = 0.3

# the observation model: how the hidden intent / wanted brand and category show in the features
DEVICE_OS_CDF = {"apple": (0.85, 0.98), "other": (0.12, 0.97)}  # P(ios), P(ios or android) by preferred brand
CANDIDATE_FROM_POOL = 0.25      # candidate from the wanted brand x category, else ...
CANDIDATE_FROM_CATEGORY = 0.25  # ... from the wanted category, else a popularity draw
VIEWED_ITEMS_LOG_RATE = (1.2, 0.4)   # length = min(1 + Poisson(exp(a + b intent)), MAX_SEQUENCE_LENGTH)
VIEWED_PAGES_LOG_RATE = (1.35, 0.35)
VIEWED_ITEM_WANTED = (0.15, 0.45)    # P(from the wanted pool) = a + b recency (1 = most recent)
VIEWED_ITEM_PREFERRED = 0.2          # P(from the preferred brand); else a popularity draw
PAGE_WANTED = (0.12, 0.25)           # P(wanted brand x category page) = a + b recency
PAGE_CATEGORY = 0.12                 # P(wanted category page)
PAGE_FLOW = 0.08                     # P(the flow's page)
PAGE_INTENT = (0.45, 2.0, -1.5, 0.5)  # P(deals/cart/checkout) = a sigmoid(b intent + c) (d + recency)
HAS_QUERY = (0.05, 0.5)              # P(query) = sigmoid(a + b intent + HAS_QUERY_CHANNEL[channel])
HAS_QUERY_CHANNEL = (0.35, 0.45, -1.3, -1.6)
QUERY_BRAND_KEEP = 0.6               # the query names the wanted brand
QUERY_NOISE_BRAND = 0.06             # ... or, overriding that, a uniform main brand
QUERY_CATEGORY_KEEP = 0.7            # the query names a word of the wanted category
QUERY_INTENT_WORD = (1.6, -1.2)      # P(an intent word) = sigmoid(a intent + b)


@dataclass(frozen=True)
class _World:
    n_items: int
    brand: np.ndarray          # [I] index into BRANDS
    category: np.ndarray       # [I] index into CATEGORIES
    latent: np.ndarray         # [I, K]
    appeal: np.ndarray         # [I] standardized main effect of the latent
    price: np.ndarray          # [I] float32
    rating: np.ndarray         # [I] float32
    log_rel_price: np.ndarray  # [I] log(price / category reference price)
    popularity_cdf: np.ndarray  # [I]
    brand_latent: np.ndarray   # [B, K]
    pool_order: np.ndarray     # items sorted by (brand, category)
    pool_start: np.ndarray     # [B, C]
    pool_size: np.ndarray      # [B, C]
    cat_order: np.ndarray      # items sorted by category
    cat_start: np.ndarray      # [C]
    cat_size: np.ndarray       # [C]
    brand_order: np.ndarray    # items sorted by brand
    brand_start: np.ndarray    # [B]
    brand_size: np.ndarray     # [B]
    cat_brand_cdf: np.ndarray  # [C, B] brand choice given the category (by catalogue share)
    table: pa.Table            # item columns, one row per item
    page_vocab: Tuple[str, ...]
    brand_cat_page: np.ndarray  # [B, C] page index ("phones/apple"), -1 if none
    taste_scale: float


_WORLD: Optional[_World] = None


def _world() -> _World:
    global _WORLD
    if _WORLD is None:
        _WORLD = _build_world()
    return _WORLD


def _build_world() -> _World:
    rng = np.random.default_rng(WORLD_SEED)
    k = LATENT_DIM
    brand_latent = rng.standard_normal((len(BRANDS), k)) * 0.9
    cat_latent = rng.standard_normal((len(CATEGORIES), k)) * 0.6
    brands, cats = [], []
    for c, cat in enumerate(CATEGORIES):
        for brand, count in CATALOGUE[cat].items():
            brands += [BRANDS.index(brand)] * count
            cats += [c] * count
    brand = np.array(brands, dtype=np.int64)
    category = np.array(cats, dtype=np.int64)
    n = brand.shape[0]
    perm = rng.permutation(n)  # item ids do not reveal brand or category
    brand, category = brand[perm], category[perm]
    individual = rng.standard_normal((n, k)) * 0.8
    latent = brand_latent[brand] + cat_latent[category] + individual
    direction = rng.standard_normal(k)
    direction /= np.linalg.norm(direction)
    appeal = individual @ direction
    appeal = (appeal - appeal.mean()) / appeal.std()

    ref = np.array([CATEGORY_PRICE[c][0] for c in CATEGORIES])
    spread = np.array([CATEGORY_PRICE[c][1] for c in CATEGORIES])
    premium = np.array([BRAND_PREMIUM[b] for b in BRANDS])
    log_price = np.log(ref[category]) + premium[brand] + 0.15 * appeal + spread[category] * rng.standard_normal(n)
    price = np.round(np.exp(log_price), 0) - 0.01
    price = np.maximum(price, 4.99)
    log_rel_price = np.log(price) - np.log(ref[category])
    quality = rng.standard_normal(n)
    rating = np.clip(np.round(4.0 + 0.25 * appeal + 0.3 * quality, 1), 1.0, 5.0)
    popularity = np.exp(0.6 * appeal + 0.7 * rng.standard_normal(n))
    popularity_cdf = np.cumsum(popularity) / popularity.sum()

    # CLIP-like vectors: noisy projections of the latent, unit norm
    def project(noise: float) -> np.ndarray:
        proj = rng.standard_normal((k, VECTOR_DIM)) / math.sqrt(k)
        vec = latent @ proj + noise * rng.standard_normal((n, VECTOR_DIM))
        return (vec / np.linalg.norm(vec, axis=1, keepdims=True)).astype(np.float32)

    image_vec = project(0.45)
    text_vec = project(0.35)

    def grouped(key: np.ndarray, shape: Tuple[int, ...]):
        order = np.argsort(key, kind="stable")
        size = np.bincount(key, minlength=int(np.prod(shape)))
        start = np.concatenate([[0], np.cumsum(size)[:-1]])
        return order, start.reshape(shape), size.reshape(shape)

    nb, nc = len(BRANDS), len(CATEGORIES)
    pool_order, pool_start, pool_size = grouped(brand * nc + category, (nb, nc))
    cat_order, cat_start, cat_size = grouped(category, (nc,))
    brand_order, brand_start, brand_size = grouped(brand, (nb,))
    cat_brand = pool_size.T.astype(np.float64)  # [C, B]
    cat_brand_cdf = np.cumsum(cat_brand, axis=1) / cat_brand.sum(axis=1, keepdims=True)

    pages = list(GENERIC_PAGES) + list(INTENT_PAGES) + list(FLOW_PAGES) + list(CATEGORY_PAGES)
    brand_cat_page = np.full((nb, nc), -1, dtype=np.int64)
    for c in range(nc):
        for b in range(nb):
            if pool_size[b, c]:
                brand_cat_page[b, c] = len(pages)
                pages.append(f"{CATEGORY_PAGES[c]}/{BRANDS[b]}")

    # descriptions: brand, series, category, and the item's two strongest latent features
    series = {"apple": "i", "samsung": "Galaxy ", "google": "Pixel ", "motorola": "Moto ",
              "oneplus": "OnePlus ", "garmin": "Forerunner ", "belkin": "Boost ", "anker": "Power ",
              "otterbox": "Defender "}
    feature_score = individual[:, :len(FEATURE_WORDS)]
    top = np.argsort(-feature_score, axis=1)[:, :2]
    number = rng.integers(2, 16, n)
    descriptions = []
    for i in range(n):
        b, c = BRANDS[brand[i]], CATEGORIES[category[i]]
        tier = "budget" if log_rel_price[i] < -0.3 else ("flagship" if log_rel_price[i] > 0.3 else "")
        words = [b.capitalize(), f"{series[b]}{number[i]}", c]
        desc = " ".join(words) + (f", {tier}" if tier else "")
        desc += f", {FEATURE_WORDS[top[i, 0]]} and {FEATURE_WORDS[top[i, 1]]}"
        descriptions.append(desc)

    def vec_array(vec: np.ndarray) -> pa.Array:
        offsets = pa.array(np.arange(0, n * VECTOR_DIM + 1, VECTOR_DIM, dtype=np.int32))
        return pa.ListArray.from_arrays(offsets, pa.array(vec.reshape(-1)))

    table = pa.table({
        "item_id": pa.array([f"item_{i:04d}" for i in range(n)], pa.string()),
        "item_brand": pa.array([BRANDS[b] for b in brand], pa.string()),
        "item_category": pa.array([CATEGORIES[c] for c in category], pa.string()),
        "item_price": pa.array(price.astype(np.float32)),
        "item_rating": pa.array(rating.astype(np.float32)),
        "item_description": pa.array(descriptions, pa.string()),
        "item_image_vec": vec_array(image_vec),
        "item_text_vec": vec_array(text_vec),
    })
    # scale of u.z for a typical customer so the taste term is roughly standardized
    taste_scale = float(np.sqrt(k) * 1.35)
    return _World(n, brand, category, latent, appeal, price.astype(np.float32), rating.astype(np.float32),
                  log_rel_price, popularity_cdf, brand_latent, pool_order, pool_start, pool_size,
                  cat_order, cat_start, cat_size, brand_order, brand_start, brand_size, cat_brand_cdf,
                  table, tuple(pages), brand_cat_page, taste_scale)


# --------------------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------------------
def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _choice(rng: np.random.Generator, cdf: np.ndarray, size: int) -> np.ndarray:
    """Index drawn from a 1-d CDF, vectorized."""
    cdf = np.asarray(cdf, dtype=np.float64)
    return np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), cdf.shape[0] - 1)


def _choice_rows(u: np.ndarray, cdf_rows: np.ndarray) -> np.ndarray:
    """Index drawn from a per-row CDF ``[n, m]`` given uniforms ``u [n]``."""
    return np.minimum((cdf_rows <= u[:, None]).sum(axis=1), cdf_rows.shape[1] - 1)


def _from_pool(u: np.ndarray, order: np.ndarray, start: np.ndarray, size: np.ndarray) -> np.ndarray:
    """A uniform member of each row's pool (``start``/``size`` per row; sizes must be > 0)."""
    return order[start + np.minimum((u * size).astype(np.int64), size - 1)]


@dataclass
class _Impressions:
    n: int
    customer: np.ndarray
    flow: np.ndarray
    arrays: Dict[str, np.ndarray]      # impression-level columns (numpy)
    item: np.ndarray                   # candidate item index
    query_vocab: List[str]
    query_code: np.ndarray             # index into query_vocab
    seq: Dict[str, Tuple[np.ndarray, np.ndarray]]  # name -> (offsets [n+1], value codes)
    click: np.ndarray
    atc: np.ndarray
    buy: np.ndarray
    p_click: np.ndarray
    p_atc: np.ndarray
    p_buy: np.ndarray


def _sequences(n, lengths) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    owner = np.repeat(np.arange(n), lengths)
    position = np.arange(offsets[-1]) - offsets[owner]
    recency = (position + 1) / np.maximum(lengths[owner], 1)  # 1.0 = most recent
    return offsets, owner, recency


def price_sensitivity_mean(plan: np.ndarray) -> np.ndarray:
    """A customer's price sensitivity given the plan index (prepaid more, premium less); the customer's
    own sensitivity adds ``PRICE_SENS_NOISE_SD`` x N(0, 1)."""
    return 0.35 * (plan == 3) - 0.25 * (plan == 0)


def observed_logits(flow: np.ndarray, channel: np.ndarray, plan: np.ndarray, device: np.ndarray,
                    tenure: np.ndarray, lines: np.ndarray, days_upgrade: np.ndarray, has_query: np.ndarray,
                    item: np.ndarray, frac_brand: np.ndarray, seen_same: np.ndarray, q_brand: np.ndarray,
                    q_cat: np.ndarray, cart_pages: np.ndarray, sens: np.ndarray) -> np.ndarray:
    """``[n, 3]`` click / add-to-cart / purchase logits of the planted model without its hidden terms.

    Every input is per impression (``[n]``; indices into FLOWS, CHANNELS, PLANS, DEVICE_OS and the
    catalogue, or the candidate's matches with the viewed items and the query). ``sens`` is the price
    sensitivity (flow's plus customer's): :func:`_simulate` passes the customer's own, the Bayes ceiling
    its mean given the plan. The hidden terms - intent, wanted brand/category, preferred brand, taste
    and the customer offset - enter as ``AFFINITY_SCALE x hidden`` times (1, ATC_SHARE, BUY_SHARE),
    plus ``ATC_INTENT x intent`` for add-to-cart.
    """
    w = _world()
    rating_z = (w.rating[item] - 4.0) / 0.4
    log_rel = w.log_rel_price[item]
    eligible = _sigmoid((days_upgrade - 700.0) / 120.0) * (flow == 1)
    ctx = (PLAN_EFFECT[plan] - 0.12 * np.log1p(tenure) / np.log(100.0) * (flow != 2)
           + 0.15 * (lines - 2.0) * (flow == 0) + 0.6 * eligible + 0.1 * (device == 0))
    affinity = AFFINITY_SCALE * (0.4 * w.appeal[item] + 0.25 * rating_z - sens * log_rel
                                 + 0.4 * frac_brand + 0.35 * seen_same + 0.35 * q_brand + 0.25 * q_cat
                                 + ctx) - AFFINITY_CENTER[flow]
    click = B_CLICK[flow] + affinity + CHANNEL_CLICK[channel] + 0.25 * has_query + 0.25 * cart_pages
    atc = B_ATC[flow] + ATC_SHARE * affinity - 0.4 * sens * log_rel + 0.2 * rating_z + 0.3 * cart_pages
    buy = (B_BUY[flow] + BUY_SHARE * affinity + PLAN_CREDIT[plan] + CHANNEL_BUY[channel]
           - 0.5 * sens * log_rel + 0.8 * eligible + 0.25 * (lines >= 3) * (flow == 0)
           + 0.15 * np.log1p(tenure) / np.log(100.0))
    return np.stack([click, atc, buy], axis=1)


def _simulate(n: int, seed: int) -> _Impressions:
    w = _world()
    rng = np.random.default_rng([seed, GENERATOR_VERSION])
    nb, nc = len(BRANDS), len(CATEGORIES)

    # customers ---------------------------------------------------------------------------------
    n_cust = max(20, n // 40)  # ~40 sessions per customer on average (GAUC groups)
    prospect = rng.random(n_cust) < 0.25
    pref = _choice(rng, np.cumsum(PREFERRED_BRAND_SHARE) / sum(PREFERRED_BRAND_SHARE), n_cust)
    taste = w.brand_latent[pref] + TASTE_NOISE_SD * rng.standard_normal((n_cust, LATENT_DIM))
    apple = pref == 0
    u = rng.random(n_cust)
    (a_ios, a_android), (o_ios, o_android) = DEVICE_OS_CDF["apple"], DEVICE_OS_CDF["other"]
    device = np.where(apple, np.where(u < a_ios, 0, np.where(u < a_android, 1, 2)),
                      np.where(u < o_ios, 0, np.where(u < o_android, 1, 2)))
    region = _choice(rng, np.cumsum(REGION_SHARE) / sum(REGION_SHARE), n_cust)
    plan = np.where(prospect, 4, _choice(rng, np.cumsum(PLAN_SHARE) / sum(PLAN_SHARE), n_cust))
    tenure = np.where(prospect, 0.0, np.clip(np.round(rng.gamma(1.6, 28.0, n_cust)), 1, 300))
    lines = np.where(prospect, 0.0, np.minimum(1 + rng.poisson(1.3, n_cust), 10)).astype(np.float64)
    plan_mult = np.array([1.6, 1.3, 1.0, 0.8, 0.0])[plan]
    bill = np.where(prospect, 0.0,
                    np.round(np.maximum(15.0, 32.0 * lines * plan_mult + 8.0 * rng.standard_normal(n_cust)), 2))
    days_upgrade = np.where(prospect, 0.0,
                            np.round(rng.random(n_cust) * np.minimum(tenure * 30.4, 1500.0)))
    price_sens = price_sensitivity_mean(plan) + PRICE_SENS_NOISE_SD * rng.standard_normal(n_cust)
    cust_offset = CUSTOMER_OFFSET_SD * rng.standard_normal(n_cust)
    activity = rng.gamma(2.0, 1.0, n_cust)

    # sessions ----------------------------------------------------------------------------------
    cust = _choice(rng, np.cumsum(activity) / activity.sum(), n)
    flow = np.where(prospect[cust], 2, (rng.random(n) >= 0.45).astype(np.int64))
    channel = _choice(rng, np.cumsum(CHANNEL_SHARE), n)
    intent = rng.standard_normal(n)
    want_cat = _choice_rows(rng.random(n), np.cumsum(FLOW_WANTS_CATEGORY, axis=1)[flow])
    pref_s = pref[cust]
    loyal = (rng.random(n) < FLOW_LOYALTY_WANT[flow]) & (w.pool_size[pref_s, want_cat] > 0)
    other_brand = _choice_rows(rng.random(n), w.cat_brand_cdf[want_cat])
    want_brand = np.where(loyal, pref_s, other_brand)

    # candidate: relevant (wanted brand x category), same category, or popular
    r = rng.random(n)
    u = rng.random(n)
    from_pool = _from_pool(u, w.pool_order, w.pool_start[want_brand, want_cat], w.pool_size[want_brand, want_cat])
    from_cat = _from_pool(u, w.cat_order, w.cat_start[want_cat], w.cat_size[want_cat])
    popular = _choice(rng, w.popularity_cdf, n)
    item = np.where(r < CANDIDATE_FROM_POOL, from_pool,
                    np.where(r < CANDIDATE_FROM_POOL + CANDIDATE_FROM_CATEGORY, from_cat, popular))

    # viewed items (0..20, most recent last; relevance grows towards the end)
    zero = rng.random(n) < np.array([0.15, 0.10, 0.35])[flow]
    rate = np.exp(VIEWED_ITEMS_LOG_RATE[0] + VIEWED_ITEMS_LOG_RATE[1] * intent)
    length = np.minimum(1 + rng.poisson(rate), MAX_SEQUENCE_LENGTH)
    length = np.where(zero, 0, length)
    off_i, own, rec = _sequences(n, length)
    m = own.shape[0]
    r = rng.random(m)
    u = rng.random(m)
    p_rel = VIEWED_ITEM_WANTED[0] + VIEWED_ITEM_WANTED[1] * rec
    wb, wc, pb = want_brand[own], want_cat[own], pref_s[own]
    seen_items = np.where(
        r < p_rel, _from_pool(u, w.pool_order, w.pool_start[wb, wc], w.pool_size[wb, wc]),
        np.where(r < p_rel + VIEWED_ITEM_PREFERRED, _from_pool(u, w.brand_order, w.brand_start[pb], w.brand_size[pb]),
                 _choice(rng, w.popularity_cdf, m)))

    # viewed pages (0..20)
    zero = rng.random(n) < 0.08
    rate = np.exp(VIEWED_PAGES_LOG_RATE[0] + VIEWED_PAGES_LOG_RATE[1] * intent)
    p_length = np.minimum(1 + rng.poisson(rate), MAX_SEQUENCE_LENGTH)
    p_length = np.where(zero, 0, p_length)
    off_p, own_p, rec_p = _sequences(n, p_length)
    m = own_p.shape[0]
    r = rng.random(m)
    u = rng.random(m)
    wb, wc, fl = want_brand[own_p], want_cat[own_p], flow[own_p]
    t1 = PAGE_WANTED[0] + PAGE_WANTED[1] * rec_p      # wanted brand x category page
    t2 = t1 + PAGE_CATEGORY                         # wanted category page
    t3 = t2 + PAGE_FLOW                             # flow page
    share, slope, bias, floor = PAGE_INTENT
    t4 = t3 + share * _sigmoid(slope * intent[own_p] + bias) * (floor + rec_p)  # deals / cart / checkout
    n_gen, n_int = len(GENERIC_PAGES), len(INTENT_PAGES)
    base_flow = n_gen + n_int
    base_cat = base_flow + len(FLOW_PAGES)
    page = np.select(
        [r < t1, r < t2, r < t3, r < t4],
        [w.brand_cat_page[wb, wc], base_cat + wc, base_flow + fl,
         n_gen + np.minimum((u * n_int).astype(np.int64), n_int - 1)],
        default=np.minimum((u * n_gen).astype(np.int64), n_gen - 1))

    # search query ------------------------------------------------------------------------------
    has_query = rng.random(n) < _sigmoid(HAS_QUERY[0] + HAS_QUERY[1] * intent + np.array(HAS_QUERY_CHANNEL)[channel])
    brand_slot = np.where(rng.random(n) < QUERY_BRAND_KEEP, want_brand + 1, 0)
    noise_brand = rng.random(n) < QUERY_NOISE_BRAND
    brand_slot = np.where(noise_brand, 1 + rng.integers(0, MAIN_BRANDS, n), brand_slot)
    cat_words = [(c, wi) for c in range(nc) for wi in range(len(CATEGORY_WORDS[CATEGORIES[c]]))]
    cat_word_start = np.array([sum(len(CATEGORY_WORDS[CATEGORIES[j]]) for j in range(c)) for c in range(nc)])
    cat_word_count = np.array([len(CATEGORY_WORDS[c]) for c in CATEGORIES])
    cat_word = cat_word_start[want_cat] + np.minimum((rng.random(n) * cat_word_count[want_cat]).astype(np.int64),
                                                     cat_word_count[want_cat] - 1)
    cat_slot = np.where(rng.random(n) < QUERY_CATEGORY_KEEP, cat_word + 1, 0)
    intent_slot = np.where(rng.random(n) < _sigmoid(QUERY_INTENT_WORD[0] * intent + QUERY_INTENT_WORD[1]),
                           1 + rng.integers(0, len(INTENT_WORDS), n), 0)
    noise1 = np.where(rng.random(n) < 0.35, 1 + rng.integers(0, len(NOISE_WORDS), n), 0)
    noise2 = np.where(rng.random(n) < 0.2, 1 + rng.integers(0, len(NOISE_WORDS), n), 0)
    swap = rng.random(n) < 0.3
    empty = (brand_slot == 0) & (cat_slot == 0) & (intent_slot == 0) & (noise1 == 0) & (noise2 == 0)
    cat_slot = np.where(empty, cat_word + 1, cat_slot)
    sizes = [nb + 1, len(cat_words) + 1, len(INTENT_WORDS) + 1, len(NOISE_WORDS) + 1, len(NOISE_WORDS) + 1, 2]
    code = np.zeros(n, dtype=np.int64)
    for slot, size in zip([brand_slot, cat_slot, intent_slot, noise1, noise2, swap.astype(np.int64)], sizes):
        code = code * size + slot
    code = np.where(has_query, code + 1, 0)  # 0 = empty query
    uniq, query_code = np.unique(code, return_inverse=True)
    vocab = []
    for c in uniq.tolist():
        if c == 0:
            vocab.append("")
            continue
        c -= 1
        parts = []
        for size in reversed(sizes):
            parts.append(c % size)
            c //= size
        sw, n2, n1, it, cw, bs = parts
        words = [BRANDS[bs - 1] if bs else "", CATEGORY_WORDS[CATEGORIES[cat_words[cw - 1][0]]][cat_words[cw - 1][1]]
                 if cw else ""]
        if sw:
            words.reverse()
        words = ([INTENT_WORDS[it - 1]] if it else []) + words + \
                ([NOISE_WORDS[n1 - 1]] if n1 else []) + ([NOISE_WORDS[n2 - 1]] if n2 and n2 != n1 else [])
        vocab.append(" ".join(x for x in words if x))

    # planted labels ----------------------------------------------------------------------------
    ib, ic = w.brand[item], w.category[item]
    m_brand = (ib == want_brand).astype(np.float64)
    m_cat = (ic == want_cat).astype(np.float64)
    loyal_item = (ib == pref_s).astype(np.float64)
    taste_term = np.einsum("nk,nk->n", taste[cust], w.latent[item]) / w.taste_scale
    sens = FLOW_PRICE_SENS[flow] + price_sens[cust]
    # sequence and query matches with the candidate (observable)
    seen_brand = np.bincount(own, weights=(w.brand[seen_items] == ib[own]), minlength=n)
    seen_same = np.bincount(own, weights=(seen_items == item[own]), minlength=n) > 0
    frac_brand = seen_brand / np.maximum(length, 1)
    q_brand = has_query & (brand_slot == ib + 1)
    q_cat_of_slot = np.array([-1] + [c for c, _ in cat_words])
    q_cat = has_query & (q_cat_of_slot[cat_slot] == ic)
    cart_pages = np.bincount(own_p, weights=(page >= n_gen + 1) & (page < n_gen + n_int), minlength=n) > 0
    observed = observed_logits(flow, channel, plan[cust], device[cust], tenure[cust], lines[cust],
                               days_upgrade[cust], has_query, item, frac_brand, seen_same, q_brand, q_cat,
                               cart_pages, sens)
    hidden = (INTENT_WEIGHT * intent + WANTED_BRAND_WEIGHT * m_brand + WANTED_CATEGORY_WEIGHT * m_cat
              + FLOW_LOYALTY[flow] * loyal_item + TASTE_WEIGHT * taste_term + cust_offset[cust])
    logit_click = observed[:, 0] + AFFINITY_SCALE * hidden
    logit_atc = observed[:, 1] + ATC_SHARE * AFFINITY_SCALE * hidden + ATC_INTENT * intent
    logit_buy = observed[:, 2] + BUY_SHARE * AFFINITY_SCALE * hidden
    p_click, p_atc, p_buy = _sigmoid(logit_click), _sigmoid(logit_atc), _sigmoid(logit_buy)
    click = rng.random(n) < p_click
    atc = rng.random(n) < p_atc
    buy = rng.random(n) < p_buy

    arrays = {
        "customer_id": cust.astype(np.int64),
        "device_os": device[cust], "channel": channel, "region": region[cust], "plan": plan[cust],
        "tenure_months": tenure[cust].astype(np.float32), "lines_on_account": lines[cust].astype(np.float32),
        "monthly_bill": bill[cust].astype(np.float32), "days_since_upgrade": days_upgrade[cust].astype(np.float32),
    }
    return _Impressions(n, cust, flow, arrays, item, vocab, query_code.reshape(-1).astype(np.int64),
                        {"viewed_items": (off_i, seen_items), "viewed_pages": (off_p, page)},
                        click, atc, buy, p_click, p_atc, p_buy)


# --------------------------------------------------------------------------------------------------
# Long format
# --------------------------------------------------------------------------------------------------
_CATEGORICAL_VOCAB = {"device_os": DEVICE_OS, "channel": CHANNELS, "region": REGIONS, "plan": PLANS}


def _split_bounds(n: int) -> Dict[str, Tuple[int, int]]:
    n_train = n * 8 // 10
    n_valid = n // 10
    return {"train": (0, n_train), "valid": (n_train, n_train + n_valid), "test": (n_train + n_valid, n)}


def _row_index(imp: _Impressions, lo: int, hi: int) -> Tuple[np.ndarray, np.ndarray]:
    """Rows of impressions [lo, hi): (impression index, use-case index), CVR only when clicked."""
    clicked = imp.click[lo:hi]
    per = 3 + clicked.astype(np.int64)
    owner = np.repeat(np.arange(lo, hi), per)
    start = np.concatenate([[0], np.cumsum(per)[:-1]])
    k = np.arange(owner.shape[0]) - np.repeat(start, per)
    use_case = np.where(clicked[owner - lo], k, np.array([0, 1, 3])[np.minimum(k, 2)])
    return owner, use_case


def _labels(imp: _Impressions, owner: np.ndarray, use_case: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    c, a, b = imp.click[owner], imp.atc[owner], imp.buy[owner]
    pc_, pa_, pb_ = imp.p_click[owner], imp.p_atc[owner], imp.p_buy[owner]
    label = np.select([use_case == 0, use_case == 1, use_case == 2], [c, c & a, a & b], default=c & a & b)
    oracle = np.select([use_case == 0, use_case == 1, use_case == 2], [pc_, pc_ * pa_, pa_ * pb_],
                       default=pc_ * pa_ * pb_)
    return label.astype(np.int64), oracle.astype(np.float64)


def _strings(vocab: Sequence[str], codes: np.ndarray) -> pa.Array:
    return pc.take(pa.array(list(vocab), pa.string()), pa.array(codes, pa.int64()))


def _sequence_array(offsets: np.ndarray, codes: np.ndarray, vocab: Sequence[str], owner: np.ndarray) -> pa.Array:
    lengths = (offsets[1:] - offsets[:-1])[owner]
    row_offsets = np.zeros(owner.shape[0] + 1, dtype=np.int64)
    np.cumsum(lengths, out=row_offsets[1:])
    gather = np.repeat(offsets[owner] - row_offsets[:-1], lengths) + np.arange(row_offsets[-1])
    values = _strings(vocab, codes[gather])
    return pa.ListArray.from_arrays(pa.array(row_offsets.astype(np.int32)), values)


def _long_table(imp: _Impressions, lo: int, hi: int, flows: Sequence[str], use_cases: Sequence[str]) -> pa.Table:
    w = _world()
    owner, use_case = _row_index(imp, lo, hi)
    keep = np.isin(imp.flow[owner], [FLOWS.index(f) for f in flows]) & \
        np.isin(use_case, [USE_CASES.index(u) for u in use_cases])
    if not keep.all():
        owner, use_case = owner[keep], use_case[keep]
    label, oracle = _labels(imp, owner, use_case)
    item_rows = w.table.take(pa.array(imp.item[owner]))
    item_ids = np.array([f"item_{i:04d}" for i in range(w.n_items)])
    cols = {
        "impression_id": pa.array(owner.astype(np.int64)),
        "customer_id": pa.array(imp.arrays["customer_id"][owner]),
        "flow": _strings(FLOWS, imp.flow[owner]),
        "use_case": _strings(USE_CASES, use_case),
        "label": pa.array(label),
        "oracle_p": pa.array(oracle),
    }
    for name in CONTEXT_CATEGORICAL:
        cols[name] = _strings(_CATEGORICAL_VOCAB[name], imp.arrays[name][owner])
    for name in CONTEXT_NUMERICAL:
        cols[name] = pa.array(imp.arrays[name][owner])
    cols["search_query"] = _strings(imp.query_vocab, imp.query_code[owner])
    cols["viewed_pages"] = _sequence_array(*imp.seq["viewed_pages"], w.page_vocab, owner)
    cols["viewed_items"] = _sequence_array(*imp.seq["viewed_items"], item_ids, owner)
    for name in ITEM_CATEGORICAL + ITEM_NUMERICAL + ITEM_TEXT + ITEM_EMBEDDINGS:
        cols[name] = item_rows.column(name).combine_chunks()
    return pa.Table.from_arrays([cols[f.name] for f in SCHEMA], schema=SCHEMA)


def _check_args(rows: int, seed: int, flows: Optional[Sequence[str]], use_cases: Optional[Sequence[str]]):
    if isinstance(rows, bool) or not isinstance(rows, (int, np.integer)) or rows < 10:
        raise DataError(f"telecom generator: rows (impressions) must be an integer >= 10, got {rows!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"telecom generator: seed must be a non-negative integer, got {seed!r}")
    flows = tuple(flows) if flows is not None else FLOWS
    use_cases = tuple(use_cases) if use_cases is not None else USE_CASES
    bad = [f for f in flows if f not in FLOWS]
    if bad or not flows:
        raise DataError(f"telecom generator: unknown flow(s) {bad}; the telecom dataset has flows {list(FLOWS)}")
    bad = [u for u in use_cases if u not in USE_CASES]
    if bad or not use_cases:
        raise DataError(f"telecom generator: unknown use case(s) {bad}; expected a subset of {list(USE_CASES)}")
    return int(rows), int(seed), flows, use_cases


def generate_tables(rows: int, seed: int = 0, flows: Optional[Sequence[str]] = None,
                    use_cases: Optional[Sequence[str]] = None) -> Dict[str, pa.Table]:
    """Generates the dataset in memory: ``{"train", "valid", "test"}`` -> Arrow table (schema :data:`SCHEMA`).

    Args:
      rows: number of impressions (the long format has about 3.1 rows per impression).
      seed: the dataset seed; the same seed gives identical tables.
      flows, use_cases: optional subsets of :data:`FLOWS` / :data:`USE_CASES` to keep (rows of other
        task sentences are dropped; the impressions and labels are unchanged).
    """
    rows, seed, flows, use_cases = _check_args(rows, seed, flows, use_cases)
    imp = _simulate(rows, seed)
    return {split: _long_table(imp, lo, hi, flows, use_cases) for split, (lo, hi) in _split_bounds(rows).items()}


def generate_frames(rows: int, seed: int = 0, flows: Optional[Sequence[str]] = None,
                    use_cases: Optional[Sequence[str]] = None):
    """Like :func:`generate_tables` but returns pandas DataFrames (list columns hold NumPy arrays)."""
    return {split: table.to_pandas() for split, table in generate_tables(rows, seed, flows, use_cases).items()}


def _json_number(value: float):
    return None if value is None or (isinstance(value, float) and not math.isfinite(value)) else value


def dataset_card(test, rows: int, seed: int, splits: Optional[Dict[str, int]] = None,
                 impressions: Optional[Dict[str, int]] = None) -> dict:
    """The dataset card: oracle metrics per task sentence on the test split (a frame or Arrow table).

    Returns ``{"dataset", "version", "rows", "seed", "task_sentences", "splits", "impressions",
    "oracle": {"AAL/CTR": {"auc", "ap", "gauc", "logloss", "rows", "positive_rate"}, ...},
    "oracle_use_case": {"CTR": {...}, ...}}``; undefined metrics are ``None`` (JSON null).
    """
    from grec_tf.metrics.ranking import task_sentence_metrics
    import pandas as pd

    if isinstance(test, pa.Table):
        test = pd.DataFrame({c: test.column(c).to_numpy() for c in
                             ("flow", "use_case", "label", "oracle_p", "customer_id")})
    metrics = task_sentence_metrics(test, "oracle_p", "customer_id")
    clean = {k: {m: _json_number(v) for m, v in e.items()} for k, e in metrics.items()}
    sentences = [k for k in TASK_SENTENCES if k in clean]
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


def write_dataset(out_dir, rows: int, seed: int = 0, flows: Optional[Sequence[str]] = None,
                  use_cases: Optional[Sequence[str]] = None, chunk_impressions: int = 200_000) -> dict:
    """Writes ``out_dir/{train,valid,test}.parquet`` and ``out_dir/card.json`` atomically; returns the card.

    Files are written into a temporary folder next to ``out_dir`` and renamed into place, so a reader
    never sees a half-written dataset. An existing ``out_dir`` is replaced only if it is empty or holds
    a previous dataset (has ``card.json``); otherwise :class:`DataError` is raised.
    """
    rows, seed, flows, use_cases = _check_args(rows, seed, flows, use_cases)
    out = Path(out_dir).resolve()
    if out.exists():
        if not out.is_dir():
            raise DataError(f"{out}: exists and is not a directory; expected a dataset folder")
        if any(out.iterdir()) and not (out / "card.json").is_file():
            raise DataError(f"{out}: folder exists and is not a generated dataset (no card.json); "
                            "refusing to overwrite it; choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        imp = _simulate(rows, seed)
        split_rows, split_imps = {}, {}
        test_parts = []
        for split, (lo, hi) in _split_bounds(rows).items():
            writer = pq.ParquetWriter(tmp / f"{split}.parquet", SCHEMA, compression="snappy")
            count = 0
            try:
                for a in range(lo, max(hi, lo + 1), chunk_impressions):
                    table = _long_table(imp, a, min(hi, a + chunk_impressions), flows, use_cases)
                    writer.write_table(table, row_group_size=1 << 20)
                    count += table.num_rows
                    if split == "test":
                        test_parts.append(table.select(["flow", "use_case", "label", "oracle_p", "customer_id"]))
                    del table
            finally:
                writer.close()
            split_rows[split], split_imps[split] = count, hi - lo
        card = dataset_card(pa.concat_tables(test_parts), rows, seed, split_rows, split_imps)
        (tmp / "card.json").write_text(json.dumps(card, indent=2) + "\n")
        os.chmod(tmp, 0o755)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / "data")
            try:
                os.replace(tmp, out)
            except BaseException:
                os.replace(old / "data", out)  # put the previous dataset back
                shutil.rmtree(old, ignore_errors=True)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
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


def ensure_dataset(out_dir, rows: int, seed: int = 0) -> dict:
    """Returns the card of the dataset in ``out_dir``, generating it first unless it exists with the same
    rows, seed and generator version."""
    path = Path(out_dir)
    if (path / "card.json").is_file() and all((path / f"{s}.parquet").is_file() for s in SPLITS):
        try:
            card = read_card(path)
        except DataError:
            card = {}
        if (card.get("rows"), card.get("seed"), card.get("version")) == (rows, seed, GENERATOR_VERSION) \
                and card.get("task_sentences") == list(TASK_SENTENCES):
            return card
    return write_dataset(path, rows, seed)


def format_card(card: dict) -> str:
    """The dataset card as a readable text table."""
    def num(v, fmt):
        return format(v, fmt) if v is not None else format("-", f">{fmt.split('.')[0]}")

    lines = [f"telecom dataset (generator v{card.get('version')}): {card.get('rows'):,} impressions, "
             f"seed {card.get('seed')}"]
    if card.get("splits"):
        lines.append("rows: " + ", ".join(f"{s} {card['splits'][s]:,} ({card['impressions'].get(s, 0):,} "
                                          f"impressions)" for s in card["splits"]))
    lines.append("oracle on the test split:")
    header = f"{'task sentence':<14} {'rows':>9} {'pos. rate':>9} {'oracle AUC':>10} {'oracle AP':>9} {'oracle GAUC':>11}"
    lines += [header, "-" * len(header)]
    for key in card["task_sentences"]:
        e = card["oracle"][key]
        lines.append(f"{key:<14} {e['rows']:>9,} {num(e['positive_rate'], '9.4f')} {num(e['auc'], '10.4f')} "
                     f"{num(e['ap'], '9.4f')} {num(e.get('gauc'), '11.4f')}")
    if card.get("oracle_use_case"):
        lines.append("-" * len(header))
        for key, e in card["oracle_use_case"].items():
            lines.append(f"{'all/' + key:<14} {e['rows']:>9,} {num(e['positive_rate'], '9.4f')} "
                         f"{num(e['auc'], '10.4f')} {num(e['ap'], '9.4f')} {num(e.get('gauc'), '11.4f')}")
    return "\n".join(lines)
