"""Task worlds: the telecom generator with more flows and more use cases, the planted structure kept.

A :class:`TaskWorld` of ``F`` flows x ``U`` use cases has ``F x U`` task sentences. The default world
(3 x 4: AAL, EUP, NSE x CTR, ATC, CVR, CTCVR) is today's dataset, bit for bit. Larger worlds add:

* **Flows** ``F4, F5, ...``: flow ``k`` (1-based) copies the behaviour template of default flow
  ``(k - 1) mod 3`` (its sessions' observations, and its flow-specific terms: upgrade eligibility for
  EUP, lines for AAL, prospects for NSE) and draws its own label-model parameters around that flow's:
  brand loyalty, price sensitivity and the click / add-to-cart / purchase intercepts
  (:data:`FLOW_PARAMETER_SD`), from a generator seeded by :data:`PARAMETER_SEED` and ``k`` (so ``F4``
  is the same flow in every world that has it). A session of a default flow moves to one of the flows
  sharing its template, uniformly (a separate random stream: the other draws are unchanged).
* **Use cases** from :data:`EXTRA_USE_CASES`, in that order: more funnel events on the same shared
  affinity ``A`` (:mod:`.label_model`), each ``Bernoulli(sigmoid(b_u[flow] + share_u x A + w_u .
  terms))`` over the observed terms :data:`.label_model.OBSERVED_TERMS`. Dense ones have a row on every
  impression; sparse ones (like CVR) only on clicked impressions, their label being the event given
  the click. ``b_u[flow]`` is the use case's intercept plus a per-flow offset
  (:data:`USE_CASE_FLOW_SD`). Each event draws its uniforms from its own stream, so the first use
  cases of a larger world are those of a smaller one.

Reaching T task sentences (the ``tasks`` benchmark): 3 = 1 x 3 and 6 = 2 x 3 (the default world,
restricted with ``data.flows`` / ``data.use_cases``), 12 = 3 x 4 (the default), 24 = 3 x 8
(``data.telecom_use_cases: 8``) or 6 x 4 (``data.telecom_flows: 6``).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Tuple

import numpy as np

from grec_tf.data.telecom import label_model as lm
from grec_tf.data.telecom.schema import FLOWS, GENERATOR_VERSION, USE_CASES
from grec_tf.errors import DataError


@dataclass(frozen=True)
class ExtraUseCase:
    """A funnel event beyond the default four: ``sparse`` rows exist only on clicked impressions."""

    name: str
    meaning: str
    sparse: bool
    share: float                  # share of the affinity A in the logit
    intercept: float              # mean intercept over the flows
    weights: Tuple[float, ...]    # over label_model.OBSERVED_TERMS


#: Extra use cases in the order a world adds them (dense and sparse alternate).
EXTRA_USE_CASES: Tuple[ExtraUseCase, ...] = (
    #            name       meaning                        sparse share intercept  rating price query cart seen elig.
    ExtraUseCase("VIEW", "opens the item's details", False, 0.8, -2.3, (0.15, 0.0, 0.2, 0.1, 0.3, 0.0)),
    ExtraUseCase("COMPARE", "compares it after a click", True, 0.3, -1.6, (0.1, 0.4, 0.3, 0.0, 0.2, 0.0)),
    ExtraUseCase("SAVE", "saves it to a wish list", False, 0.6, -3.0, (0.25, -0.2, 0.0, 0.0, 0.4, 0.0)),
    ExtraUseCase("SHARE", "shares it after a click", True, 0.4, -2.4, (0.3, 0.0, 0.0, 0.0, 0.0, 0.2)),
    ExtraUseCase("CHAT", "asks an agent about it", False, 0.3, -3.4, (0.0, 0.5, 0.3, 0.3, 0.0, 0.3)),
    ExtraUseCase("TRADEIN", "asks a trade-in quote after a click", True, 0.25, -1.9,
                 (0.0, 0.3, 0.0, 0.2, 0.0, 1.0)),
    ExtraUseCase("ALERT", "sets a price alert", False, 0.35, -3.6, (0.1, 0.8, 0.2, 0.0, 0.2, 0.0)),
    ExtraUseCase("PROTECT", "adds device protection after a click", True, 0.2, -2.2,
                 (0.2, -0.3, 0.0, 0.4, 0.0, 0.3)),
)
DEFAULT_FLOWS, DEFAULT_USE_CASES = len(FLOWS), len(USE_CASES)
MAX_USE_CASES = DEFAULT_USE_CASES + len(EXTRA_USE_CASES)
#: Default use cases with rows only on clicked impressions.
SPARSE_DEFAULT_USE_CASES = ("CVR",)
PARAMETER_SEED = 20_240_613
#: Spread of an extra flow's parameters around its template flow's (loyalty, price sensitivity, intercepts).
FLOW_PARAMETER_SD = (0.2, 0.2, 0.2)
#: Spread of an extra use case's intercept across flows.
USE_CASE_FLOW_SD = 0.25
# random streams of the session -> flow assignment and of each extra event (besides the main stream)
_FLOW_STREAM, _EVENT_STREAM = 1, 2


@dataclass(frozen=True, eq=False)
class TaskWorld:
    """``F`` flows x ``U`` use cases and the label-model parameters they need (see the module docstring).

    ``flow_parameters`` are ``[F]`` arrays; ``event_intercepts`` is ``[F, U - 4]`` (extra use cases).
    """

    flows: Tuple[str, ...]
    use_cases: Tuple[str, ...]
    sparse: Tuple[bool, ...]               # per use case: a row only on clicked impressions
    extra_use_cases: Tuple[ExtraUseCase, ...]
    flow_parameters: lm.FlowParameters
    event_intercepts: np.ndarray

    @property
    def task_sentences(self) -> Tuple[str, ...]:
        return tuple(f"{f}/{u}" for f in self.flows for u in self.use_cases)

    @property
    def is_default(self) -> bool:
        return len(self.flows) == DEFAULT_FLOWS and len(self.use_cases) == DEFAULT_USE_CASES

    def assign_flows(self, template_flow: np.ndarray, seed: int) -> np.ndarray:
        """``[n]`` flow index of each session from its default flow ``[n]``: uniform among the flows
        sharing that template (unchanged in the default world)."""
        if len(self.flows) == DEFAULT_FLOWS:
            return template_flow
        rng = np.random.default_rng([seed, GENERATOR_VERSION, _FLOW_STREAM])
        u = rng.random(template_flow.shape[0])
        flow = np.empty_like(template_flow)
        for template in range(DEFAULT_FLOWS):
            members = np.flatnonzero(self.flow_parameters.template == template)
            rows = template_flow == template
            flow[rows] = members[np.minimum((u[rows] * members.size).astype(np.int64), members.size - 1)]
        return flow

    def draw_events(self, seed: int, flow: np.ndarray, affinity: np.ndarray,
                    terms: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """``(events [n, U - 4] bool, p [n, U - 4])`` of the extra use cases.

        ``flow [n]``; ``affinity [n]`` the full shared affinity ``A`` (observed + hidden, scaled);
        ``terms [n, len(OBSERVED_TERMS)]``.
        """
        n, k = flow.shape[0], len(self.extra_use_cases)
        events, p = np.zeros((n, k), dtype=bool), np.zeros((n, k))
        for j, case in enumerate(self.extra_use_cases):
            logit = self.event_intercepts[flow, j] + case.share * affinity + terms @ np.array(case.weights)
            p[:, j] = lm.sigmoid(logit)
            events[:, j] = np.random.default_rng([seed, GENERATOR_VERSION, _EVENT_STREAM, j]).random(n) < p[:, j]
        return events, p


def _flow_parameters(num_flows: int) -> lm.FlowParameters:
    """The default flows' parameters, then each extra flow's drawn around its template's."""
    base = lm.DEFAULT_FLOW_PARAMETERS
    if num_flows == DEFAULT_FLOWS:
        return base
    template = np.arange(num_flows) % DEFAULT_FLOWS
    columns = {name: getattr(base, name)[template].astype(np.float64)
               for name in ("loyalty", "price_sens", "b_click", "b_atc", "b_buy", "center")}
    loyalty_sd, sens_sd, intercept_sd = FLOW_PARAMETER_SD
    for k in range(DEFAULT_FLOWS, num_flows):
        z = np.random.default_rng([PARAMETER_SEED, _FLOW_STREAM, k]).standard_normal(5)
        columns["loyalty"][k] = np.clip(columns["loyalty"][k] + loyalty_sd * z[0], 0.0, 1.2)
        columns["price_sens"][k] = np.clip(columns["price_sens"][k] + sens_sd * z[1], 0.1, 1.3)
        for i, name in enumerate(("b_click", "b_atc", "b_buy")):
            columns[name][k] += intercept_sd * z[2 + i]
    return lm.FlowParameters(template=template, **columns)


