"""Checks of the telecom generator's arguments (rows, seed, flow and use-case subsets)."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

from grec_tf.data.telecom.schema import FLOWS, USE_CASES
from grec_tf.errors import DataError


def check_generator_args(rows: int, seed: int, flows: Optional[Sequence[str]],
                         use_cases: Optional[Sequence[str]]) -> Tuple[int, int, Tuple[str, ...], Tuple[str, ...]]:
    """``(rows, seed, flows, use_cases)`` normalized; :class:`DataError` naming the bad argument."""
    if isinstance(rows, bool) or not isinstance(rows, (int, np.integer)) or rows < 10:
        raise DataError(f"telecom generator: rows (impressions) must be an integer >= 10, got {rows!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"telecom generator: seed must be a non-negative integer, got {seed!r}")
    flows = tuple(flows) if flows is not None else FLOWS
    use_cases = tuple(use_cases) if use_cases is not None else USE_CASES
    bad = [f for f in flows if f not in FLOWS]
    if bad or not flows:
        raise DataError(f"telecom generator: unknown flow(s) {bad}; the telecom dataset has flows {list(FLOWS)}")
    bad = [u for u in use_cases if u not in USE_CASES]
    if bad or not use_cases:
        raise DataError(f"telecom generator: unknown use case(s) {bad}; expected a subset of {list(USE_CASES)}")
    return int(rows), int(seed), flows, use_cases
