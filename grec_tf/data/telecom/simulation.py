"""The telecom simulation, one function per stage: customers, sessions, candidates, viewed items and
pages, search queries (:mod:`.queries`) and the planted labels (:mod:`.label_model`).

* **Customers** (about one per 40 sessions) have a preferred brand, a taste vector (the brand's
  latent plus noise), a price sensitivity, an affinity offset and an activity level (how many of the
  sessions are theirs), and a context: ``device_os`` (by preferred brand), ``region``, ``plan``,
  ``tenure_months``, ``lines_on_account``, ``monthly_bill``, ``days_since_upgrade``. A quarter are
  **prospects** (no account: plan ``none``, numericals 0) who only shop in the ``NSE`` flow;
  existing customers shop in ``AAL`` or ``EUP``.
* A **session** (= impression) belongs to a customer drawn by activity and has a flow, a channel,
  and the hidden intent and wanted brand x category (:mod:`.observation_model`).
* The **candidate** item shown is picked by a simple recommender (partly relevant, partly popular),
  the **viewed items / pages** and the **query** are noisy views of the hidden state.
* The **labels** are drawn from the funnel of :mod:`.label_model`.

Every stage draws from one generator seeded by ``(seed, GENERATOR_VERSION)`` in a fixed order: the
order of the draws below is part of the dataset's definition. A larger :class:`.task_world.TaskWorld`
(more flows, more use cases) makes the same draws, then moves sessions to its extra flows and draws
its extra events from streams of their own.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict

import numpy as np

from grec_tf.data.telecom import label_model as lm
from grec_tf.data.telecom import observation_model as om
from grec_tf.data.telecom.queries import Queries, draw_queries
from grec_tf.data.telecom.sampling import choice, choice_rows, from_pool, sequence_layout
from grec_tf.data.telecom.schema import GENERATOR_VERSION, MAX_SEQUENCE_LENGTH
from grec_tf.data.telecom.task_world import DEFAULT_WORLD, TaskWorld
from grec_tf.data.telecom.world import (
    FIRST_CATEGORY_PAGE, FIRST_FLOW_PAGE, FIRST_INTENT_PAGE, GENERIC_PAGES, INTENT_PAGES, LATENT_DIM, fixed_world)

SESSIONS_PER_CUSTOMER = 40   # on average (GAUC groups)
PROSPECT_SHARE = 0.25
AAL_SHARE = 0.45             # existing customers' sessions in AAL, the rest in EUP
CHANNEL_SHARE = (0.36, 0.34, 0.20, 0.10)
REGION_SHARE = (0.22, 0.24, 0.2, 0.14, 0.2)
PLAN_SHARE = (0.22, 0.35, 0.27, 0.16)  # existing customers; prospects have plan "none"
PLAN_BILL_MULTIPLIER = (1.6, 1.3, 1.0, 0.8, 0.0)


def _cdf(shares) -> np.ndarray:
    return np.cumsum(shares) / sum(shares)


@dataclass
class Customers:
    prospect: np.ndarray         # [c] bool
    preferred_brand: np.ndarray  # [c] index into BRANDS (< MAIN_BRANDS)
    taste: np.ndarray            # [c, K]
    device: np.ndarray           # [c] index into DEVICE_OS
    region: np.ndarray           # [c] index into REGIONS
    plan: np.ndarray             # [c] index into PLANS
    tenure: np.ndarray           # [c] months
    lines: np.ndarray            # [c]
    bill: np.ndarray             # [c]
    days_upgrade: np.ndarray     # [c]
    price_sens: np.ndarray       # [c] the customer's part of the price sensitivity
    offset: np.ndarray           # [c] affinity offset
    activity: np.ndarray         # [c] relative number of sessions


@dataclass
class Sessions:
    customer: np.ndarray         # [n] index into the customers
    flow: np.ndarray             # [n] index into FLOWS (the default flows: the behaviour template)
    channel: np.ndarray          # [n] index into CHANNELS
    intent: np.ndarray           # [n] hidden purchase intent, N(0, 1)
    want_cat: np.ndarray         # [n] hidden wanted category
    want_brand: np.ndarray       # [n] hidden wanted brand
    preferred_brand: np.ndarray  # [n] the customer's preferred brand (hidden)


@dataclass
class Viewed:
    offsets: np.ndarray   # [n + 1]
    owner: np.ndarray     # [m] impression of each element
    codes: np.ndarray     # [m] item or page index, most recent last
    length: np.ndarray    # [n]


@dataclass
class Labels:
    click: np.ndarray     # [n] bool
    atc: np.ndarray       # [n] bool
    buy: np.ndarray       # [n] bool
    p_click: np.ndarray   # [n]
    p_atc: np.ndarray     # [n]
    p_buy: np.ndarray     # [n]
    events: np.ndarray    # [n, extra use cases] bool: the task world's extra events
    p_events: np.ndarray  # [n, extra use cases]


@dataclass
class Impressions:
    n: int
    world: TaskWorld
    flow: np.ndarray                # [n] index into world.flows
    item: np.ndarray                # [n] candidate item index
    context: Dict[str, np.ndarray]  # impression-level columns: customer_id, context codes and numericals
    queries: Queries
    viewed_items: Viewed
    viewed_pages: Viewed
    labels: Labels
    sessions: Sessions              # the hidden session draws (no model sees them)


def simulate_customers(rng: np.random.Generator, n_customers: int) -> Customers:
    """Draws the customers (see the module docstring)."""
    w = fixed_world()
    prospect = rng.random(n_customers) < PROSPECT_SHARE
    pref = choice(rng, _cdf(om.PREFERRED_BRAND_SHARE), n_customers)
    taste = w.brand_latent[pref] + lm.TASTE_NOISE_SD * rng.standard_normal((n_customers, LATENT_DIM))
    u = rng.random(n_customers)
    (a_ios, a_android), (o_ios, o_android) = om.DEVICE_OS_CDF["apple"], om.DEVICE_OS_CDF["other"]
    device = np.where(pref == 0, np.where(u < a_ios, 0, np.where(u < a_android, 1, 2)),
                      np.where(u < o_ios, 0, np.where(u < o_android, 1, 2)))
    region = choice(rng, _cdf(REGION_SHARE), n_customers)
    plan = np.where(prospect, 4, choice(rng, _cdf(PLAN_SHARE), n_customers))
    tenure = np.where(prospect, 0.0, np.clip(np.round(rng.gamma(1.6, 28.0, n_customers)), 1, 300))
    lines = np.where(prospect, 0.0, np.minimum(1 + rng.poisson(1.3, n_customers), 10)).astype(np.float64)
    bill = np.where(prospect, 0.0, np.round(np.maximum(
        15.0, 32.0 * lines * np.array(PLAN_BILL_MULTIPLIER)[plan] + 8.0 * rng.standard_normal(n_customers)), 2))
    days_upgrade = np.where(prospect, 0.0,
                            np.round(rng.random(n_customers) * np.minimum(tenure * 30.4, 1500.0)))
    price_sens = lm.price_sensitivity_mean(plan) + lm.PRICE_SENS_NOISE_SD * rng.standard_normal(n_customers)
    offset = lm.CUSTOMER_OFFSET_SD * rng.standard_normal(n_customers)
    activity = rng.gamma(2.0, 1.0, n_customers)
    return Customers(prospect, pref, taste, device, region, plan, tenure, lines, bill, days_upgrade,
                     price_sens, offset, activity)


def simulate_sessions(rng: np.random.Generator, customers: Customers, n: int) -> Sessions:
    """Draws ``n`` sessions: their customer, flow, channel and hidden intent / wanted item."""
    w = fixed_world()
    cust = choice(rng, np.cumsum(customers.activity) / customers.activity.sum(), n)
    flow = np.where(customers.prospect[cust], 2, (rng.random(n) >= AAL_SHARE).astype(np.int64))
    channel = choice(rng, np.cumsum(CHANNEL_SHARE), n)
    intent = rng.standard_normal(n)
    want_cat = choice_rows(rng.random(n), np.cumsum(om.FLOW_WANTS_CATEGORY, axis=1)[flow])
    pref = customers.preferred_brand[cust]
    loyal = (rng.random(n) < om.FLOW_LOYALTY_WANT[flow]) & (w.pool_size[pref, want_cat] > 0)
    other_brand = choice_rows(rng.random(n), w.cat_brand_cdf[want_cat])
    return Sessions(cust, flow, channel, intent, want_cat, np.where(loyal, pref, other_brand), pref)


def draw_candidates(rng: np.random.Generator, s: Sessions) -> np.ndarray:
    """``[n]`` candidate item: from the wanted brand x category, the wanted category, or by popularity."""
    w = fixed_world()
    n = s.flow.shape[0]
    r = rng.random(n)
    u = rng.random(n)
    pool = from_pool(u, w.pool_order, w.pool_start[s.want_brand, s.want_cat], w.pool_size[s.want_brand, s.want_cat])
    same_category = from_pool(u, w.cat_order, w.cat_start[s.want_cat], w.cat_size[s.want_cat])
    popular = choice(rng, w.popularity_cdf, n)
    return np.where(r < om.CANDIDATE_FROM_POOL, pool,
                    np.where(r < om.CANDIDATE_FROM_POOL + om.CANDIDATE_FROM_CATEGORY, same_category, popular))


def _viewed_lengths(rng: np.random.Generator, empty: np.ndarray, log_rate: tuple, intent: np.ndarray) -> np.ndarray:
    """``[n]`` sequence lengths: 0 with probability ``empty``, else min(1 + Poisson(rate(intent)), 20)."""
    zero = rng.random(intent.shape[0]) < empty
    length = np.minimum(1 + rng.poisson(np.exp(om.sequence_log_rate(log_rate, intent))), MAX_SEQUENCE_LENGTH)
    return np.where(zero, 0, length)


def draw_viewed_items(rng: np.random.Generator, s: Sessions) -> Viewed:
    """Viewed items (most recent last): the wanted pool (likelier near the end), the preferred brand,
    or popularity."""
    w = fixed_world()
    length = _viewed_lengths(rng, np.array(om.VIEWED_ITEMS_EMPTY)[s.flow], om.VIEWED_ITEMS_LOG_RATE, s.intent)
    offsets, own, rec = sequence_layout(s.flow.shape[0], length)
    m = own.shape[0]
    r = rng.random(m)
    u = rng.random(m)
    p_rel = om.viewed_item_wanted_share(rec)
    wb, wc, pb = s.want_brand[own], s.want_cat[own], s.preferred_brand[own]
    items = np.where(
        r < p_rel, from_pool(u, w.pool_order, w.pool_start[wb, wc], w.pool_size[wb, wc]),
        np.where(r < p_rel + om.VIEWED_ITEM_PREFERRED, from_pool(u, w.brand_order, w.brand_start[pb], w.brand_size[pb]),
                 choice(rng, w.popularity_cdf, m)))
    return Viewed(offsets, own, items, length)


def draw_viewed_pages(rng: np.random.Generator, s: Sessions) -> Viewed:
    """Viewed pages (most recent last), by :func:`observation_model.page_thresholds`."""
    w = fixed_world()
    length = _viewed_lengths(rng, om.VIEWED_PAGES_EMPTY, om.VIEWED_PAGES_LOG_RATE, s.intent)
    offsets, own, rec = sequence_layout(s.flow.shape[0], length)
    m = own.shape[0]
    r = rng.random(m)
    u = rng.random(m)
    wb, wc = s.want_brand[own], s.want_cat[own]
    t1, t2, t3, t4 = om.page_thresholds(rec, s.intent[own])
    n_gen, n_int = len(GENERIC_PAGES), len(INTENT_PAGES)
    pages = np.select(
        [r < t1, r < t2, r < t3, r < t4],
        [w.brand_cat_page[wb, wc], FIRST_CATEGORY_PAGE + wc, FIRST_FLOW_PAGE + s.flow[own],
         FIRST_INTENT_PAGE + np.minimum((u * n_int).astype(np.int64), n_int - 1)],
        default=np.minimum((u * n_gen).astype(np.int64), n_gen - 1))
    return Viewed(offsets, own, pages, length)


def draw_labels(rng: np.random.Generator, c: Customers, s: Sessions, item: np.ndarray, viewed_items: Viewed,
                viewed_pages: Viewed, queries: Queries, flow: np.ndarray, world: TaskWorld, seed: int) -> Labels:
    """Click, add-to-cart and purchase of each impression, drawn from the planted funnel, and the
    world's extra events (``flow [n]`` indexes ``world.flows``)."""
    w = fixed_world()
    params = world.flow_parameters
    n, cust = item.shape[0], s.customer
    ib, ic = w.brand[item], w.category[item]
    taste = np.einsum("nk,nk->n", c.taste[cust], w.latent[item]) / w.taste_scale
    frac_brand, seen_same, q_brand, q_cat, cart_pages = lm.candidate_evidence(
        item, viewed_items.owner, viewed_items.codes, viewed_items.length, viewed_pages.owner, viewed_pages.codes,
        queries.has_query, queries.brand, queries.category)
    observed = lm.observed_funnel(flow, s.channel, c.plan[cust], c.device[cust], c.tenure[cust], c.lines[cust],
                                  c.days_upgrade[cust], queries.has_query, item, frac_brand, seen_same, q_brand,
                                  q_cat, cart_pages, params.price_sens[flow] + c.price_sens[cust], params)
    hidden = lm.hidden_affinity(flow, (ib == s.want_brand).astype(np.float64), (ic == s.want_cat).astype(np.float64),
                                (ib == s.preferred_brand).astype(np.float64), taste, s.intent, c.offset[cust],
                                params)
    p_click, p_atc, p_buy = (lm.sigmoid(logit) for logit in lm.funnel_logits(observed.logits, hidden, s.intent))
    click = rng.random(n) < p_click
    atc = rng.random(n) < p_atc
    buy = rng.random(n) < p_buy
    events, p_events = world.draw_events(seed, flow, observed.affinity + lm.AFFINITY_SCALE * hidden, observed.terms)
    return Labels(click, atc, buy, p_click, p_atc, p_buy, events, p_events)


