"""The fixed world of the telecom dataset: the item catalogue and the site's vocabularies.

The world is the same for every dataset seed (it is drawn once from :data:`WORLD_SEED`). It holds:

* the **catalogue**: phones, tablets, watches and accessories of nine brands (:data:`CATALOGUE`
  gives how many items each brand makes per category; item ids are shuffled so they reveal neither).
  Each item has a latent vector ``z = brand part + category part + individual part`` (``[16]``), an
  **appeal** (the standardized projection of its individual part on a fixed direction), a price
  (category reference price x brand premium x appeal x noise), a rating (around 4, higher with
  appeal), a popularity (lognormal, higher with appeal) and a text description (brand, series,
  category, price tier and its two strongest latent features);
* CLIP-like ``item_image_vec`` / ``item_text_vec``: two different noisy 64-d projections of ``z``,
  unit norm (the text one is less noisy);
* the site's **pages**: generic pages, the intent pages (deals, cart, checkout), one page per flow,
  one page per category and one per brand x category that has items (``"phones/apple"``);
* lookup structures the simulation draws from: the items of each brand x category **pool**, of each
  category and of each brand, and the brand shares within a category.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import List, Tuple

import numpy as np
import pyarrow as pa

from grec_tf.data.telecom.schema import VECTOR_DIM

LATENT_DIM = 16
WORLD_SEED = 20230421  # the catalogue: identical for every dataset seed

CATEGORIES = ("phone", "tablet", "watch", "accessory")
CATEGORY_PAGES = ("phones", "tablets", "watches", "accessories")
BRANDS = ("apple", "samsung", "google", "motorola", "oneplus", "garmin", "belkin", "anker", "otterbox")
MAIN_BRANDS = 5  # customers' preferred brand is one of the first five
# items per (category, brand); 0 = the brand does not make that category
CATALOGUE = {
    "phone": {"apple": 40, "samsung": 45, "google": 25, "motorola": 30, "oneplus": 20},
    "tablet": {"apple": 25, "samsung": 25, "google": 10, "anker": 0},
    "watch": {"apple": 20, "samsung": 20, "google": 12, "garmin": 18},
    "accessory": {"apple": 30, "samsung": 30, "belkin": 35, "anker": 35, "otterbox": 30},
}
CATEGORY_PRICE = {"phone": (700.0, 0.40), "tablet": (450.0, 0.40), "watch": (300.0, 0.35),
                  "accessory": (35.0, 0.55)}   # (reference price, log-price spread)
BRAND_PREMIUM = {"apple": 0.25, "samsung": 0.1, "google": 0.0, "motorola": -0.45, "oneplus": -0.2,
                 "garmin": 0.1, "belkin": 0.0, "anker": -0.25, "otterbox": 0.1}
BRAND_SERIES = {"apple": "i", "samsung": "Galaxy ", "google": "Pixel ", "motorola": "Moto ",
                "oneplus": "OnePlus ", "garmin": "Forerunner ", "belkin": "Boost ", "anker": "Power ",
                "otterbox": "Defender "}
FEATURE_WORDS = ("pro camera", "long battery", "compact", "rugged", "premium design", "fast charging",
                 "bright display", "lightweight")

DEVICE_OS = ("ios", "android", "other")
CHANNELS = ("web", "app", "store", "call_center")
REGIONS = ("northeast", "southeast", "midwest", "southwest", "west")
PLANS = ("unlimited_premium", "unlimited_plus", "unlimited_basic", "prepaid", "none")
GENERIC_PAGES = ("home", "plans", "support", "account", "search", "trade-in", "coverage")
INTENT_PAGES = ("deals", "cart", "checkout")
FLOW_PAGES = ("add-a-line", "upgrade", "switch")  # per flow AAL, EUP, NSE
# page vocabulary layout: generic, intent, flow, category pages, then the brand x category pages
FIRST_INTENT_PAGE = len(GENERIC_PAGES)
FIRST_FLOW_PAGE = FIRST_INTENT_PAGE + len(INTENT_PAGES)
FIRST_CATEGORY_PAGE = FIRST_FLOW_PAGE + len(FLOW_PAGES)


@dataclass(frozen=True)
class World:
    n_items: int
    item_ids: Tuple[str, ...]  # [I] "item_0000", ...
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
    taste_scale: float         # scale of u.z for a typical customer: keeps the taste term ~standardized


@functools.cache
def fixed_world() -> World:
    """The world (built once per process; identical in every process)."""
    return _build_world()


def _item_latents(rng: np.random.Generator):
    """``(brand [I], category [I], latent [I, K], individual [I, K], appeal [I], brand_latent [B, K])``."""
    brand_latent = rng.standard_normal((len(BRANDS), LATENT_DIM)) * 0.9
    cat_latent = rng.standard_normal((len(CATEGORIES), LATENT_DIM)) * 0.6
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
    individual = rng.standard_normal((n, LATENT_DIM)) * 0.8
    latent = brand_latent[brand] + cat_latent[category] + individual
    direction = rng.standard_normal(LATENT_DIM)
    direction /= np.linalg.norm(direction)
    appeal = individual @ direction
    appeal = (appeal - appeal.mean()) / appeal.std()
    return brand, category, latent, individual, appeal, brand_latent


def _prices_ratings_popularity(rng: np.random.Generator, brand: np.ndarray, category: np.ndarray,
                               appeal: np.ndarray):
    """``(price, log relative price, rating, popularity CDF)``, each ``[I]``."""
    n = brand.shape[0]
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
    return price, log_rel_price, rating, np.cumsum(popularity) / popularity.sum()


def _clip_like_vector(rng: np.random.Generator, latent: np.ndarray, noise: float) -> np.ndarray:
    """``[I, VECTOR_DIM]`` float32: a random projection of the latent plus noise, unit norm."""
    n, k = latent.shape
    proj = rng.standard_normal((k, VECTOR_DIM)) / math.sqrt(k)
    vec = latent @ proj + noise * rng.standard_normal((n, VECTOR_DIM))
    return (vec / np.linalg.norm(vec, axis=1, keepdims=True)).astype(np.float32)


def _grouped(key: np.ndarray, shape: Tuple[int, ...]):
    """Items grouped by ``key``: ``(order [I], start shape, size shape)`` (stable within a group)."""
    order = np.argsort(key, kind="stable")
    size = np.bincount(key, minlength=int(np.prod(shape)))
    start = np.concatenate([[0], np.cumsum(size)[:-1]])
    return order, start.reshape(shape), size.reshape(shape)


def _page_vocabulary(pool_size: np.ndarray) -> Tuple[List[str], np.ndarray]:
    """``(pages, brand_cat_page [B, C])``: the fixed pages, then one per non-empty brand x category."""
    pages = list(GENERIC_PAGES) + list(INTENT_PAGES) + list(FLOW_PAGES) + list(CATEGORY_PAGES)
    brand_cat_page = np.full(pool_size.shape, -1, dtype=np.int64)
    for c in range(len(CATEGORIES)):
        for b in range(len(BRANDS)):
            if pool_size[b, c]:
                brand_cat_page[b, c] = len(pages)
                pages.append(f"{CATEGORY_PAGES[c]}/{BRANDS[b]}")
    return pages, brand_cat_page


def _descriptions(rng: np.random.Generator, brand: np.ndarray, category: np.ndarray, individual: np.ndarray,
                  log_rel_price: np.ndarray) -> List[str]:
    """Brand, series, category, price tier and the item's two strongest latent features, per item."""
    top = np.argsort(-individual[:, :len(FEATURE_WORDS)], axis=1)[:, :2]
    number = rng.integers(2, 16, brand.shape[0])
    descriptions = []
    for i in range(brand.shape[0]):
        b, c = BRANDS[brand[i]], CATEGORIES[category[i]]
        tier = "budget" if log_rel_price[i] < -0.3 else ("flagship" if log_rel_price[i] > 0.3 else "")
        desc = " ".join([b.capitalize(), f"{BRAND_SERIES[b]}{number[i]}", c]) + (f", {tier}" if tier else "")
        descriptions.append(desc + f", {FEATURE_WORDS[top[i, 0]]} and {FEATURE_WORDS[top[i, 1]]}")
    return descriptions


