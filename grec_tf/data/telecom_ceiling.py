"""The Bayes ceiling of the synthetic telecom dataset: the best prediction from a row's features alone.

Every long-format row of :mod:`grec_tf.data.telecom` carries ``oracle_p``, the exact probability its
label was drawn with. That oracle reads hidden variables no model sees:

* per session: the purchase ``intent`` (N(0, 1)), the wanted category and the wanted brand;
* per customer: the preferred brand, the taste noise (``taste = brand_latent[pref] + 0.8 N(0, I)``),
  the price-sensitivity noise (``0.25 N``) and the affinity offset (``0.3 N``).

A model only sees the row's feature columns ``x``. The best any model can do from ``x`` is the
posterior expectation under the generator, the **Bayes ceiling**::

    ceiling(x) = E[label | x, the row exists] = E[oracle_p | x, the row exists]

This module computes it exactly (up to quadrature error far below 1e-4) with perfect knowledge of
the generative model: the fixed world (:func:`grec_tf.data.telecom._world`: catalogue, item latents,
appeal, prices, ratings, popularity) and the module constants, but none of the per-seed random draws.
Because it averages over the hidden variables instead of knowing them, its AUC is below the
oracle's; the difference is the part of the "AUC gap to the oracle" that no model can close.

How (per impression; all rows of an impression share their features):

1. Observations are mapped back to world indices: item ids, page names, and the search query parsed
   into its brand word, category word, intent word and noise words ("" = no query).
2. The hidden state is the discrete ``s = (pref, want_cat, want_brand)`` (85 combinations with a
   non-empty brand x category pool; ``loyal`` is summed out) and the continuous ``intent``.
   Every observation depends on *either* ``s`` *or* ``intent``, never both (device, candidate item,
   the viewed items' identities, brand/category pages and query words on ``s``; the lengths of the
   sequences, deals/cart/checkout and generic pages, ``has_query`` and the query's intent word on
   ``intent``), so the posterior factorizes: ``p(s, intent | x) = p(s | x) p(intent | x)``.
3. ``p(s | x)`` is exact (a sum over 85 states). ``p(intent | x)`` is computed on a fine grid and
   turned into a per-impression Gauss rule (Lanczos / Golub-Welsch on the discrete posterior).
4. The customer-level Gaussian noises are independent of every observation; they enter the three
   logits linearly as two independent normals (taste noise projected on the item + offset, and the
   price-sensitivity noise times the item's log relative price) and are integrated with a tensor
   Gauss-Hermite rule.
5. Products are taken inside the expectation (all three funnel steps share the hidden variables):
   CTR ``E[pc]``, ATC ``E[pc pa]``, CTCVR ``E[pc pa pb]`` and, because a CVR row exists only for a
   clicked impression, CVR ``E[pc pa pb] / E[pc]``.

Only these columns are read: ``flow``, ``use_case``, the context columns, ``search_query``,
``viewed_pages``, ``viewed_items``, ``item_id`` and (as a grouping key only) ``impression_id``;
never ``label``, ``oracle_p`` or ``customer_id``.

The ceiling treats each row on its own, with the population prior over the customer. Impressions of
the same customer share the customer-level hidden variables, so a model that recognises a customer
across rows (for instance from near-unique context values seen in training) can in principle learn
some of them and exceed this per-row ceiling, never the oracle.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.special import expit, gammaln, pdtrc

from grec_tf.data import telecom as tc

__all__ = ["ceiling_probabilities"]

# intent grid for the posterior (prior N(0, 1)); the generator's Poisson lengths and logistic terms
# are smooth in intent, so a 0.05 step on [-6, 6] makes the grid integral exact to many digits
_INTENT_GRID = np.linspace(-6.0, 6.0, 241)
_IMPOSSIBLE = -np.inf  # log-probability of an impossible event

_NGEN, _NINT, _NFLOW = len(tc.GENERIC_PAGES), len(tc.INTENT_PAGES), len(tc.FLOW_PAGES)
_CAT_OF_WORD = {word: c for c, cat in enumerate(tc.CATEGORIES) for word in tc.CATEGORY_WORDS[cat]}
_CAT_WORD_COUNT = np.array([len(tc.CATEGORY_WORDS[c]) for c in tc.CATEGORIES], dtype=np.float64)
_INTENT_COEF = (tc.AFFINITY_SCALE * tc.INTENT_WEIGHT,     # intent in the click / atc / buy logits
                tc.ATC_SHARE * tc.AFFINITY_SCALE * tc.INTENT_WEIGHT + tc.ATC_INTENT,
                tc.BUY_SHARE * tc.AFFINITY_SCALE * tc.INTENT_WEIGHT)
_SHARE = np.array([1.0, tc.ATC_SHARE, tc.BUY_SHARE])      # how the affinity enters the three logits


# --------------------------------------------------------------------------------------------------
# Precomputed tables (depend only on the fixed world and the constants)
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Model:
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
    page_kind: np.ndarray       # [V] 0 generic, 1 intent (deals/cart/checkout), 2 flow, 3 other
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


# rows of _Model.intent_table
_R_ITEMS_LEN = 0                                  # + L - 1, L = 1..20
_R_PAGES_LEN = _R_ITEMS_LEN + tc.MAX_SEQUENCE_LENGTH
_R_HAS_QUERY = _R_PAGES_LEN + tc.MAX_SEQUENCE_LENGTH  # + 2 * channel + has_query
_R_INTENT_WORD = _R_HAS_QUERY + 2 * len(tc.CHANNELS)   # + intent word present
_R_INTENT_PAGE = _R_INTENT_WORD + 2                    # + (L - 1) * 20 + position
_R_GENERIC_PAGE = _R_INTENT_PAGE + tc.MAX_SEQUENCE_LENGTH ** 2
_R_TOTAL = _R_GENERIC_PAGE + tc.MAX_SEQUENCE_LENGTH ** 2

_MODEL: Optional[_Model] = None


def _log(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(x)


def _length_loglik(log_rate: np.ndarray) -> np.ndarray:
    """``[20, G]``: log P(length = L | intent) for L = 1..20, length = min(1 + Poisson(rate), 20)."""
    rate = np.exp(log_rate)
    k = np.arange(tc.MAX_SEQUENCE_LENGTH - 1, dtype=np.float64)[:, None]   # Poisson value L - 1
    out = np.empty((tc.MAX_SEQUENCE_LENGTH, log_rate.shape[0]))
    out[:-1] = k * log_rate[None, :] - rate[None, :] - gammaln(k + 1.0)
    out[-1] = _log(pdtrc(tc.MAX_SEQUENCE_LENGTH - 2, rate))  # Poisson >= 19 is truncated to 20
    return out


def _build_model() -> _Model:
    """The likelihood tables, each probability read off :func:`grec_tf.data.telecom._simulate`.

    Factors that are the same for every hidden state and every intent (the probability of an empty
    sequence, of a brand x category / category / flow page once it matches, the query's keep rates
    and noise words) are left out: they cancel in the posterior.
    """
    w = tc._world()
    nb, nc, ni = len(tc.BRANDS), len(tc.CATEGORIES), w.n_items
    pref, cat, brand = np.meshgrid(np.arange(tc.MAIN_BRANDS), np.arange(nc), np.arange(nb), indexing="ij")
    valid = w.pool_size[brand, cat] > 0   # a wanted brand x category always has items
    s_pref, s_cat, s_brand = pref[valid], cat[valid], brand[valid]

    # prior p(pref) p(want_cat | flow) p(want_brand | pref, want_cat, flow), loyal summed out
    share = np.array(tc.PREFERRED_BRAND_SHARE) / sum(tc.PREFERRED_BRAND_SHARE)
    cat_brand = w.pool_size.T / w.pool_size.T.sum(axis=1, keepdims=True)   # [C, B] other_brand draw
    can_be_loyal = w.pool_size[s_pref, s_cat] > 0
    loyal = tc.FLOW_LOYALTY_WANT[:, None] * can_be_loyal[None, :]           # [F, S]
    p_brand = loyal * (s_brand == s_pref)[None, :] + (1.0 - loyal) * cat_brand[s_cat, s_brand][None, :]
    log_prior = _log(share[s_pref])[None, :] + _log(tc.FLOW_WANTS_CATEGORY[:, s_cat]) + _log(p_brand)

    def device_probabilities(cdf):  # P(ios), P(ios or android) -> [3, 1] probabilities
        return np.diff(np.concatenate([[0.0], cdf, [1.0]]))[:, None]
    device = np.where((s_pref == 0)[None, :], device_probabilities(tc.DEVICE_OS_CDF["apple"]),
                      device_probabilities(tc.DEVICE_OS_CDF["other"]))             # [3, S]

    cdf = w.popularity_cdf
    pop = np.diff(np.concatenate([[0.0], cdf]))
    pop[-1] = 1.0 - cdf[-2]   # _choice clamps draws beyond the last CDF value onto the last item
    inv_pool = np.where(w.pool_size > 0, 1.0 / np.maximum(w.pool_size, 1), 0.0)
    inv_brand = 1.0 / w.brand_size
    item_brand, item_cat = w.brand, w.category
    in_pool = (item_brand[:, None] == s_brand[None, :]) & (item_cat[:, None] == s_cat[None, :])
    in_cat = item_cat[:, None] == s_cat[None, :]
    candidate = (tc.CANDIDATE_FROM_POOL * in_pool * inv_pool[s_brand, s_cat][None, :]
                 + tc.CANDIDATE_FROM_CATEGORY * in_cat / w.cat_size[s_cat][None, :]
                 + (1.0 - tc.CANDIDATE_FROM_POOL - tc.CANDIDATE_FROM_CATEGORY) * pop[:, None])

    # query brand word b (given a query): the wanted brand with QUERY_BRAND_KEEP, else none, then a
    # QUERY_NOISE_BRAND share replaced by a uniform main brand
    b = np.arange(nb)[:, None]
    qbrand = ((1 - tc.QUERY_NOISE_BRAND) * tc.QUERY_BRAND_KEEP * (b == s_brand[None, :])
              + tc.QUERY_NOISE_BRAND / tc.MAIN_BRANDS * (b < tc.MAIN_BRANDS))
    # category word of category c: a uniform word of the wanted category (the keep rate and the
    # empty-query rule only depend on observed slots, so they are constant across states)
    qcat = (np.arange(nc)[:, None] == s_cat[None, :]) / _CAT_WORD_COUNT[:, None]

    pages = w.page_vocab
    nv = len(pages)
    base_flow, base_cat = _NGEN + _NINT, _NGEN + _NINT + _NFLOW
    page_kind = np.full(nv, 3, dtype=np.int64)
    page_kind[:_NGEN] = 0
    page_kind[_NGEN:base_flow] = 1
    page_kind[base_flow:base_cat] = 2
    page_ok = np.ones((nv, s_pref.shape[0]), dtype=bool)
    for c in range(nc):
        page_ok[base_cat + c] = s_cat == c
        for bb in range(nb):
            if w.brand_cat_page[bb, c] >= 0:
                page_ok[w.brand_cat_page[bb, c]] = (s_cat == c) & (s_brand == bb)
    page_constrains = np.arange(nv) >= base_cat

    taste_mean = w.brand_latent[:tc.MAIN_BRANDS] @ w.latent.T / w.taste_scale
    # affinity noise: TASTE_WEIGHT * TASTE_NOISE_SD * eps . z / taste_scale + the customer offset, all
    # scaled by AFFINITY_SCALE
    z2 = (w.latent ** 2).sum(axis=1)
    g_sd = tc.AFFINITY_SCALE * np.sqrt((tc.TASTE_WEIGHT * tc.TASTE_NOISE_SD) ** 2 * z2 / w.taste_scale ** 2
                                       + tc.CUSTOMER_OFFSET_SD ** 2)

    # intent observations, one log-likelihood row per observable value
    x = _INTENT_GRID
    table = np.zeros((_R_TOTAL, x.shape[0]))
    table[_R_ITEMS_LEN:_R_PAGES_LEN] = _length_loglik(tc.VIEWED_ITEMS_LOG_RATE[0] + tc.VIEWED_ITEMS_LOG_RATE[1] * x)
    table[_R_PAGES_LEN:_R_HAS_QUERY] = _length_loglik(tc.VIEWED_PAGES_LOG_RATE[0] + tc.VIEWED_PAGES_LOG_RATE[1] * x)
    for ch in range(len(tc.CHANNELS)):
        logit = tc.HAS_QUERY[0] + tc.HAS_QUERY[1] * x + tc.HAS_QUERY_CHANNEL[ch]
        table[_R_HAS_QUERY + 2 * ch] = _log(expit(-logit))
        table[_R_HAS_QUERY + 2 * ch + 1] = _log(expit(logit))
    word = tc.QUERY_INTENT_WORD[0] * x + tc.QUERY_INTENT_WORD[1]
    table[_R_INTENT_WORD] = _log(expit(-word))
    table[_R_INTENT_WORD + 1] = _log(expit(word) / len(tc.INTENT_WORDS))
    n = tc.MAX_SEQUENCE_LENGTH
    length, pos = np.meshgrid(np.arange(1, n + 1), np.arange(n), indexing="ij")
    # recency of (L, position); cells with position >= L never occur (clipped to stay finite)
    rec = np.minimum((pos + 1) / length, 1.0).reshape(-1)[:, None]
    t3 = tc.PAGE_WANTED[0] + tc.PAGE_WANTED[1] * rec + tc.PAGE_CATEGORY + tc.PAGE_FLOW
    share, slope, bias, floor = tc.PAGE_INTENT
    t4 = np.minimum(t3 + share * expit(slope * x[None, :] + bias) * (floor + rec), 1.0)  # r < 1 always
    table[_R_INTENT_PAGE:_R_GENERIC_PAGE] = _log((t4 - t3) / _NINT)
    table[_R_GENERIC_PAGE:] = _log((1.0 - t4) / _NGEN)

    return _Model(s_pref, s_cat, s_brand, log_prior, _log(device), _log(candidate), _log(qbrand), _log(qcat),
                  page_ok, page_constrains, page_kind, item_brand, item_cat, pop, inv_pool, inv_brand,
                  taste_mean, g_sd, table,
                  pd.Index([f"item_{i:04d}" for i in range(ni)]), pd.Index(list(pages)))


def _model() -> _Model:
    global _MODEL
    if _MODEL is None:
        _MODEL = _build_model()
    return _MODEL


# --------------------------------------------------------------------------------------------------
# Observations
# --------------------------------------------------------------------------------------------------
@dataclass
class _Sequence:
    offsets: np.ndarray   # [n + 1]
    codes: np.ndarray     # [total] world indices
    owner: np.ndarray     # [total] impression of each element
    position: np.ndarray  # [total] 0-based position (most recent last)
    length: np.ndarray    # [n]


@dataclass
class _Observed:
    n: int
    flow: np.ndarray
    channel: np.ndarray
    device: np.ndarray
    plan: np.ndarray
    tenure: np.ndarray
    lines: np.ndarray
    days: np.ndarray
    item: np.ndarray
    has_query: np.ndarray
    q_brand: np.ndarray    # brand index of the query's brand word, -1 if none
    q_cat: np.ndarray      # category of the query's category word, -1 if none
    q_intent: np.ndarray   # the query has an intent word
    items: _Sequence
    pages: _Sequence


def _codes(values, vocabulary: Sequence[str], column: str) -> np.ndarray:
    """``[n]`` index of each value in ``vocabulary``; ValueError on a value the generator cannot produce."""
    index = vocabulary if isinstance(vocabulary, pd.Index) else pd.Index(list(vocabulary))
    values = np.asarray(values, dtype=object)
    codes = index.get_indexer(values)
    if (codes < 0).any():
        raise ValueError(f"{column}: value {values[codes < 0][0]!r} is not in the telecom vocabulary")
    return codes.astype(np.int64)


def _sequence(values: np.ndarray, index: pd.Index, column: str) -> _Sequence:
    length = np.fromiter((len(v) for v in values), dtype=np.int64, count=values.shape[0])
    if (length > tc.MAX_SEQUENCE_LENGTH).any():
        raise ValueError(f"{column}: sequences longer than {tc.MAX_SEQUENCE_LENGTH} are not telecom data")
    offsets = np.zeros(values.shape[0] + 1, dtype=np.int64)
    np.cumsum(length, out=offsets[1:])
    flat = np.concatenate([np.asarray(v, dtype=object) for v in values]) if offsets[-1] else np.array([], object)
    codes = index.get_indexer(flat)
    if (codes < 0).any():
        raise ValueError(f"{column}: value {flat[codes < 0][0]!r} is not in the telecom vocabulary")
    owner = np.repeat(np.arange(values.shape[0]), length)
    return _Sequence(offsets, codes.astype(np.int64), owner, np.arange(offsets[-1]) - offsets[owner], length)


def _parse_query(query: str) -> Tuple[int, int, int, int]:
    """``(has_query, brand index or -1, category index or -1, has intent word)`` of a query string."""
    if query == "":
        return 0, -1, -1, 0
    brand, cat, intent = -1, -1, 0
    for word in query.split(" "):
        if word in tc.BRANDS:
            brand = tc.BRANDS.index(word)
        elif word in _CAT_OF_WORD:
            cat = _CAT_OF_WORD[word]
        elif word in tc.INTENT_WORDS:
            intent = 1
        elif word not in tc.NOISE_WORDS:
            raise ValueError(f"search_query: word {word!r} of {query!r} is not a telecom query word")
    return 1, brand, cat, intent


def _observe(frame: pd.DataFrame, rows: np.ndarray) -> _Observed:
    """Observed features of the impressions whose representative rows are ``rows``."""
    m = _model()

    def col(name):
        return frame[name].to_numpy()[rows]

    queries = col("search_query")
    uniq, inverse = np.unique(queries.astype(str), return_inverse=True)
    parsed = np.array([_parse_query(q) for q in uniq], dtype=np.int64).reshape(-1, 4)[inverse]
    return _Observed(
        n=rows.shape[0],
        flow=_codes(col("flow"), tc.FLOWS, "flow"),
        channel=_codes(col("channel"), tc.CHANNELS, "channel"),
        device=_codes(col("device_os"), tc.DEVICE_OS, "device_os"),
        plan=_codes(col("plan"), tc.PLANS, "plan"),
        tenure=col("tenure_months").astype(np.float64),
        lines=col("lines_on_account").astype(np.float64),
        days=col("days_since_upgrade").astype(np.float64),
        item=_codes(col("item_id"), m.item_index, "item_id"),
        has_query=parsed[:, 0].astype(bool), q_brand=parsed[:, 1], q_cat=parsed[:, 2],
        q_intent=parsed[:, 3].astype(bool),
        items=_sequence(col("viewed_items"), m.item_index, "viewed_items"),
        pages=_sequence(col("viewed_pages"), m.page_index, "viewed_pages"),
    )


def _segment(owner: np.ndarray, n: int) -> sparse.csr_matrix:
    """``[n, len(owner)]`` 0/1 matrix summing elements into their impression."""
    k = owner.shape[0]
    return sparse.csr_matrix((np.ones(k), (owner, np.arange(k))), shape=(n, k))


def _take(obs: _Observed, lo: int, hi: int) -> _Observed:
    """Impressions ``[lo, hi)`` of ``obs``."""
    def seq(s: _Sequence) -> _Sequence:
        a, b = s.offsets[lo], s.offsets[hi]
        return _Sequence(s.offsets[lo:hi + 1] - a, s.codes[a:b], s.owner[a:b] - lo, s.position[a:b], s.length[lo:hi])

    fields = {k: v[lo:hi] for k, v in obs.__dict__.items() if isinstance(v, np.ndarray)}
    return _Observed(n=hi - lo, items=seq(obs.items), pages=seq(obs.pages), **fields)


# --------------------------------------------------------------------------------------------------
# Posterior
# --------------------------------------------------------------------------------------------------
def _normalize_log(logp: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Row-normalized ``exp(logp)`` ``[n, k]``; rows with no possible value use ``fallback`` instead.

    A row is impossible only for data the generator cannot produce; the fallback (the prior) keeps
    the output defined there.
    """
    top = logp.max(axis=1, keepdims=True)
    bad = ~np.isfinite(top[:, 0])
    if bad.any():
        logp = np.where(bad[:, None], fallback, logp)
        top = logp.max(axis=1, keepdims=True)
    p = np.exp(logp - top)
    return p / p.sum(axis=1, keepdims=True)


