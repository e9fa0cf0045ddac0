"""The hidden session state of the telecom world and how it shows in the features.

Shared by the generator (:mod:`.simulation`, which draws from it) and the Bayes ceiling
(:mod:`.ceiling_likelihood`, which inverts it); every number here is used by both.

**Hidden state.** A customer has a **preferred brand** (one of the five main brands, shares
:data:`PREFERRED_BRAND_SHARE`). A session has a purchase **intent** (``N(0, 1)``) and a **wanted**
item: a category (by flow, :data:`FLOW_WANTS_CATEGORY`) and a brand - the preferred brand with
probability :data:`FLOW_LOYALTY_WANT` (if it makes that category), else a brand drawn by its share of
the category's catalogue.

**Observations.** None of these is shown; the features are noisy views of them:

* ``device_os`` depends on the preferred brand (Apple lovers mostly use iOS: :data:`DEVICE_OS_CDF`);
* the **candidate item** comes from the wanted brand x category pool, from the wanted category, or
  from a popularity draw (:data:`CANDIDATE_FROM_POOL`, :data:`CANDIDATE_FROM_CATEGORY`);
* the **viewed items** (most recent last) have a Poisson length growing with the intent; each comes
  from the wanted pool (more likely near the end), from the preferred brand, or by popularity;
* the **viewed pages** also have an intent-driven length; each is the wanted brand x category page,
  the wanted category page, the flow's page, an intent page (deals/cart/checkout, likelier with a
  high intent and near the end) or a generic page (:func:`page_thresholds`);
* the **search query** exists more often with a high intent (and on web/app); it names the wanted
  brand and a word of the wanted category with fixed keep rates, and an intent word ("buy", "deal",
  ...) more often with a high intent (:mod:`.queries`).

So ``device``, the candidate, the viewed items' identities, the brand/category pages and the
query's brand/category words depend on the discrete state only; sequence lengths, intent and generic
pages, whether there is a query and its intent word depend on the intent only.
"""
from __future__ import annotations

import numpy as np

from grec_tf.data.telecom.label_model import sigmoid

# hidden state prior
PREFERRED_BRAND_SHARE = (0.38, 0.30, 0.13, 0.11, 0.08)
FLOW_WANTS_CATEGORY = np.array([[0.55, 0.15, 0.20, 0.10],   # AAL: phone, tablet, watch, accessory
                                [0.68, 0.10, 0.10, 0.12],   # EUP
                                [0.80, 0.07, 0.05, 0.08]])  # NSE
FLOW_LOYALTY_WANT = np.array([0.6, 0.8, 0.35])   # P(wanted brand = preferred brand)

# how the hidden state shows in the features
DEVICE_OS_CDF = {"apple": (0.85, 0.98), "other": (0.12, 0.97)}  # P(ios), P(ios or android) by preferred brand
CANDIDATE_FROM_POOL = 0.25      # candidate from the wanted brand x category, else ...
CANDIDATE_FROM_CATEGORY = 0.25  # ... from the wanted category, else a popularity draw
VIEWED_ITEMS_EMPTY = (0.15, 0.10, 0.35)  # P(no viewed items) per flow (the same for every hidden state)
VIEWED_PAGES_EMPTY = 0.08                # P(no viewed pages)
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


def sequence_log_rate(log_rate: tuple, intent: np.ndarray) -> np.ndarray:
    """Log Poisson rate of a viewed sequence's length given the intent (``VIEWED_*_LOG_RATE``), ``[n]``."""
    return log_rate[0] + log_rate[1] * intent


def viewed_item_wanted_share(recency: np.ndarray) -> np.ndarray:
    """P(a viewed item is from the wanted pool) at ``recency`` in (0, 1] (1 = most recent), ``[m]``."""
    return VIEWED_ITEM_WANTED[0] + VIEWED_ITEM_WANTED[1] * recency


def page_thresholds(recency: np.ndarray, intent: np.ndarray):
    """Cumulative probabilities ``(t1, t2, t3, t4)`` of a viewed page's kind, each broadcast of the inputs.

    A uniform ``r`` picks the wanted brand x category page if ``r < t1``, else the wanted category
    page if ``r < t2``, else the flow's page if ``r < t3``, else an intent page if ``r < t4`` (``t4``
    may exceed 1), else a generic page.
    """
    t1 = PAGE_WANTED[0] + PAGE_WANTED[1] * recency
    t2 = t1 + PAGE_CATEGORY
    t3 = t2 + PAGE_FLOW
    share, slope, bias, floor = PAGE_INTENT
    t4 = t3 + share * sigmoid(slope * intent + bias) * (floor + recency)
    return t1, t2, t3, t4


def has_query_logit(intent: np.ndarray, channel_effect) -> np.ndarray:
    """Logit of P(the session has a search query); ``channel_effect`` is ``HAS_QUERY_CHANNEL[channel]``."""
    return HAS_QUERY[0] + HAS_QUERY[1] * intent + channel_effect


def intent_word_logit(intent: np.ndarray) -> np.ndarray:
    """Logit of P(the query has an intent word) given the intent."""
    return QUERY_INTENT_WORD[0] * intent + QUERY_INTENT_WORD[1]