def _context_columns(c: Customers, s: Sessions) -> Dict[str, np.ndarray]:
    """Impression-level columns ``[n]``: customer id, context codes (int) and numericals (float32)."""
    cust = s.customer
    return {
        "customer_id": cust.astype(np.int64),
        "device_os": c.device[cust], "channel": s.channel, "region": c.region[cust], "plan": c.plan[cust],
        "tenure_months": c.tenure[cust].astype(np.float32), "lines_on_account": c.lines[cust].astype(np.float32),
        "monthly_bill": c.bill[cust].astype(np.float32), "days_since_upgrade": c.days_upgrade[cust].astype(np.float32),
    }


def simulate(n: int, seed: int, world: TaskWorld = DEFAULT_WORLD) -> Impressions:
    """Simulates ``n`` impressions of ``world`` from ``seed`` (the same seed gives identical impressions)."""
    rng = np.random.default_rng([seed, GENERATOR_VERSION])
    customers = simulate_customers(rng, max(20, n // SESSIONS_PER_CUSTOMER))
    sessions = simulate_sessions(rng, customers, n)
    item = draw_candidates(rng, sessions)
    viewed_items = draw_viewed_items(rng, sessions)
    viewed_pages = draw_viewed_pages(rng, sessions)
    queries = draw_queries(rng, sessions.intent, sessions.channel, sessions.want_brand, sessions.want_cat)
    flow = world.assign_flows(sessions.flow, seed)
    labels = draw_labels(rng, customers, sessions, item, viewed_items, viewed_pages, queries, flow, world, seed)
    return Impressions(n, world, flow, item, _context_columns(customers, sessions), queries, viewed_items,
                       viewed_pages, labels, sessions)
