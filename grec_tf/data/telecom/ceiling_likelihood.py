"""The Bayes ceiling's likelihood tables: the observation model of :mod:`.observation_model` read as
``p(observation | hidden state)`` and ``p(observation | intent)``, for every observable value.

They depend only on the fixed world and the module constants (no dataset seed), so they are built
once per process. Factors that are the same for every hidden state and every intent (the probability
of an empty sequence, of a brand x category / category / flow page once it matches, the query's keep
rates and noise words) are left out: they cancel in the posterior.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Tuple

import numpy as np
import pandas as pd
from scipy.special import expit, gammaln, pdtrc

from grec_tf.data.telecom import label_model as lm
from grec_tf.data.telecom import observation_model as om
from grec_tf.data.telecom.queries import CATEGORY_WORD_COUNT, INTENT_WORDS
from grec_tf.data.telecom.schema import MAX_SEQUENCE_LENGTH
from grec_tf.data.telecom.world import (
    BRANDS, CATEGORIES, CHANNELS, FIRST_CATEGORY_PAGE, FIRST_FLOW_PAGE, FIRST_INTENT_PAGE, GENERIC_PAGES,
    INTENT_PAGES, MAIN_BRANDS, World, fixed_world)

# intent grid for the posterior (prior N(0, 1)); the generator's Poisson lengths and logistic terms
# are smooth in intent, so a 0.05 step on [-6, 6] makes the grid integral exact to many digits
INTENT_GRID = np.linspace(-6.0, 6.0, 241)

# rows of Likelihood.intent_table
R_ITEMS_LEN = 0                                    # + L - 1, L = 1..20
R_PAGES_LEN = R_ITEMS_LEN + MAX_SEQUENCE_LENGTH
R_HAS_QUERY = R_PAGES_LEN + MAX_SEQUENCE_LENGTH    # + 2 * channel + has_query
R_INTENT_WORD = R_HAS_QUERY + 2 * len(CHANNELS)    # + intent word present
R_INTENT_PAGE = R_INTENT_WORD + 2                  # + (L - 1) * 20 + position
R_GENERIC_PAGE = R_INTENT_PAGE + MAX_SEQUENCE_LENGTH ** 2
R_TOTAL = R_GENERIC_PAGE + MAX_SEQUENCE_LENGTH ** 2

# Likelihood.page_kind values
PAGE_GENERIC, PAGE_INTENT, PAGE_FLOW, PAGE_CONSTRAINING = 0, 1, 2, 3


@dataclass(frozen=True)
class Likelihood:
    s_pref: np.ndarray          # [S] hidden states: preferred brand (index into BRANDS, < MAIN_BRANDS)
    s_cat: np.ndarray           # [S] wanted category
    s_brand: np.ndarray         # [S] wanted brand
    log_prior: np.ndarray       # [F, S] log p(s | flow)
    log_device: np.ndarray      # [3, S] log p(device_os | pref)
    log_candidate: np.ndarray   # [I, S] log p(candidate item | want_brand, want_cat)
    log_qbrand: np.ndarray      # [B, S] log p(query brand word b | want_brand), given a query
    log_qcat: np.ndarray        # [C, S] log p(category word of category c | want_cat), up to a constant
    page_ok: np.ndarray         # [V, S] False where a brand/category page contradicts the state
    page_constrains: np.ndarray  # [V] the page is a brand x category or category page
    page_kind: np.ndarray       # [V] PAGE_GENERIC, PAGE_INTENT (deals/cart/checkout), PAGE_FLOW, PAGE_CONSTRAINING
    item_brand: np.ndarray      # [I]
    item_cat: np.ndarray        # [I]
    pop: np.ndarray             # [I] popularity draw probability
    inv_pool: np.ndarray        # [B, C] 1 / pool size (0 if empty)
    inv_brand: np.ndarray       # [B] 1 / number of items of the brand
    taste_mean: np.ndarray      # [MAIN_BRANDS, I] brand_latent[pref] . z / taste_scale
    g_sd: np.ndarray            # [I] sd of the affinity noise (taste noise on the item + offset)
    intent_table: np.ndarray    # [R, G] log-likelihood rows of the intent observations
    item_index: pd.Index        # item id string -> item index
    page_index: pd.Index        # page string -> index into page_vocab


@functools.cache
def likelihood() -> Likelihood:
    """The tables (built once per process)."""
    return _build()


def log(x: np.ndarray) -> np.ndarray:
    """``log(x)`` with ``log(0) = -inf`` silently (an impossible observation)."""
    with np.errstate(divide="ignore"):
        return np.log(x)


def _hidden_states(w: World) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(s_pref, s_cat, s_brand)`` ``[S]``: every (preferred brand, wanted category, wanted brand) whose
    wanted brand x category pool has items (a wanted item always exists)."""
    pref, cat, brand = np.meshgrid(np.arange(MAIN_BRANDS), np.arange(len(CATEGORIES)), np.arange(len(BRANDS)),
                                   indexing="ij")
    valid = w.pool_size[brand, cat] > 0
    return pref[valid], cat[valid], brand[valid]