def _state_posterior(obs: _Observed) -> np.ndarray:
    """``[n, S]`` posterior of the discrete hidden state given the observations that depend on it."""
    m = _model()
    n = obs.n
    logp = m.log_prior[obs.flow] + m.log_device[obs.device] + m.log_candidate[obs.item]

    # viewed items: position-dependent mixture of the wanted pool, the preferred brand and popularity
    it = obs.items
    if it.codes.shape[0]:
        ib, ic = m.item_brand[it.codes], m.item_cat[it.codes]
        rec = (it.position + 1) / it.length[it.owner]
        p_rel = tc.VIEWED_ITEM_WANTED[0] + tc.VIEWED_ITEM_WANTED[1] * rec
        wanted = (ib[:, None] == m.s_brand[None, :]) & (ic[:, None] == m.s_cat[None, :])
        preferred = ib[:, None] == m.s_pref[None, :]
        lik = ((1.0 - tc.VIEWED_ITEM_PREFERRED - p_rel) * m.pop[it.codes])[:, None] \
            + (p_rel * m.inv_pool[ib, ic])[:, None] * wanted \
            + (tc.VIEWED_ITEM_PREFERRED * m.inv_brand[ib])[:, None] * preferred
        logp = logp + _segment(it.owner, n) @ np.log(lik)

    # brand x category and category pages must match the wanted brand / category
    pg = obs.pages
    sel = m.page_constrains[pg.codes]
    if sel.any():
        bad = _segment(pg.owner[sel], n) @ (~m.page_ok[pg.codes[sel]]).astype(np.float64)
        logp = np.where(bad > 0, _IMPOSSIBLE, logp)

    # query brand and category words
    q = obs.has_query & (obs.q_brand >= 0)
    logp[q] += m.log_qbrand[obs.q_brand[q]]
    q = obs.has_query & (obs.q_cat >= 0)
    logp[q] += m.log_qcat[obs.q_cat[q]]
    return _normalize_log(logp, m.log_prior[obs.flow])


