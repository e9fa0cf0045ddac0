"""The Bayes ceiling of the telecom dataset: a conditional expectation of the oracle, from features only.

``ceiling = E[oracle_p | x, the row exists]``, so within any set of rows selected by the features
(deciles of the ceiling) the mean of ``oracle_p - ceiling`` is zero up to sampling noise, and so is
``mean((oracle_p - ceiling) f(x))`` for any function f of the features. That noise is clustered:
sessions of the same customer share the customer's hidden preferred brand, taste and offset, so
rows of one customer are correlated. The standard errors below are therefore customer-clustered
(an i.i.d. standard error is about 3x too small here and would reject the exact ceiling).

The tests also check that the calibration check has power (it rejects a slightly biased ceiling),
the posterior of the hidden variables against the generator's own draws, the AUC ordering
naive < ceiling <= oracle, and that only the features are read.
"""
from typing import Dict

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, logit
from sklearn.linear_model import LogisticRegression

from grec_tf.data import telecom
from grec_tf.data.telecom import ceiling as ceiling_module
from grec_tf.data.telecom import ceiling_likelihood, ceiling_observations, ceiling_posterior, ceiling_probabilities
from grec_tf.data.telecom import label_model as lm
from grec_tf.data.telecom.queries import INTENT_WORDS
from grec_tf.data.telecom.simulation import simulate
from grec_tf.metrics import roc_auc

IMPRESSIONS = 20_000   # 500 customers: enough clusters for the calibration standard errors
SEED = 3
Z_MAX = 4.0            # tolerance of the calibration checks, in clustered standard errors
SMALL = 1_500          # impressions used by the invariance tests


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    frames = telecom.generate_frames(IMPRESSIONS, seed=SEED)
    return pd.concat([frames[s] for s in telecom.SPLITS], ignore_index=True)


@pytest.fixture(scope="module")
def ceiling(frame) -> np.ndarray:
    return ceiling_probabilities(frame)


@pytest.fixture(scope="module")
def small(frame) -> pd.DataFrame:
    return frame[frame["impression_id"] < SMALL].reset_index(drop=True)


def _clustered_z(residual: np.ndarray, cluster: np.ndarray) -> float:
    """Mean of ``residual`` over its customer-clustered standard error (the mean is tested against 0)."""
    sums = pd.Series(residual).groupby(cluster).sum().to_numpy()
    se = np.sqrt((sums ** 2).sum()) / residual.shape[0]
    return float(residual.mean() / se) if se > 0 else float("inf") * np.sign(residual.mean())


def _observable_functions(frame: pd.DataFrame) -> Dict[str, np.ndarray]:
    """A few functions f(x) of the features; E[(oracle_p - ceiling) f(x)] = 0 for every one of them.

    They carry evidence about the hidden variables (intent, wanted and preferred brand), so a
    ceiling that ignores or misreads some evidence leaves a residual correlated with one of them.
    """
    pages = frame["viewed_pages"]
    items = frame["viewed_items"]
    query = frame["search_query"].to_numpy().astype(str)
    words = np.char.split(query)
    brand = frame["item_brand"].to_numpy()
    return {
        "has query": query != "",
        "flow NSE": frame["flow"].to_numpy() == "NSE",
        "no viewed items": items.map(len).to_numpy() == 0,
        "viewed items": items.map(len).to_numpy() / 5.0,
        "viewed pages": pages.map(len).to_numpy() / 5.0,
        "deals/cart/checkout pages": pages.map(lambda p: np.isin(p, ("deals", "cart", "checkout")).sum()).to_numpy(),
        "flow EUP": frame["flow"].to_numpy() == "EUP",
        "device ios": frame["device_os"].to_numpy() == "ios",
        "ios and an apple item": (frame["device_os"].to_numpy() == "ios") & (brand == "apple"),
        "not a phone": frame["item_category"].to_numpy() != "phone",
        "query intent word": np.array([any(w in INTENT_WORDS for w in ws) for ws in words]),
        "query names the item brand": np.array([b in ws for b, ws in zip(brand, words)]),
        "viewed the item": np.array([i in v for i, v in zip(frame["item_id"].to_numpy(), items)]),
    }