def _log_prior(w: World, s_pref: np.ndarray, s_cat: np.ndarray, s_brand: np.ndarray) -> np.ndarray:
    """``[F, S]`` log p(pref) p(want_cat | flow) p(want_brand | pref, want_cat, flow), loyal summed out."""
    share = np.array(om.PREFERRED_BRAND_SHARE) / sum(om.PREFERRED_BRAND_SHARE)
    cat_brand = w.pool_size.T / w.pool_size.T.sum(axis=1, keepdims=True)   # [C, B] other_brand draw
    can_be_loyal = w.pool_size[s_pref, s_cat] > 0
    loyal = om.FLOW_LOYALTY_WANT[:, None] * can_be_loyal[None, :]           # [F, S]
    p_brand = loyal * (s_brand == s_pref)[None, :] + (1.0 - loyal) * cat_brand[s_cat, s_brand][None, :]
    return log(share[s_pref])[None, :] + log(om.FLOW_WANTS_CATEGORY[:, s_cat]) + log(p_brand)


def _device_likelihood(s_pref: np.ndarray) -> np.ndarray:
    """``[3, S]`` p(device_os | preferred brand)."""
    def probabilities(cdf):  # P(ios), P(ios or android) -> [3, 1] probabilities
        return np.diff(np.concatenate([[0.0], cdf, [1.0]]))[:, None]
    return np.where((s_pref == 0)[None, :], probabilities(om.DEVICE_OS_CDF["apple"]),
                    probabilities(om.DEVICE_OS_CDF["other"]))


def _popularity(w: World) -> np.ndarray:
    """``[I]`` probability of each item in a popularity draw."""
    cdf = w.popularity_cdf
    pop = np.diff(np.concatenate([[0.0], cdf]))
    pop[-1] = 1.0 - cdf[-2]   # sampling.choice clamps draws beyond the last CDF value onto the last item
    return pop


def _candidate_likelihood(w: World, s_cat: np.ndarray, s_brand: np.ndarray, pop: np.ndarray,
                          inv_pool: np.ndarray) -> np.ndarray:
    """``[I, S]`` p(candidate item | wanted brand, wanted category)."""
    in_pool = (w.brand[:, None] == s_brand[None, :]) & (w.category[:, None] == s_cat[None, :])
    in_cat = w.category[:, None] == s_cat[None, :]
    return (om.CANDIDATE_FROM_POOL * in_pool * inv_pool[s_brand, s_cat][None, :]
            + om.CANDIDATE_FROM_CATEGORY * in_cat / w.cat_size[s_cat][None, :]
            + (1.0 - om.CANDIDATE_FROM_POOL - om.CANDIDATE_FROM_CATEGORY) * pop[:, None])


