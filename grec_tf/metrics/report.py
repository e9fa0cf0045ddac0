"""Readable tables of per-task-sentence metrics next to the oracle's."""
from __future__ import annotations

import math
from typing import Dict, List, Optional


def _fmt(value: Optional[float], digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def metrics_table(test: Dict[str, Dict], oracle: Optional[Dict[str, Dict]] = None) -> str:
    """Markdown table: one row per task sentence (then per use case) with AUC, AP, GAUC, logloss,
    rows, and the oracle's AUC/AP and the AUC gap when the oracle is known."""
    oracle = oracle or {}
    header = ["task", "rows", "auc", "oracle auc", "gap", "ap", "oracle ap", "gauc", "logloss"]
    lines: List[str] = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    keys = [k for k in test if not k.startswith("use_case/")] + [k for k in test if k.startswith("use_case/")]
    for key in keys:
        m, o = test[key], oracle.get(key, {})
        gap = (o["auc"] - m["auc"]) if ("auc" in o and m.get("auc") is not None) else None
        lines.append("| " + " | ".join([key, str(m.get("rows", "-")), _fmt(m.get("auc")), _fmt(o.get("auc")),
                                        _fmt(gap), _fmt(m.get("ap")), _fmt(o.get("ap")), _fmt(m.get("gauc")),
                                        _fmt(m.get("logloss"))]) + " |")
    return "\n".join(lines)
