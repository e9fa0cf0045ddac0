"""Readable tables of per-task-sentence metrics, next to the oracle's when there is one."""
from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional, Tuple

# column header -> its cell from (the model's metrics, the oracle's metrics) of one row
Column = Tuple[str, Callable[[Dict, Dict], str]]


def _fmt(value: Optional[float], digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _gap(m: Dict, o: Dict) -> Optional[float]:
    return (o["auc"] - m["auc"]) if ("auc" in o and m.get("auc") is not None) else None


def _metric(key: str) -> Column:
    return key, lambda m, o: _fmt(m.get(key))


def _oracle_metric(key: str) -> Column:
    return f"oracle {key}", lambda m, o: _fmt(o.get(key))


def _columns(with_oracle: bool) -> List[Column]:
    next_to_auc = [_oracle_metric("auc"), ("gap", lambda m, o: _fmt(_gap(m, o)))] if with_oracle else []
    next_to_ap = [_oracle_metric("ap")] if with_oracle else []
    return [("rows", lambda m, o: str(m.get("rows", "-"))), _metric("auc"), *next_to_auc, _metric("ap"),
            *next_to_ap, _metric("gauc"), _metric("logloss")]


def metrics_table(test: Dict[str, Dict], oracle: Optional[Dict[str, Dict]] = None) -> str:
    """Markdown table: one row per task sentence (then per use case) with rows, AUC, AP, GAUC and
    logloss. With an ``oracle`` (same keys -> {auc, ap}), also the oracle's AUC and AP and the AUC
    gap (oracle - model); without one those columns are left out."""
    oracle = oracle or {}
    columns = _columns(bool(oracle))
    header = ["task"] + [name for name, _ in columns]
    lines: List[str] = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    keys = [k for k in test if not k.startswith("use_case/")] + [k for k in test if k.startswith("use_case/")]
    for key in keys:
        m, o = test[key], oracle.get(key, {})
        lines.append("| " + " | ".join([key] + [cell(m, o) for _, cell in columns]) + " |")
    return "\n".join(lines)