def _vector_array(vec: np.ndarray) -> pa.Array:
    """``[I, D]`` -> Arrow list<float32> array of ``I`` rows."""
    n, d = vec.shape
    offsets = pa.array(np.arange(0, n * d + 1, d, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(vec.reshape(-1)))


def _build_world() -> World:
    rng = np.random.default_rng(WORLD_SEED)   # the draws below are in a fixed order: do not reorder
    brand, category, latent, individual, appeal, brand_latent = _item_latents(rng)
    price, log_rel_price, rating, popularity_cdf = _prices_ratings_popularity(rng, brand, category, appeal)
    image_vec = _clip_like_vector(rng, latent, 0.45)
    text_vec = _clip_like_vector(rng, latent, 0.35)
    descriptions = _descriptions(rng, brand, category, individual, log_rel_price)

    n, nb, nc = brand.shape[0], len(BRANDS), len(CATEGORIES)
    pool_order, pool_start, pool_size = _grouped(brand * nc + category, (nb, nc))
    cat_order, cat_start, cat_size = _grouped(category, (nc,))
    brand_order, brand_start, brand_size = _grouped(brand, (nb,))
    cat_brand = pool_size.T.astype(np.float64)  # [C, B]
    cat_brand_cdf = np.cumsum(cat_brand, axis=1) / cat_brand.sum(axis=1, keepdims=True)
    pages, brand_cat_page = _page_vocabulary(pool_size)
    item_ids = tuple(f"item_{i:04d}" for i in range(n))
    table = pa.table({
        "item_id": pa.array(item_ids, pa.string()),
        "item_brand": pa.array([BRANDS[b] for b in brand], pa.string()),
        "item_category": pa.array([CATEGORIES[c] for c in category], pa.string()),
        "item_price": pa.array(price.astype(np.float32)),
        "item_rating": pa.array(rating.astype(np.float32)),
        "item_description": pa.array(descriptions, pa.string()),
        "item_image_vec": _vector_array(image_vec),
        "item_text_vec": _vector_array(text_vec),
    })
    return World(n, item_ids, brand, category, latent, appeal, price.astype(np.float32), rating.astype(np.float32),
                 log_rel_price, popularity_cdf, brand_latent, pool_order, pool_start, pool_size,
                 cat_order, cat_start, cat_size, brand_order, brand_start, brand_size, cat_brand_cdf,
                 table, tuple(pages), brand_cat_page, float(np.sqrt(LATENT_DIM) * 1.35))
