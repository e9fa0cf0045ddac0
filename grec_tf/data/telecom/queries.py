"""The search-query language of the telecom dataset: drawing queries, writing them, reading them back.

A query is built from up to six slots, each drawn independently given the session's hidden state:

* a **brand** word: the wanted brand (kept with ``QUERY_BRAND_KEEP``), replaced by a uniform main
  brand with ``QUERY_NOISE_BRAND``;
* a **category** word: a uniform word of the wanted category (:data:`CATEGORY_WORDS`, kept with
  ``QUERY_CATEGORY_KEEP``);
* an **intent** word ("buy", "deal", ...) with probability ``sigmoid(1.6 intent - 1.2)``;
* up to two **noise** words ("best", "5g", ...; a repeated noise word is written once);
* a **swap** flag putting the category word before the brand word.

A query whose slots are all empty gets the category word. About half the sessions have no query
(``""``; likelier with a low intent and in the store or call center). Written order: intent word,
brand and category words (swapped or not), noise words. :func:`parse_query` inverts the writing,
which is what the Bayes ceiling reads.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import numpy as np

from grec_tf.data.telecom.label_model import sigmoid
from grec_tf.data.telecom.observation_model import (
    HAS_QUERY_CHANNEL, QUERY_BRAND_KEEP, QUERY_CATEGORY_KEEP, QUERY_NOISE_BRAND, has_query_logit,
    intent_word_logit)
from grec_tf.data.telecom.world import BRANDS, CATEGORIES, MAIN_BRANDS

CATEGORY_WORDS = {"phone": ("phone", "smartphone"), "tablet": ("tablet",),
                  "watch": ("watch", "smartwatch"), "accessory": ("case", "charger", "earbuds")}
INTENT_WORDS = ("buy", "deal", "price", "financing", "order")
NOISE_WORDS = ("best", "new", "5g", "128gb", "black", "review", "unlimited", "vs", "cheap", "2024")

#: Every category word with its category index, category by category: the category slot's values.
CATEGORY_WORD_LIST: Tuple[Tuple[int, str], ...] = tuple(
    (c, word) for c, cat in enumerate(CATEGORIES) for word in CATEGORY_WORDS[cat])
CATEGORY_OF_WORD = {word: c for c, word in CATEGORY_WORD_LIST}
CATEGORY_WORD_COUNT = np.array([len(CATEGORY_WORDS[c]) for c in CATEGORIES])      # [C]
CATEGORY_WORD_START = np.concatenate([[0], np.cumsum(CATEGORY_WORD_COUNT)[:-1]])  # [C]
# slot radices of the query code: brand, category word, intent word, noise 1, noise 2, swap
_SLOT_SIZES = (len(BRANDS) + 1, len(CATEGORY_WORD_LIST) + 1, len(INTENT_WORDS) + 1, len(NOISE_WORDS) + 1,
               len(NOISE_WORDS) + 1, 2)


@dataclass
class Queries:
    has_query: np.ndarray   # [n] bool
    brand: np.ndarray       # [n] brand index of the brand word, -1 if none (or no query)
    category: np.ndarray    # [n] category index of the category word, -1 if none (or no query)
    vocab: List[str]        # distinct query strings ("" = no query)
    code: np.ndarray        # [n] index into vocab


def draw_queries(rng: np.random.Generator, intent: np.ndarray, channel: np.ndarray, want_brand: np.ndarray,
                 want_cat: np.ndarray) -> Queries:
    """Draws each session's search query (all inputs ``[n]``; see the module docstring)."""
    n = intent.shape[0]
    has_query = rng.random(n) < sigmoid(has_query_logit(intent, np.array(HAS_QUERY_CHANNEL)[channel]))
    brand_slot = np.where(rng.random(n) < QUERY_BRAND_KEEP, want_brand + 1, 0)
    noise_brand = rng.random(n) < QUERY_NOISE_BRAND
    brand_slot = np.where(noise_brand, 1 + rng.integers(0, MAIN_BRANDS, n), brand_slot)
    count = CATEGORY_WORD_COUNT[want_cat]
    cat_word = CATEGORY_WORD_START[want_cat] + np.minimum((rng.random(n) * count).astype(np.int64), count - 1)
    cat_slot = np.where(rng.random(n) < QUERY_CATEGORY_KEEP, cat_word + 1, 0)
    intent_slot = np.where(rng.random(n) < sigmoid(intent_word_logit(intent)),
                           1 + rng.integers(0, len(INTENT_WORDS), n), 0)
    noise1 = np.where(rng.random(n) < 0.35, 1 + rng.integers(0, len(NOISE_WORDS), n), 0)
    noise2 = np.where(rng.random(n) < 0.2, 1 + rng.integers(0, len(NOISE_WORDS), n), 0)
    swap = rng.random(n) < 0.3
    empty = (brand_slot == 0) & (cat_slot == 0) & (intent_slot == 0) & (noise1 == 0) & (noise2 == 0)
    cat_slot = np.where(empty, cat_word + 1, cat_slot)
    code = np.zeros(n, dtype=np.int64)
    for slot, size in zip([brand_slot, cat_slot, intent_slot, noise1, noise2, swap.astype(np.int64)], _SLOT_SIZES):
        code = code * size + slot
    code = np.where(has_query, code + 1, 0)  # 0 = empty query
    uniq, query_code = np.unique(code, return_inverse=True)
    category_of_slot = np.array([-1] + [c for c, _ in CATEGORY_WORD_LIST])
    return Queries(has_query, np.where(has_query, brand_slot - 1, -1),
                   np.where(has_query, category_of_slot[cat_slot], -1),
                   [_query_text(c) for c in uniq.tolist()], query_code.reshape(-1).astype(np.int64))


def _query_text(code: int) -> str:
    """The query string of a slot code (0 = no query)."""
    if code == 0:
        return ""
    c = code - 1
    parts = []
    for size in reversed(_SLOT_SIZES):
        parts.append(c % size)
        c //= size
    swap, noise2, noise1, intent, cat_word, brand = parts
    words = [BRANDS[brand - 1] if brand else "", CATEGORY_WORD_LIST[cat_word - 1][1] if cat_word else ""]
    if swap:
        words.reverse()
    noise = ([NOISE_WORDS[noise1 - 1]] if noise1 else []) + \
        ([NOISE_WORDS[noise2 - 1]] if noise2 and noise2 != noise1 else [])   # a repeated noise word once
    words = ([INTENT_WORDS[intent - 1]] if intent else []) + words + noise
    return " ".join(x for x in words if x)


def parse_query(query: str) -> Tuple[int, int, int, int]:
    """``(has_query, brand index or -1, category index or -1, has intent word)`` of a query string.

    Raises:
      ValueError: on a word the generator never writes (names the word and the query).
    """
    if query == "":
        return 0, -1, -1, 0
    brand, cat, intent = -1, -1, 0
    for word in query.split(" "):
        if word in BRANDS:
            brand = BRANDS.index(word)
        elif word in CATEGORY_OF_WORD:
            cat = CATEGORY_OF_WORD[word]
        elif word in INTENT_WORDS:
            intent = 1
        elif word not in NOISE_WORDS:
            raise ValueError(f"search_query: word {word!r} of {query!r} is not a telecom query word")
    return 1, brand, cat, intent
