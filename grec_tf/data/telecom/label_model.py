"""The planted label model of the telecom dataset: a click -> add-to-cart -> purchase funnel.

Shared by the generator (:mod:`.simulation` draws the labels from it) and the Bayes ceiling
(:mod:`.ceiling` integrates its hidden terms out). The three logits share one affinity ``A``::

    A      = hidden + observed part
    hidden = intent + match(candidate, wanted brand/category) + flow brand loyalty * [preferred brand]
             + taste u.z + customer offset                                  (:func:`hidden_affinity`)
    observed part = item appeal + rating - price sensitivity * log relative price
             + seen-in-sequence / query-word matches + plan, tenure, lines, upgrade eligibility, device
    click  ~ Bernoulli(sigmoid(b_click[flow] + A + click terms))             (channel, query, cart pages)
    atc    ~ Bernoulli(sigmoid(b_atc[flow] + 0.35 A + add-to-cart terms))    (intent, price, rating)
    buy    ~ Bernoulli(sigmoid(b_buy[flow] + 0.2 A + purchase terms))       (credit, store, eligibility)

(``A`` is scaled by :data:`AFFINITY_SCALE`.) Flows change behaviour: ``NSE`` is price-sensitive and
barely brand-loyal, ``EUP`` brand-loyal and price-tolerant (and buys when eligible for an upgrade),
``AAL`` in between (buys more with more lines).

The customer's taste ``u`` is the preferred brand's latent plus ``TASTE_NOISE_SD`` x N(0, I); the
price sensitivity is the flow's plus the plan's mean (:func:`price_sensitivity_mean`) plus
``PRICE_SENS_NOISE_SD`` x N(0, 1); the offset is ``CUSTOMER_OFFSET_SD`` x N(0, 1).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Tuple

import numpy as np

from grec_tf.data.telecom.world import FIRST_FLOW_PAGE, FIRST_INTENT_PAGE, fixed_world

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
ATC_PRICE_WEIGHT = 0.4   # extra price penalty of add-to-cart, per unit of sensitivity x log relative price
BUY_PRICE_WEIGHT = 0.5   # ... and of the purchase
# hidden terms of the affinity (weights) and the spread of the customer-level noises
INTENT_WEIGHT = 0.9
WANTED_BRAND_WEIGHT = 0.8
WANTED_CATEGORY_WEIGHT = 0.5
TASTE_WEIGHT = 0.45
TASTE_NOISE_SD = 0.8
PRICE_SENS_NOISE_SD = 0.25
CUSTOMER_OFFSET_SD = 0.3



@dataclass(frozen=True, eq=False)
class FlowParameters:
    """The per-flow parameters of the label model, each ``[flows]`` (index = the flow's index).

    ``template`` is the default flow (0 AAL, 1 EUP, 2 NSE) whose flow-specific terms a flow shares:
    upgrade eligibility (EUP), lines on the account (AAL), no tenure penalty (NSE).
    """

    template: np.ndarray
    loyalty: np.ndarray
    price_sens: np.ndarray
    b_click: np.ndarray
    b_atc: np.ndarray
    b_buy: np.ndarray
    center: np.ndarray


#: The three default flows' parameters (the module constants above).
DEFAULT_FLOW_PARAMETERS = FlowParameters(np.arange(3), FLOW_LOYALTY, FLOW_PRICE_SENS, B_CLICK, B_ATC, B_BUY,
                                         AFFINITY_CENTER)
#: The observed terms an extra use case weighs (:func:`observed_funnel`), in column order.
OBSERVED_TERMS = ("rating", "price", "query", "cart_pages", "seen_same", "upgrade_eligible")

#: How the hidden affinity enters the click / add-to-cart / purchase logits.
AFFINITY_SHARE = (1.0, ATC_SHARE, BUY_SHARE)
#: Coefficient of the intent in the three logits (through the affinity, plus ATC_INTENT for add-to-cart).
INTENT_IN_LOGITS = (AFFINITY_SCALE * INTENT_WEIGHT,
                    ATC_SHARE * AFFINITY_SCALE * INTENT_WEIGHT + ATC_INTENT,
                    BUY_SHARE * AFFINITY_SCALE * INTENT_WEIGHT)
#: Coefficient of ``-(price sensitivity) x log relative price`` in the three logits.
PRICE_SENSITIVITY_IN_LOGITS = (AFFINITY_SCALE, ATC_SHARE * AFFINITY_SCALE + ATC_PRICE_WEIGHT,
                               BUY_SHARE * AFFINITY_SCALE + BUY_PRICE_WEIGHT)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def price_sensitivity_mean(plan: np.ndarray) -> np.ndarray:
    """A customer's price sensitivity given the plan index (prepaid more, premium less); the customer's
    own sensitivity adds ``PRICE_SENS_NOISE_SD`` x N(0, 1)."""
    return 0.35 * (plan == 3) - 0.25 * (plan == 0)


def hidden_affinity(flow: np.ndarray, wanted_brand_match: np.ndarray, wanted_category_match: np.ndarray,
                    preferred_brand_match: np.ndarray, taste: np.ndarray, intent=0.0, offset=0.0,
                    params: FlowParameters = DEFAULT_FLOW_PARAMETERS) -> np.ndarray:
    """``[n]`` the hidden part of the affinity, before ``AFFINITY_SCALE``.

    ``taste`` is ``u.z / taste_scale``; the generator passes the customer's own taste, intent and
    offset, the Bayes ceiling the taste's mean and leaves intent and offset to its quadrature (0).
    ``flow`` indexes ``params`` (the default flows unless a task world passes its own).
    """
    return (INTENT_WEIGHT * intent + WANTED_BRAND_WEIGHT * wanted_brand_match
            + WANTED_CATEGORY_WEIGHT * wanted_category_match + params.loyalty[flow] * preferred_brand_match
            + TASTE_WEIGHT * taste + offset)


def candidate_evidence(item: np.ndarray, items_owner: np.ndarray, items_codes: np.ndarray,
                       items_length: np.ndarray, pages_owner: np.ndarray, pages_codes: np.ndarray,
                       has_query: np.ndarray, query_brand: np.ndarray, query_category: np.ndarray):
    """The observable matches of each impression's candidate, ``(frac_brand, seen_same, q_brand, q_cat,
    cart_pages)``, each ``[n]``.

    Args:
      item: ``[n]`` candidate item index.
      items_owner, items_codes: ``[m]`` impression and item index of every viewed item.
      items_length: ``[n]`` viewed items per impression.
      pages_owner, pages_codes: ``[p]`` impression and page index of every viewed page.
      has_query: ``[n]``; query_brand / query_category: ``[n]`` the query's brand / category index, -1 if none.
    """
    w = fixed_world()
    n = item.shape[0]
    ib, ic = w.brand[item], w.category[item]
    seen_brand = np.bincount(items_owner, weights=(w.brand[items_codes] == ib[items_owner]), minlength=n)
    seen_same = np.bincount(items_owner, weights=(items_codes == item[items_owner]), minlength=n) > 0
    frac_brand = seen_brand / np.maximum(items_length, 1)
    q_brand = has_query & (query_brand == ib)
    q_cat = has_query & (query_category == ic)
    cart = (pages_codes >= FIRST_INTENT_PAGE + 1) & (pages_codes < FIRST_FLOW_PAGE)   # cart, checkout
    cart_pages = np.bincount(pages_owner, weights=cart, minlength=n) > 0
    return frac_brand, seen_same, q_brand, q_cat, cart_pages


class ObservedFunnel(NamedTuple):
    """The observed part of the planted model: ``logits [n, 3]`` (click / add-to-cart / purchase without
    the hidden terms), ``affinity [n]`` (the observed part of the shared affinity ``A``, scaled and
    centred as it enters the click logit) and ``terms [n, len(OBSERVED_TERMS)]``."""

    logits: np.ndarray
    affinity: np.ndarray
    terms: np.ndarray


def observed_funnel(flow: np.ndarray, channel: np.ndarray, plan: np.ndarray, device: np.ndarray,
                    tenure: np.ndarray, lines: np.ndarray, days_upgrade: np.ndarray, has_query: np.ndarray,
                    item: np.ndarray, frac_brand: np.ndarray, seen_same: np.ndarray, q_brand: np.ndarray,
                    q_cat: np.ndarray, cart_pages: np.ndarray, sens: np.ndarray,
                    params: FlowParameters = DEFAULT_FLOW_PARAMETERS) -> ObservedFunnel:
    """The planted model without its hidden terms (see :class:`ObservedFunnel`).

    Every input is per impression (``[n]``; indices into the flows of ``params``, CHANNELS, PLANS,
    DEVICE_OS and the catalogue, or the candidate's matches from :func:`candidate_evidence`). ``sens``
    is the price sensitivity (flow's plus customer's): the generator passes the customer's own, the
    Bayes ceiling its mean given the plan. The hidden terms (:func:`hidden_affinity`) enter as
    ``AFFINITY_SCALE x hidden`` times :data:`AFFINITY_SHARE`, plus ``ATC_INTENT x intent`` for
    add-to-cart (:func:`funnel_logits`).
    """
    w = fixed_world()
    template = params.template[flow]
    rating_z = (w.rating[item] - 4.0) / 0.4
    log_rel = w.log_rel_price[item]
    eligible = sigmoid((days_upgrade - 700.0) / 120.0) * (template == 1)
    ctx = (PLAN_EFFECT[plan] - 0.12 * np.log1p(tenure) / np.log(100.0) * (template != 2)
           + 0.15 * (lines - 2.0) * (template == 0) + 0.6 * eligible + 0.1 * (device == 0))
    affinity = AFFINITY_SCALE * (0.4 * w.appeal[item] + 0.25 * rating_z - sens * log_rel
                                 + 0.4 * frac_brand + 0.35 * seen_same + 0.35 * q_brand + 0.25 * q_cat
                                 + ctx) - params.center[flow]
    click = params.b_click[flow] + affinity + CHANNEL_CLICK[channel] + 0.25 * has_query + 0.25 * cart_pages
    atc = (params.b_atc[flow] + ATC_SHARE * affinity - ATC_PRICE_WEIGHT * sens * log_rel + 0.2 * rating_z
           + 0.3 * cart_pages)
    buy = (params.b_buy[flow] + BUY_SHARE * affinity + PLAN_CREDIT[plan] + CHANNEL_BUY[channel]
           - BUY_PRICE_WEIGHT * sens * log_rel + 0.8 * eligible + 0.25 * (lines >= 3) * (template == 0)
           + 0.15 * np.log1p(tenure) / np.log(100.0))
    terms = np.stack([rating_z, -sens * log_rel, has_query, cart_pages, seen_same, eligible], axis=1)
    return ObservedFunnel(np.stack([click, atc, buy], axis=1), affinity, terms)


def funnel_logits(observed: np.ndarray, hidden: np.ndarray, intent: np.ndarray) -> Tuple[np.ndarray, ...]:
    """``(click, add-to-cart, purchase)`` logits, each ``[n]``, from :func:`observed_funnel`'s ``logits [n, 3]``
    and the full :func:`hidden_affinity` ``[n]`` (intent included)."""
    click = observed[:, 0] + AFFINITY_SCALE * hidden
    atc = observed[:, 1] + ATC_SHARE * AFFINITY_SCALE * hidden + ATC_INTENT * intent
    buy = observed[:, 2] + BUY_SHARE * AFFINITY_SCALE * hidden
    return click, atc, buy
