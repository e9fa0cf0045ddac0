"""The Bayes ceiling of the synthetic telecom dataset: the best prediction from a row's features alone.

Every long-format row carries ``oracle_p``, the exact probability its label was drawn with. That
oracle reads hidden variables no model sees:

* per session: the purchase ``intent`` (N(0, 1)), the wanted category and the wanted brand;
* per customer: the preferred brand, the taste noise (``taste = brand_latent[pref] + 0.8 N(0, I)``),
  the price-sensitivity noise (``0.25 N``) and the affinity offset (``0.3 N``).

A model only sees the row's feature columns ``x``. The best any model can do from ``x`` is the
posterior expectation under the generator, the **Bayes ceiling**::

    ceiling(x) = E[label | x, the row exists] = E[oracle_p | x, the row exists]

It is computed exactly (up to quadrature error far below 1e-4) with perfect knowledge of the
generative model - the fixed world (:mod:`.world`), the observation model (:mod:`.observation_model`)
and the label model (:mod:`.label_model`), shared with the generator - but none of the per-seed
random draws. Because it averages over the hidden variables instead of knowing them, its AUC is
below the oracle's; the difference is the part of the "AUC gap to the oracle" that no model can close.

How (per impression; all rows of an impression share their features):

1. Observations are mapped back to world indices (:mod:`.ceiling_observations`).
2. The hidden state is the discrete ``s = (pref, want_cat, want_brand)`` (85 combinations with a
   non-empty brand x category pool; ``loyal`` is summed out) and the continuous ``intent``; the
   posterior factorizes into ``p(s | x)`` (exact) and ``p(intent | x)`` (a per-impression Gauss rule)
   (:mod:`.ceiling_posterior`, tables in :mod:`.ceiling_likelihood`).
3. The customer-level Gaussian noises are independent of every observation; they enter the three
   logits linearly as two independent normals (taste noise projected on the item + offset, and the
   price-sensitivity noise times the item's log relative price) and are integrated with a tensor
   Gauss-Hermite rule.
4. Products are taken inside the expectation (all three funnel steps share the hidden variables):
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
from typing import Tuple

import numpy as np
import pandas as pd
from scipy.special import expit

from grec_tf.data.telecom import label_model as lm
from grec_tf.data.telecom.ceiling_likelihood import INTENT_GRID, likelihood
from grec_tf.data.telecom.ceiling_observations import Observed, codes, observe, take
from grec_tf.data.telecom.ceiling_posterior import gauss_rule, intent_posterior, state_posterior
from grec_tf.data.telecom.schema import FLOWS, USE_CASES
from grec_tf.data.telecom.world import MAIN_BRANDS, fixed_world
from grec_tf.errors import DataError

__all__ = ["ceiling_probabilities"]

_SHARE = np.array(lm.AFFINITY_SHARE)


def observed_part(obs: Observed) -> Tuple[np.ndarray, np.ndarray]:
    """``([n, 3] logits without the hidden terms, [n] log relative price)``.

    The hidden terms (intent, wanted/preferred brand matches, taste mean, Gaussian noises) are added
    per hidden configuration in :func:`_expectations`.
    """
    it, pg = obs.items, obs.pages
    evidence = lm.candidate_evidence(obs.item, it.owner, it.codes, it.length, pg.owner, pg.codes,
                                     obs.has_query, obs.q_brand, obs.q_cat)
    sens_mean = lm.FLOW_PRICE_SENS[obs.flow] + lm.price_sensitivity_mean(obs.plan)
    logits = lm.observed_funnel(obs.flow, obs.channel, obs.plan, obs.device, obs.tenure, obs.lines, obs.days,
                                obs.has_query, obs.item, *evidence, sens_mean).logits
    return logits, fixed_world().log_rel_price[obs.item]


def _configuration_weights(obs: Observed, prune: float) -> np.ndarray:
    """``[n, MAIN_BRANDS * 4]`` posterior of (pref, candidate is the wanted brand, candidate is the
    wanted category): the labels depend on the state only through these, config = pref * 4 + 2 b + c.
    Configurations with at most ``prune`` mass are dropped and the rest renormalized."""
    m = likelihood()
    n = obs.n
    ib, ic = m.item_brand[obs.item], m.item_cat[obs.item]
    post = state_posterior(obs)
    config = (m.s_pref[None, :] * 4 + (ib[:, None] == m.s_brand[None, :]) * 2
              + (ic[:, None] == m.s_cat[None, :]))
    n_config = MAIN_BRANDS * 4
    weight = np.bincount((np.arange(n)[:, None] * n_config + config).ravel(), weights=post.ravel(),
                         minlength=n * n_config).reshape(n, n_config)
    weight = np.where(weight > prune, weight, 0.0)   # drop configurations without posterior mass
    return weight / weight.sum(axis=1, keepdims=True)


def _noise_rule(noise_nodes: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tensor Gauss-Hermite rule for two independent standard normals: ``(z_g, z_e, weights)``, each ``[M]``."""
    z1, w1 = np.polynomial.hermite_e.hermegauss(noise_nodes[0])
    z2, w2 = np.polynomial.hermite_e.hermegauss(noise_nodes[1])
    zg, ze = (a.ravel() for a in np.meshgrid(z1, z2, indexing="ij"))
    return zg, ze, np.outer(w1, w2).ravel() / (2.0 * math.pi)


