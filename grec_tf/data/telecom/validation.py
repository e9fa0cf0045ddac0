"""Checks of the telecom generator's arguments (rows, seed, flow and use-case subsets)."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

from grec_tf.data.telecom.task_world import DEFAULT_WORLD, TaskWorld
from grec_tf.errors import DataError


def check_generator_args(rows: int, seed: int, flows: Optional[Sequence[str]], use_cases: Optional[Sequence[str]],
                         world: TaskWorld = DEFAULT_WORLD) -> Tuple[int, int, Tuple[str, ...], Tuple[str, ...]]:
    """``(rows, seed, flows, use_cases)`` normalized (subsets of ``world``'s, all when None);
    :class:`DataError` naming the bad argument."""
    if isinstance(rows, bool) or not isinstance(rows, (int, np.integer)) or rows < 10:
        raise DataError(f"telecom generator: rows (impressions) must be an integer >= 10, got {rows!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"telecom generator: seed must be a non-negative integer, got {seed!r}")
    flows = tuple(flows) if flows is not None else world.flows
    use_cases = tuple(use_cases) if use_cases is not None else world.use_cases
    bad = [f for f in flows if f not in world.flows]
    if bad or not flows:
        raise DataError(f"telecom generator: unknown flow(s) {bad}; the telecom dataset has flows "
                        f"{list(world.flows)}")
    bad = [u for u in use_cases if u not in world.use_cases]
    if bad or not use_cases:
        raise DataError(f"telecom generator: unknown use case(s) {bad}; expected a subset of "
                        f"{list(world.use_cases)}")
    return int(rows), int(seed), flows, use_cases