def _intent_posterior(obs: _Observed) -> np.ndarray:
    """``[n, G]`` posterior of the intent on :data:`_INTENT_GRID` (normalized weights)."""
    m = _model()
    n = obs.n
    rows_, owners = [], []

    def add(owner: np.ndarray, row: np.ndarray):
        owners.append(owner)
        rows_.append(row)

    imp = np.arange(n)
    nz = obs.items.length > 0   # a zero length has an intent-free probability
    add(imp[nz], _R_ITEMS_LEN + obs.items.length[nz] - 1)
    nz = obs.pages.length > 0
    add(imp[nz], _R_PAGES_LEN + obs.pages.length[nz] - 1)
    add(imp, _R_HAS_QUERY + 2 * obs.channel + obs.has_query)
    add(imp[obs.has_query], _R_INTENT_WORD + obs.q_intent[obs.has_query])
    pg = obs.pages
    kind = m.page_kind[pg.codes]
    cell = (pg.length[pg.owner] - 1) * tc.MAX_SEQUENCE_LENGTH + pg.position
    add(pg.owner[kind == 1], _R_INTENT_PAGE + cell[kind == 1])
    add(pg.owner[kind == 0], _R_GENERIC_PAGE + cell[kind == 0])
    owner, row = np.concatenate(owners), np.concatenate(rows_)
    counts = sparse.csr_matrix((np.ones(owner.shape[0]), (owner, row)), shape=(n, _R_TOTAL))
    # a row's entries are summed in float; -inf (impossible) entries stay -inf and never meet +inf
    logp = counts @ m.intent_table - 0.5 * _INTENT_GRID[None, :] ** 2
    prior = np.broadcast_to(-0.5 * _INTENT_GRID[None, :] ** 2, logp.shape)
    return _normalize_log(logp, prior)