def _expectations(obs: Observed, intent_nodes: int, noise_nodes: Tuple[int, int], prune: float) -> np.ndarray:
    """``[n, 3]``: ``E[pc], E[pc pa], E[pc pa pb]`` given each impression's features."""
    m = likelihood()
    n = obs.n
    base, log_rel = observed_part(obs)
    weight = _configuration_weights(obs, prune)
    imp, cfg = np.nonzero(weight)                    # [pairs] of (impression, configuration)
    pref, m_brand, m_cat = cfg // 4, (cfg // 2) % 2, cfg % 2
    nodes, node_w = gauss_rule(intent_posterior(obs), INTENT_GRID, intent_nodes)
    zg, ze, wz = _noise_rule(noise_nodes)

    it = obs.item[imp]
    hidden = lm.AFFINITY_SCALE * lm.hidden_affinity(obs.flow[imp], m_brand, m_cat, m.item_brand[it] == pref,
                                                    m.taste_mean[pref, it])
    g_sd = m.g_sd[it]
    price_noise = -lm.PRICE_SENS_NOISE_SD * log_rel[imp]
    probs = []
    for t in range(3):
        # [pairs, intent nodes, noise nodes]
        logit = ((base[imp, t] + _SHARE[t] * hidden)[:, None, None]
                 + lm.INTENT_IN_LOGITS[t] * nodes[imp][:, :, None]
                 + (_SHARE[t] * g_sd)[:, None, None] * zg[None, None, :]
                 + (lm.PRICE_SENSITIVITY_IN_LOGITS[t] * price_noise)[:, None, None] * ze[None, None, :])
        probs.append(expit(logit))
    pc, pa, pb = probs
    pca = pc * pa
    pair_w = weight[imp, cfg][:, None] * node_w[imp]   # [pairs, intent nodes]
    out = np.empty((n, 3))
    for t, p in enumerate((pc, pca, pca * pb)):
        per_pair = np.einsum("pkm,m,pk->p", p, wz, pair_w)
        out[:, t] = np.bincount(imp, weights=per_pair, minlength=n)
    return out


def _impressions_of_rows(frame: pd.DataFrame) -> Tuple[np.ndarray, np.ndarray]:
    """``(impression of each row [rows], first row of each impression [impressions])``; without an
    ``impression_id`` column every row is its own impression."""
    n_rows = len(frame)
    if "impression_id" not in frame.columns:
        return np.arange(n_rows), np.arange(n_rows)
    imp_of_row, _ = pd.factorize(frame["impression_id"].to_numpy(), sort=False)
    n_imp = int(imp_of_row.max()) + 1 if n_rows else 0
    first = np.empty(n_imp, dtype=np.int64)
    first[imp_of_row[::-1]] = np.arange(n_rows)[::-1]
    return imp_of_row, first


def _check_default_world(frame: pd.DataFrame) -> None:
    """DataError on a row of a larger task world's extra flows or use cases: the ceiling integrates
    the default world's label model only. (Default task sentences keep their exact distribution in a
    larger world, so their rows are accepted.)"""
    for column, names, key in (("flow", FLOWS, "data.telecom_flows"),
                               ("use_case", USE_CASES, "data.telecom_use_cases")):
        values = pd.unique(frame[column].to_numpy()) if column in frame.columns else []
        extra = [v for v in values if v not in names]
        if extra:
            raise DataError(f"the Bayes ceiling covers the default telecom world only ({len(FLOWS)} flows "
                            f"{', '.join(FLOWS)} x {len(USE_CASES)} use cases {', '.join(USE_CASES)}); got "
                            f"{extra[0]!r}, a {column} of a larger task world ({key} above the default); "
                            f"drop those rows or compare with the oracle instead", column=column)


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
      DataError: on a flow or use case of a larger task world (:mod:`.task_world`), which the ceiling
        does not model.
      ValueError: on a use case, flow, category, item, page or query word the generator cannot produce.
    """
    _check_default_world(frame)
    use_case = codes(frame["use_case"].to_numpy(), USE_CASES, "use_case")
    imp_of_row, first = _impressions_of_rows(frame)
    if len(frame) == 0:
        return np.zeros(0, dtype=np.float64)
    obs = observe(frame, first)
    n_imp = first.shape[0]
    expect = np.empty((n_imp, 3))
    for lo in range(0, n_imp, chunk_impressions):
        hi = min(n_imp, lo + chunk_impressions)
        expect[lo:hi] = _expectations(take(obs, lo, hi), intent_nodes, tuple(noise_nodes), prune)
    e = expect[imp_of_row]
    out = np.select([use_case == 0, use_case == 1, use_case == 2],
                    [e[:, 0], e[:, 1], e[:, 2] / e[:, 0]], default=e[:, 2])
    return out.astype(np.float64)