def _query_likelihoods(s_cat: np.ndarray, s_brand: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``(p(brand word b | state) [B, S], p(category word of category c | state) [C, S])``, given a query.

    The brand word is the wanted brand with QUERY_BRAND_KEEP, else none, then a QUERY_NOISE_BRAND
    share is replaced by a uniform main brand. The category word is a uniform word of the wanted
    category (its keep rate and the empty-query rule only depend on observed slots, so they are
    constant across states).
    """
    b = np.arange(len(BRANDS))[:, None]
    qbrand = ((1 - om.QUERY_NOISE_BRAND) * om.QUERY_BRAND_KEEP * (b == s_brand[None, :])
              + om.QUERY_NOISE_BRAND / MAIN_BRANDS * (b < MAIN_BRANDS))
    qcat = (np.arange(len(CATEGORIES))[:, None] == s_cat[None, :]) / CATEGORY_WORD_COUNT[:, None]
    return qbrand, qcat


def _page_constraints(w: World, s_cat: np.ndarray, s_brand: np.ndarray):
    """``(page_ok [V, S], page_constrains [V], page_kind [V])``: which pages rule out which states."""
    nv = len(w.page_vocab)
    page_kind = np.full(nv, PAGE_CONSTRAINING, dtype=np.int64)
    page_kind[:FIRST_INTENT_PAGE] = PAGE_GENERIC
    page_kind[FIRST_INTENT_PAGE:FIRST_FLOW_PAGE] = PAGE_INTENT
    page_kind[FIRST_FLOW_PAGE:FIRST_CATEGORY_PAGE] = PAGE_FLOW
    page_ok = np.ones((nv, s_cat.shape[0]), dtype=bool)
    for c in range(len(CATEGORIES)):
        page_ok[FIRST_CATEGORY_PAGE + c] = s_cat == c
        for b in range(len(BRANDS)):
            if w.brand_cat_page[b, c] >= 0:
                page_ok[w.brand_cat_page[b, c]] = (s_cat == c) & (s_brand == b)
    return page_ok, np.arange(nv) >= FIRST_CATEGORY_PAGE, page_kind


def _affinity_noise_sd(w: World) -> np.ndarray:
    """``[I]`` sd of TASTE_WEIGHT * TASTE_NOISE_SD * eps . z / taste_scale + the customer offset, all
    scaled by AFFINITY_SCALE (eps ~ N(0, I))."""
    z2 = (w.latent ** 2).sum(axis=1)
    return lm.AFFINITY_SCALE * np.sqrt((lm.TASTE_WEIGHT * lm.TASTE_NOISE_SD) ** 2 * z2 / w.taste_scale ** 2
                                       + lm.CUSTOMER_OFFSET_SD ** 2)


def _length_loglik(log_rate: np.ndarray) -> np.ndarray:
    """``[20, G]``: log P(length = L | intent) for L = 1..20, length = min(1 + Poisson(rate), 20)."""
    rate = np.exp(log_rate)
    k = np.arange(MAX_SEQUENCE_LENGTH - 1, dtype=np.float64)[:, None]   # Poisson value L - 1
    out = np.empty((MAX_SEQUENCE_LENGTH, log_rate.shape[0]))
    out[:-1] = k * log_rate[None, :] - rate[None, :] - gammaln(k + 1.0)
    out[-1] = log(pdtrc(MAX_SEQUENCE_LENGTH - 2, rate))  # Poisson >= 19 is truncated to 20
    return out


def _intent_table() -> np.ndarray:
    """``[R_TOTAL, G]``: log-likelihood on :data:`INTENT_GRID` of each observable value that depends on
    the intent (rows ``R_*``)."""
    x = INTENT_GRID
    table = np.zeros((R_TOTAL, x.shape[0]))
    table[R_ITEMS_LEN:R_PAGES_LEN] = _length_loglik(om.sequence_log_rate(om.VIEWED_ITEMS_LOG_RATE, x))
    table[R_PAGES_LEN:R_HAS_QUERY] = _length_loglik(om.sequence_log_rate(om.VIEWED_PAGES_LOG_RATE, x))
    for ch in range(len(CHANNELS)):
        logit = om.has_query_logit(x, om.HAS_QUERY_CHANNEL[ch])
        table[R_HAS_QUERY + 2 * ch] = log(expit(-logit))
        table[R_HAS_QUERY + 2 * ch + 1] = log(expit(logit))
    word = om.intent_word_logit(x)
    table[R_INTENT_WORD] = log(expit(-word))
    table[R_INTENT_WORD + 1] = log(expit(word) / len(INTENT_WORDS))
    n = MAX_SEQUENCE_LENGTH
    length, pos = np.meshgrid(np.arange(1, n + 1), np.arange(n), indexing="ij")
    # recency of (L, position); cells with position >= L never occur (clipped to stay finite)
    rec = np.minimum((pos + 1) / length, 1.0).reshape(-1)[:, None]
    _, _, t3, t4 = om.page_thresholds(rec, x[None, :])
    t4 = np.minimum(t4, 1.0)   # r < 1 always: beyond 1 every remaining page is an intent page
    table[R_INTENT_PAGE:R_GENERIC_PAGE] = log((t4 - t3) / len(INTENT_PAGES))
    table[R_GENERIC_PAGE:] = log((1.0 - t4) / len(GENERIC_PAGES))
    return table


def _build() -> Likelihood:
    w = fixed_world()
    s_pref, s_cat, s_brand = _hidden_states(w)
    pop = _popularity(w)
    inv_pool = np.where(w.pool_size > 0, 1.0 / np.maximum(w.pool_size, 1), 0.0)
    qbrand, qcat = _query_likelihoods(s_cat, s_brand)
    page_ok, page_constrains, page_kind = _page_constraints(w, s_cat, s_brand)
    return Likelihood(
        s_pref, s_cat, s_brand, _log_prior(w, s_pref, s_cat, s_brand), log(_device_likelihood(s_pref)),
        log(_candidate_likelihood(w, s_cat, s_brand, pop, inv_pool)), log(qbrand), log(qcat),
        page_ok, page_constrains, page_kind, w.brand, w.category, pop, inv_pool, 1.0 / w.brand_size,
        w.brand_latent[:MAIN_BRANDS] @ w.latent.T / w.taste_scale, _affinity_noise_sd(w), _intent_table(),
        pd.Index(list(w.item_ids)), pd.Index(list(w.page_vocab)))