def _gauss_rule(weights: np.ndarray, points: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
    """Per-row ``k``-point Gauss rule ``(nodes [n, k], weights [n, k])`` of discrete measures.

    ``weights [n, G]`` on ``points [G]``: the rule integrates polynomials of degree < 2k exactly
    against each row's measure (Lanczos tridiagonalization + Golub-Welsch), so smooth functions of
    the intent are integrated with the accuracy of the fine grid at the cost of ``k`` evaluations.
    """
    mean = weights @ points
    sd = np.sqrt(np.maximum(weights @ points ** 2 - mean ** 2, 1e-12))
    y = (points[None, :] - mean[:, None]) / sd[:, None]   # standardized: keeps the recursion well scaled
    n = weights.shape[0]
    q = np.sqrt(weights)
    q_prev = np.zeros_like(q)
    basis = [q]
    beta_prev = np.zeros(n)
    jacobi = np.zeros((n, k, k))
    for j in range(k):
        yq = y * q
        alpha = np.einsum("ng,ng->n", yq, q)
        r = yq - alpha[:, None] * q - beta_prev[:, None] * q_prev
        for b in basis:   # full reorthogonalization: cheap for small k, keeps the rule exact
            r -= np.einsum("ng,ng->n", r, b)[:, None] * b
        beta = np.sqrt(np.einsum("ng,ng->n", r, r))
        jacobi[:, j, j] = alpha
        if j + 1 < k:
            jacobi[:, j, j + 1] = jacobi[:, j + 1, j] = beta
        # a measure with fewer than k support points ends the recursion: the decoupled block of
        # the Jacobi matrix then gets zero weight
        ok = beta > 1e-12
        q_prev, q = q, np.where(ok[:, None], r / np.where(ok, beta, 1.0)[:, None], 0.0)
        basis.append(q)
        beta_prev = np.where(ok, beta, 0.0)
    nodes, vectors = np.linalg.eigh(jacobi)
    return mean[:, None] + sd[:, None] * nodes, vectors[:, 0, :] ** 2


# --------------------------------------------------------------------------------------------------
# Label probabilities
# --------------------------------------------------------------------------------------------------
def _observed_logits(obs: _Observed) -> Tuple[np.ndarray, np.ndarray]:
    """``([n, 3] logits without the hidden terms, [n] log relative price)``.

    The hidden terms (intent, wanted/preferred brand matches, taste mean, Gaussian noises) are added
    per hidden configuration in :func:`_expectations`.
    """
    w = tc._world()
    m = _model()
    f, item = obs.flow, obs.item
    ib, ic = m.item_brand[item], m.item_cat[item]
    it = obs.items
    seen_brand = np.bincount(it.owner, weights=m.item_brand[it.codes] == ib[it.owner], minlength=obs.n)
    seen_same = np.bincount(it.owner, weights=it.codes == item[it.owner], minlength=obs.n) > 0
    frac_brand = seen_brand / np.maximum(it.length, 1)
    pg = obs.pages
    cart_pages = np.bincount(pg.owner, weights=(pg.codes >= _NGEN + 1) & (pg.codes < _NGEN + _NINT),
                             minlength=obs.n) > 0
    q_brand = obs.has_query & (obs.q_brand == ib)
    q_cat = obs.has_query & (obs.q_cat == ic)
    sens_mean = tc.FLOW_PRICE_SENS[f] + tc.price_sensitivity_mean(obs.plan)
    logits = tc.observed_logits(f, obs.channel, obs.plan, obs.device, obs.tenure, obs.lines, obs.days,
                                obs.has_query, item, frac_brand, seen_same, q_brand, q_cat, cart_pages, sens_mean)
    return logits, w.log_rel_price[item]


def _expectations(obs: _Observed, intent_nodes: int, noise_nodes: Tuple[int, int],
                  prune: float) -> np.ndarray:
    """``[n, 3]``: ``E[pc], E[pc pa], E[pc pa pb]`` given each impression's features."""
    m = _model()
    n = obs.n
    base, log_rel = _observed_logits(obs)
    item = obs.item
    ib, ic = m.item_brand[item], m.item_cat[item]

    # the labels depend on the state only through (pref, candidate is the wanted brand,
    # candidate is the wanted category): aggregate the state posterior onto these 20 configurations
    post = _state_posterior(obs)
    config = (m.s_pref[None, :] * 4 + (ib[:, None] == m.s_brand[None, :]) * 2
              + (ic[:, None] == m.s_cat[None, :]))
    n_config = tc.MAIN_BRANDS * 4
    weight = np.bincount((np.arange(n)[:, None] * n_config + config).ravel(), weights=post.ravel(),
                         minlength=n * n_config).reshape(n, n_config)
    weight = np.where(weight > prune, weight, 0.0)   # drop configurations without posterior mass
    weight /= weight.sum(axis=1, keepdims=True)
    imp, cfg = np.nonzero(weight)
    pref, m_brand, m_cat = cfg // 4, (cfg // 2) % 2, cfg % 2

    # intent: per-impression Gauss rule of its posterior (independent of the state a posteriori)
    nodes, node_w = _gauss_rule(_intent_posterior(obs), _INTENT_GRID, intent_nodes)

    # customer-level noises: g (taste noise on the item + offset) and the price-sensitivity noise
    z1, w1 = np.polynomial.hermite_e.hermegauss(noise_nodes[0])
    z2, w2 = np.polynomial.hermite_e.hermegauss(noise_nodes[1])
    zg, ze = (a.ravel() for a in np.meshgrid(z1, z2, indexing="ij"))
    wz = np.outer(w1, w2).ravel() / (2.0 * math.pi)

    it = item[imp]
    hidden = tc.AFFINITY_SCALE * (tc.WANTED_BRAND_WEIGHT * m_brand + tc.WANTED_CATEGORY_WEIGHT * m_cat
                                  + tc.FLOW_LOYALTY[obs.flow[imp]] * (ib[imp] == pref)
                                  + tc.TASTE_WEIGHT * m.taste_mean[pref, it])
    g_sd = m.g_sd[it]
    price_noise = -tc.PRICE_SENS_NOISE_SD * log_rel[imp]
    price_coef = np.array([tc.AFFINITY_SCALE, tc.ATC_SHARE * tc.AFFINITY_SCALE + 0.4,
                           tc.BUY_SHARE * tc.AFFINITY_SCALE + 0.5])
    probs = []
    for t in range(3):
        # [pairs, intent nodes, noise nodes]
        logit = ((base[imp, t] + _SHARE[t] * hidden)[:, None, None]
                 + _INTENT_COEF[t] * nodes[imp][:, :, None]
                 + (_SHARE[t] * g_sd)[:, None, None] * zg[None, None, :]
                 + (price_coef[t] * price_noise)[:, None, None] * ze[None, None, :])
        probs.append(expit(logit))
    pc, pa, pb = probs
    pca = pc * pa
    pcab = pca * pb
    pair_w = weight[imp, cfg][:, None] * node_w[imp]   # [pairs, intent nodes]
    out = np.empty((n, 3))
    for t, p in enumerate((pc, pca, pcab)):
        per_pair = np.einsum("pkm,m,pk->p", p, wz, pair_w)
        out[:, t] = np.bincount(imp, weights=per_pair, minlength=n)
    return out


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------
def ceiling_probabilities(frame: pd.DataFrame, *, intent_nodes: int = 8, noise_nodes: Tuple[int, int] = (6, 4),
                          chunk_impressions: int = 4096, prune: float = 1e-10) -> np.ndarray:
    """Bayes-optimal probability of each row's label given only that row's feature columns.

    ``ceiling[i] = E[label_i | x_i, row i exists] = E[oracle_p_i | x_i, row i exists]`` under the
    telecom generator, where ``x_i`` are the row's features (see the module docstring):

    * ``CTR``: ``E[p_click | x]``; ``ATC``: ``E[p_click p_atc | x]``;
      ``CTCVR``: ``E[p_click p_atc p_buy | x]``;
    * ``CVR`` (rows exist only for clicked impressions): ``E[p_click p_atc p_buy | x] / E[p_click | x]``.

    Args:
      frame: long-format frame as produced by :func:`grec_tf.data.telecom.generate_frames`, ``[rows]``.
        Reads only ``flow``, ``use_case``, the context columns, ``search_query``, ``viewed_pages``,
        ``viewed_items``, ``item_id`` and, if present, ``impression_id`` (only to compute each
        impression once; without it every row is computed on its own). ``label``, ``oracle_p`` and
        ``customer_id`` are never read and may be absent.
      intent_nodes: Gauss nodes per impression for the intent posterior.
      noise_nodes: Gauss-Hermite nodes for the two customer-level Gaussian noises.
      chunk_impressions: impressions processed at once (bounds memory).
      prune: hidden configurations with less posterior mass are dropped (the rest renormalized).

    Returns:
      float64 array ``[rows]`` in (0, 1), aligned with ``frame``'s rows.

    Raises:
      ValueError: on a use case, flow, category, item, page or query word the generator cannot produce.
    """
    n_rows = len(frame)
    use_case = _codes(frame["use_case"].to_numpy(), tc.USE_CASES, "use_case")
    if "impression_id" in frame.columns:
        imp_of_row, _ = pd.factorize(frame["impression_id"].to_numpy(), sort=False)
        n_imp = int(imp_of_row.max()) + 1 if n_rows else 0
        first = np.empty(n_imp, dtype=np.int64)
        first[imp_of_row[::-1]] = np.arange(n_rows)[::-1]   # first row of each impression
    else:
        imp_of_row = np.arange(n_rows)
        n_imp, first = n_rows, np.arange(n_rows)
    if n_rows == 0:
        return np.zeros(0, dtype=np.float64)

    obs = _observe(frame, first)
    expect = np.empty((n_imp, 3))
    for lo in range(0, n_imp, chunk_impressions):
        hi = min(n_imp, lo + chunk_impressions)
        expect[lo:hi] = _expectations(_take(obs, lo, hi), intent_nodes, tuple(noise_nodes), prune)

    e = expect[imp_of_row]
    out = np.select([use_case == 0, use_case == 1, use_case == 2],
                    [e[:, 0], e[:, 1], e[:, 2] / e[:, 0]], default=e[:, 2])
    return out.astype(np.float64)
