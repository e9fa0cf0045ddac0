"""The Bayes ceiling's posterior of the hidden session variables given one impression's features.

The hidden state is the discrete ``s = (pref, want_cat, want_brand)`` and the continuous intent.
Every observation depends on either ``s`` or the intent, never both (see
:mod:`.observation_model`), so the posterior factorizes: ``p(s, intent | x) = p(s | x) p(intent | x)``.
``p(s | x)`` is exact (a sum over the states); ``p(intent | x)`` is computed on a fine grid and turned
into a per-impression Gauss rule (Lanczos / Golub-Welsch on the discrete posterior).
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
from scipy import sparse

from grec_tf.data.telecom import observation_model as om
from grec_tf.data.telecom.ceiling_likelihood import (
    INTENT_GRID, PAGE_GENERIC, PAGE_INTENT, R_GENERIC_PAGE, R_HAS_QUERY, R_INTENT_PAGE, R_INTENT_WORD, R_ITEMS_LEN,
    R_PAGES_LEN, R_TOTAL, likelihood)
from grec_tf.data.telecom.ceiling_observations import Observed
from grec_tf.data.telecom.schema import MAX_SEQUENCE_LENGTH

_IMPOSSIBLE = -np.inf  # log-probability of an impossible event


def normalize_log(logp: np.ndarray, fallback: np.ndarray) -> np.ndarray:
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


def _segment(owner: np.ndarray, n: int) -> sparse.csr_matrix:
    """``[n, len(owner)]`` 0/1 matrix summing elements into their impression."""
    k = owner.shape[0]
    return sparse.csr_matrix((np.ones(k), (owner, np.arange(k))), shape=(n, k))


def state_posterior(obs: Observed) -> np.ndarray:
    """``[n, S]`` posterior of the discrete hidden state given the observations that depend on it."""
    m = likelihood()
    n = obs.n
    logp = m.log_prior[obs.flow] + m.log_device[obs.device] + m.log_candidate[obs.item]

    # viewed items: position-dependent mixture of the wanted pool, the preferred brand and popularity
    it = obs.items
    if it.codes.shape[0]:
        ib, ic = m.item_brand[it.codes], m.item_cat[it.codes]
        p_rel = om.viewed_item_wanted_share((it.position + 1) / it.length[it.owner])
        wanted = (ib[:, None] == m.s_brand[None, :]) & (ic[:, None] == m.s_cat[None, :])
        preferred = ib[:, None] == m.s_pref[None, :]
        lik = ((1.0 - om.VIEWED_ITEM_PREFERRED - p_rel) * m.pop[it.codes])[:, None] \
            + (p_rel * m.inv_pool[ib, ic])[:, None] * wanted \
            + (om.VIEWED_ITEM_PREFERRED * m.inv_brand[ib])[:, None] * preferred
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
    return normalize_log(logp, m.log_prior[obs.flow])


def intent_posterior(obs: Observed) -> np.ndarray:
    """``[n, G]`` posterior of the intent on :data:`INTENT_GRID` (normalized weights)."""
    m = likelihood()
    n = obs.n
    imp = np.arange(n)
    items_seen, pages_seen = obs.items.length > 0, obs.pages.length > 0  # a zero length is intent-free
    pg = obs.pages
    kind = m.page_kind[pg.codes]
    cell = (pg.length[pg.owner] - 1) * MAX_SEQUENCE_LENGTH + pg.position
    # (impression, intent-table row) of every intent observation
    owner = np.concatenate([imp[items_seen], imp[pages_seen], imp, imp[obs.has_query],
                            pg.owner[kind == PAGE_INTENT], pg.owner[kind == PAGE_GENERIC]])
    row = np.concatenate([R_ITEMS_LEN + obs.items.length[items_seen] - 1,
                          R_PAGES_LEN + obs.pages.length[pages_seen] - 1,
                          R_HAS_QUERY + 2 * obs.channel + obs.has_query,
                          R_INTENT_WORD + obs.q_intent[obs.has_query],
                          R_INTENT_PAGE + cell[kind == PAGE_INTENT], R_GENERIC_PAGE + cell[kind == PAGE_GENERIC]])
    counts = sparse.csr_matrix((np.ones(owner.shape[0]), (owner, row)), shape=(n, R_TOTAL))
    # a row's entries are summed in float; -inf (impossible) entries stay -inf and never meet +inf
    logp = counts @ m.intent_table - 0.5 * INTENT_GRID[None, :] ** 2
    prior = np.broadcast_to(-0.5 * INTENT_GRID[None, :] ** 2, logp.shape)
    return normalize_log(logp, prior)


def gauss_rule(weights: np.ndarray, points: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
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