def _event_intercepts(num_flows: int, extra: Tuple[ExtraUseCase, ...]) -> np.ndarray:
    """``[F, len(extra)]``: each extra use case's intercept plus a per-(use case, flow) offset."""
    out = np.zeros((num_flows, len(extra)))
    for j, case in enumerate(extra):
        for f in range(num_flows):
            offset = np.random.default_rng([PARAMETER_SEED, _EVENT_STREAM, j, f]).standard_normal()
            out[f, j] = case.intercept + USE_CASE_FLOW_SD * offset
    return out


def task_world(num_flows: int = DEFAULT_FLOWS, num_use_cases: int = DEFAULT_USE_CASES) -> TaskWorld:
    """The world of ``num_flows`` (>= 3) flows x ``num_use_cases`` (4 .. :data:`MAX_USE_CASES`) use cases.

    Raises:
      DataError: naming the bad argument and its range.
    """
    for name, value, low, high in (("num_flows", num_flows, DEFAULT_FLOWS, None),
                                   ("num_use_cases", num_use_cases, DEFAULT_USE_CASES, MAX_USE_CASES)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low or \
                (high is not None and value > high):
            upper = f" and <= {high}" if high is not None else ""
            raise DataError(f"telecom task world: {name} must be an integer >= {low}{upper}, got {value!r}")
    return _build_world(int(num_flows), int(num_use_cases))


@functools.lru_cache(maxsize=None)
def _build_world(num_flows: int, num_use_cases: int) -> TaskWorld:
    flows = FLOWS + tuple(f"F{k + 1}" for k in range(DEFAULT_FLOWS, num_flows))
    extra = EXTRA_USE_CASES[:num_use_cases - DEFAULT_USE_CASES]
    use_cases = USE_CASES + tuple(case.name for case in extra)
    sparse = tuple(u in SPARSE_DEFAULT_USE_CASES for u in USE_CASES) + tuple(case.sparse for case in extra)
    return TaskWorld(flows, use_cases, sparse, extra, _flow_parameters(num_flows),
                     _event_intercepts(num_flows, extra))


#: Today's dataset: 3 flows x 4 use cases.
DEFAULT_WORLD = task_world()