def _calibration_z(frame: pd.DataFrame, functions: Dict[str, np.ndarray], prediction: np.ndarray) -> float:
    """Largest |z| of ``mean(oracle_p - prediction)`` over the deciles of ``prediction`` per use case,
    and of ``mean((oracle_p - prediction) f(x))`` for the functions of :func:`_observable_functions`."""
    oracle = frame["oracle_p"].to_numpy()
    customer = frame["customer_id"].to_numpy()
    worst = 0.0
    for use_case in telecom.USE_CASES:   # CVR rows: oracle_p = p_atc p_buy of a clicked impression
        rows = np.flatnonzero(frame["use_case"].to_numpy() == use_case)
        residual = oracle[rows] - prediction[rows]
        decile = np.minimum((np.argsort(np.argsort(prediction[rows], kind="stable")) * 10) // rows.shape[0], 9)
        for d in range(10):
            sel = decile == d
            worst = max(worst, abs(_clustered_z(residual[sel], customer[rows][sel])))
        for f in functions.values():
            worst = max(worst, abs(_clustered_z(residual * f[rows], customer[rows])))
    return worst


@pytest.fixture(scope="module")
def functions(frame) -> Dict[str, np.ndarray]:
    return _observable_functions(frame)


def test_ceiling_is_the_conditional_expectation_of_the_oracle(frame, functions, ceiling):
    assert _calibration_z(frame, functions, ceiling) < Z_MAX


def test_calibration_check_rejects_a_slightly_biased_ceiling(frame, functions, ceiling):
    # the check has power: a 5% relative bias, or a mild logit tilt, of the ceiling fails it
    assert _calibration_z(frame, functions, ceiling * 1.05) > Z_MAX
    assert _calibration_z(frame, functions, ceiling / 1.05) > Z_MAX
    assert _calibration_z(frame, functions, expit(1.1 * logit(ceiling) + 0.2)) > Z_MAX


def _hidden_session_variables(impressions: int, seed: int) -> Dict[str, np.ndarray]:
    """The generator's hidden draws (intent, wanted category/brand, preferred brand) per impression.

    Test-only: the simulation keeps its hidden session draws, exactly those behind
    ``generate_frames(impressions, seed)``.
    """
    sessions = simulate(impressions, seed).sessions
    return {"intent": sessions.intent, "cat": sessions.want_cat, "brand": sessions.want_brand,
            "pref": sessions.preferred_brand}


@pytest.fixture(scope="module")
def hidden() -> Dict[str, np.ndarray]:
    return _hidden_session_variables(IMPRESSIONS, SEED)


def test_posterior_of_the_hidden_variables_is_calibrated(frame, hidden):
    """The ceiling's posterior over the hidden state and the intent, against the generator's draws.

    Sharper than the label-level check (each wrong likelihood term shows up here directly): for each
    value v of pref / want_cat / want_brand, ``mean([truth = v] - P(v | x))`` within bins of ``P(v | x)``
    is ~0 (customer-clustered errors), and the intent's posterior CDF at the true intent is uniform.
    """
    first = frame.drop_duplicates("impression_id").reset_index(drop=True)
    assert (first["impression_id"].to_numpy() == np.arange(IMPRESSIONS)).all()
    customer = first["customer_id"].to_numpy()
    obs = ceiling_observations.observe(first, np.arange(IMPRESSIONS))
    model = ceiling_likelihood.likelihood()
    post = ceiling_posterior.state_posterior(obs)
    for key in ("pref", "cat", "brand"):
        state_value = getattr(model, "s_" + key)
        for v in np.unique(hidden[key]):
            p = post[:, state_value == v].sum(axis=1)
            residual = (hidden[key] == v) - p
            for lo, hi in ((0.0, 0.1), (0.1, 0.5), (0.5, 0.9), (0.9, 1.1)):
                sel = (p >= lo) & (p < hi)
                if sel.sum() > 100:
                    assert abs(_clustered_z(residual[sel], customer[sel])) < Z_MAX, (key, v, lo)
    weights = ceiling_posterior.intent_posterior(obs)
    grid = ceiling_likelihood.INTENT_GRID
    cdf = np.cumsum(weights, axis=1) - 0.5 * weights    # mid-point CDF of the grid cells
    at = np.clip((hidden["intent"] - grid[0]) / (grid[1] - grid[0]), 0, grid.shape[0] - 1.000001)
    i, frac = at.astype(np.int64), at % 1.0
    rows = np.arange(IMPRESSIONS)
    pit = (1.0 - frac) * cdf[rows, i] + frac * cdf[rows, np.minimum(i + 1, grid.shape[0] - 1)]
    counts = np.histogram(pit, bins=10, range=(0.0, 1.0))[0]
    assert np.abs(counts - IMPRESSIONS / 10).max() < Z_MAX * np.sqrt(IMPRESSIONS * 0.09), counts


def test_customer_noise_has_the_integrated_variance(frame, hidden):
    """Given the true session variables and preferred brand, what is left of the oracle's click logit
    is the customer-level Gaussian noise the ceiling integrates out: mean 0 and variance
    ``g_sd[item]^2 + (AFFINITY_SCALE * PRICE_SENS_NOISE_SD * log relative price)^2``."""
    first = frame[frame["use_case"] == "CTR"].reset_index(drop=True)
    assert (first["impression_id"].to_numpy() == np.arange(IMPRESSIONS)).all()
    obs = ceiling_observations.observe(first, np.arange(IMPRESSIONS))
    model = ceiling_likelihood.likelihood()
    base, log_rel = ceiling_module.observed_part(obs)
    item, pref = obs.item, hidden["pref"]
    brand, cat = model.item_brand[item], model.item_cat[item]
    mean = base[:, 0] + lm.AFFINITY_SCALE * (
        lm.INTENT_WEIGHT * hidden["intent"] + lm.WANTED_BRAND_WEIGHT * (brand == hidden["brand"])
        + lm.WANTED_CATEGORY_WEIGHT * (cat == hidden["cat"])
        + lm.FLOW_LOYALTY[obs.flow] * (brand == pref) + lm.TASTE_WEIGHT * model.taste_mean[pref, item])
    residual = logit(first["oracle_p"].to_numpy()) - mean
    variance = model.g_sd[item] ** 2 + (lm.AFFINITY_SCALE * lm.PRICE_SENS_NOISE_SD * log_rel) ** 2
    customer = first["customer_id"].to_numpy()
    assert abs(_clustered_z(residual, customer)) < Z_MAX
    assert abs(_clustered_z(residual ** 2 / variance - 1.0, customer)) < Z_MAX


def _naive_scores(frame: pd.DataFrame, use_case: str) -> np.ndarray:
    """Logistic regression on a few simple features, fitted in-sample on the evaluated rows (which can
    only help it)."""
    rows = frame[frame["use_case"] == use_case]
    x = pd.concat([
        pd.get_dummies(rows[["flow", "channel", "plan", "item_category"]].astype(str), dtype=float),
        pd.DataFrame({"has_query": (rows["search_query"] != "").astype(float),
                      "items": rows["viewed_items"].map(len).astype(float) / 20.0,
                      "pages": rows["viewed_pages"].map(len).astype(float) / 20.0,
                      "log_price": np.log(rows["item_price"].astype(float)) / 7.0}, index=rows.index),
    ], axis=1).to_numpy()
    y = rows["label"].to_numpy()
    return LogisticRegression(max_iter=2000).fit(x, y).predict_proba(x)[:, 1]


@pytest.mark.parametrize("use_case", telecom.USE_CASES)
def test_auc_naive_below_ceiling_below_oracle(frame, ceiling, use_case):
    sel = frame["use_case"].to_numpy() == use_case
    y = frame["label"].to_numpy()[sel]
    oracle_auc = roc_auc(y, frame["oracle_p"].to_numpy()[sel])
    ceiling_auc = roc_auc(y, ceiling[sel])
    naive_auc = roc_auc(y, _naive_scores(frame, use_case))
    # the oracle sees the hidden variables; a tolerance for the sampling noise of the paired AUCs
    assert ceiling_auc <= oracle_auc + 0.01, (ceiling_auc, oracle_auc)
    assert ceiling_auc > naive_auc + 0.02, (ceiling_auc, naive_auc)


def test_only_features_are_read(small):
    expected = ceiling_probabilities(small)
    stripped = small.drop(columns=["label", "oracle_p", "customer_id"])
    assert np.array_equal(ceiling_probabilities(stripped), expected)
    scrambled = small.copy()
    rng = np.random.default_rng(0)
    scrambled["label"] = rng.integers(0, 2, len(small))
    scrambled["oracle_p"] = rng.random(len(small))
    scrambled["customer_id"] = rng.permutation(scrambled["customer_id"].to_numpy())
    assert np.array_equal(ceiling_probabilities(scrambled), expected)


def test_row_order_and_chunking_do_not_matter(small):
    expected = ceiling_probabilities(small)
    order = np.random.default_rng(1).permutation(len(small))
    shuffled = small.iloc[order].reset_index(drop=True)
    np.testing.assert_allclose(ceiling_probabilities(shuffled), expected[order], rtol=1e-12, atol=0)
    np.testing.assert_allclose(ceiling_probabilities(small, chunk_impressions=97), expected, rtol=1e-12, atol=0)
    # without impression_id every row is computed on its own: same values
    np.testing.assert_allclose(ceiling_probabilities(small.drop(columns=["impression_id"])), expected,
                               rtol=1e-12, atol=0)


def test_quadrature_is_converged(small):
    few = small[small["impression_id"] < 500]
    default = ceiling_probabilities(few)
    fine = ceiling_probabilities(few, intent_nodes=14, noise_nodes=(12, 8), prune=0.0)
    np.testing.assert_allclose(default, fine, rtol=1e-5, atol=1e-7)


def test_output_shape_range_and_funnel_consistency(frame, ceiling):
    assert ceiling.dtype == np.float64 and ceiling.shape == (len(frame),)
    assert np.isfinite(ceiling).all() and (ceiling > 0).all() and (ceiling < 1).all()
    wide = pd.DataFrame({"impression_id": frame["impression_id"], "use_case": frame["use_case"],
                         "c": ceiling}).pivot(index="impression_id", columns="use_case", values="c")
    assert (wide["CTR"] >= wide["ATC"]).all() and (wide["ATC"] >= wide["CTCVR"]).all()
    clicked = wide["CVR"].notna()
    # CVR is conditioned on the click: E[pc pa pb | x] / E[pc | x]
    np.testing.assert_allclose(wide.loc[clicked, "CVR"], wide.loc[clicked, "CTCVR"] / wide.loc[clicked, "CTR"],
                               rtol=1e-12)
    assert ceiling_probabilities(frame.iloc[:0]).shape == (0,)


def test_data_the_generator_cannot_produce_is_rejected(small):
    bad = small.copy()
    bad.loc[0, "item_id"] = "item_9999"
    with pytest.raises(ValueError, match="item_id"):
        ceiling_probabilities(bad)
    bad = small.copy()
    bad.loc[0, "search_query"] = "apple unicorn"
    with pytest.raises(ValueError, match="search_query"):
        ceiling_probabilities(bad)
