"""Numbers measured over several training seeds, and the rule that turns two of them into a verdict.

A model trained with seeds 0..n-1 gives n values of a metric: :func:`seed_statistics` reports their mean,
sample standard deviation (``ddof=1``) and standard error ``std / sqrt(n)``. :func:`compare` calls a
difference of means a win (or a loss) only when it exceeds two standard errors of the difference,
``sqrt(se_a**2 + se_b**2)`` (independent runs); anything smaller is a tie. With a single seed there is no
standard error and every comparison is a tie.
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Sequence

import numpy as np

#: a difference must exceed this many standard errors of the difference to count as a win
WIN_STANDARD_ERRORS = 2.0


def seed_statistics(values: Sequence[Optional[float]]) -> Dict:
    """``{"mean", "std", "se", "n", "values"}`` of one metric over seeds. Undefined values (None or NaN, e.g.
    the AUC of a split without positives) are left out; ``std`` and ``se`` are NaN below two values."""
    kept = [float(v) for v in values if v is not None and not math.isnan(v)]
    n = len(kept)
    std = float(np.std(kept, ddof=1)) if n >= 2 else float("nan")
    return {"mean": float(np.mean(kept)) if n else float("nan"), "std": std,
            "se": std / math.sqrt(n) if n >= 2 else float("nan"), "n": n, "values": kept}


def compare(a: Dict, b: Dict) -> Dict:
    """``a`` minus ``b`` (two :func:`seed_statistics`): ``difference`` of means, its standard error ``se``,
    ``limit`` (two of them) and ``verdict`` from ``a``'s side: ``win`` / ``loss`` beyond the limit, else
    ``tie`` (also when a standard error is undefined)."""
    difference = a["mean"] - b["mean"]
    se = math.sqrt(a["se"] ** 2 + b["se"] ** 2)
    limit = WIN_STANDARD_ERRORS * se
    if math.isnan(limit) or math.isnan(difference) or abs(difference) <= limit:
        verdict = "tie"
    else:
        verdict = "win" if difference > 0 else "loss"
    return {"difference": difference, "se": se, "limit": limit, "verdict": verdict}


def format_statistics(stats: Dict, digits: int = 4) -> str:
    """``mean ± std`` (just the mean with one seed; ``-`` when undefined)."""
    if math.isnan(stats["mean"]):
        return "-"
    if math.isnan(stats["std"]):
        return f"{stats['mean']:.{digits}f}"
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"
