"""Wide multi-label tables -> the canonical long format, by a declared rule.

A wide table has one row per impression and one 0/1 column per raw signal (``click``,
``conversion``, ...). The long format has one row per (impression, task sentence) with the columns
``flow``, ``use_case`` and ``label``. The rule says, for each use case:

- ``label``: the 0/1 column(s) whose conjunction is the label (all must be 1), and
- ``where``: the 0/1 column(s) selecting the impressions the use case applies to (all must be 1);
  empty means every impression.

Rules are written as a mapping ``use case -> spec`` where a spec is any of::

    "click"                                   # label = click, on all rows
    ("click", "conversion")                   # label = click & conversion, on all rows
    "click & conversion"                      # the same, as one expression
    {"label": "conversion", "where": "click"} # label = conversion, only on clicked rows
    LabelRule(label=("conversion",), where=("click",))

so the AliExpress rule (:data:`grec_tf.data.aliexpress.ALIEXPRESS_RULES`) reads::

    {"CTR": "click", "CTCVR": "click & conversion",
     "CVR": {"label": "conversion", "where": "click"}}

The mapping form is what a YAML file would hold. Output rows are impression-major: the rows of one
impression are adjacent, in the rule's use-case order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd

from grec_tf.data.validation import FLOW_COLUMN, USE_CASE_COLUMN, check_binary
from grec_tf.errors import ConfigError, DataError


@dataclass(frozen=True)
class LabelRule:
    """How one use case is derived from wide 0/1 columns.

    ``label``: columns that must all be 1 for a positive. ``where``: columns that must all be 1 for
    the impression to carry this use case at all (empty: every impression).
    """

    label: Tuple[str, ...]
    where: Tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.label:
            raise ConfigError("label rule: expected at least one label column")

    @property
    def columns(self) -> Tuple[str, ...]:
        return tuple(dict.fromkeys(self.label + self.where))


RuleSpec = Union[str, Sequence[str], Mapping[str, Any], LabelRule]


def _names(spec: Any, path: str) -> Tuple[str, ...]:
    if isinstance(spec, str):
        names = tuple(part.strip() for part in spec.split("&"))
    elif isinstance(spec, (list, tuple)):
        names = tuple(spec)
    else:
        raise ConfigError(f"{path}: expected a column name, 'a & b' or a list of column names, "
                          f"got {spec!r}")
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ConfigError(f"{path}: expected non-empty column names, got {spec!r}")
    return names


def parse_rule(spec: RuleSpec, use_case: str = "?") -> LabelRule:
    """Turns one rule spec (see the module docstring) into a :class:`LabelRule`."""
    path = f"rules[{use_case}]"
    if isinstance(spec, LabelRule):
        return spec
    if isinstance(spec, Mapping):
        unknown = sorted(set(spec) - {"label", "where"})
        if unknown:
            raise ConfigError(f"{path}.{unknown[0]}: unknown key; expected 'label' and optional 'where'")
        if "label" not in spec:
            raise ConfigError(f"{path}.label: required key is missing")
        where = spec.get("where") or ()
        return LabelRule(_names(spec["label"], f"{path}.label"),
                         _names(where, f"{path}.where") if where else ())
    return LabelRule(_names(spec, path))


def parse_rules(rules: Mapping[str, RuleSpec]) -> Dict[str, LabelRule]:
    """Parses a ``use case -> spec`` mapping, keeping its order."""
    if not isinstance(rules, Mapping) or not rules:
        raise ConfigError(f"rules: expected a non-empty mapping use case -> label rule, got {rules!r}")
    return {str(use_case): parse_rule(spec, use_case) for use_case, spec in rules.items()}


def wide_to_long(frame: pd.DataFrame, rules: Mapping[str, RuleSpec], *, flow: Optional[str] = None,
                 file: str = "<frame>", label_column: str = "label",
                 keep_label_sources: bool = False) -> pd.DataFrame:
    """Converts a wide multi-label frame into long format.

    Args:
      frame: one row per impression with the 0/1 columns the rules name.
      rules: ``use case -> spec`` (module docstring), in the order use cases should appear.
      flow: the flow of every row; when None, ``frame`` must already have a ``flow`` column.
      file: the source file, for error messages.
      label_column: name of the output label column.
      keep_label_sources: keep the raw columns the rules read (``click``, ...). They are dropped by
        default because they would leak the label into the features.

    Returns:
      A new frame with columns ``flow, use_case, <label_column>`` followed by the other columns of
      ``frame`` (label sources dropped unless kept); ``label`` is int64 0/1; the index is 0..n-1.

    Raises:
      DataError: a rule column is missing or holds a value other than 0/1 (naming the first row).
      ConfigError: a malformed rule.
    """
    parsed = parse_rules(rules)
    sources = list(dict.fromkeys(c for rule in parsed.values() for c in rule.columns))
    _check_wide_frame(frame, parsed, sources, flow, file, label_column)
    position, rule_index, label = _long_rows(frame, parsed, sources)

    keep = [c for c in frame.columns if keep_label_sources or c not in sources]
    body = frame[keep].iloc[position].reset_index(drop=True)
    use_case_names = np.array(list(parsed), dtype=object)
    head = pd.DataFrame({
        FLOW_COLUMN: (np.full(position.size, flow, dtype=object) if flow is not None
                      else body.pop(FLOW_COLUMN).to_numpy()),
        USE_CASE_COLUMN: use_case_names[rule_index],
        label_column: label.astype(np.int64),
    })
    return pd.concat([head, body], axis=1)


def _check_wide_frame(frame: pd.DataFrame, parsed: Mapping[str, LabelRule], sources: List[str],
                      flow: Optional[str], file: str, label_column: str) -> None:
    """The rules' columns exist and hold 0/1, a flow is known, and no output column overwrites an input one."""
    for column in sources:
        if column not in frame.columns:
            raise DataError(f"column named by the label rule of "
                            f"{[u for u, r in parsed.items() if column in r.columns]} is missing; "
                            f"expected the columns {sources}", file=file, column=column)
        check_binary(frame[column], file, column, what="value")
    if flow is None and FLOW_COLUMN not in frame.columns:
        raise DataError("no flow given and no flow column; expected a 'flow' column or flow=...",
                        file=file, column=FLOW_COLUMN)
    for name in (USE_CASE_COLUMN, label_column) + ((FLOW_COLUMN,) if flow is not None else ()):
        if name in frame.columns and name not in sources:
            raise DataError("column would be overwritten by the wide-to-long conversion; rename it",
                            file=file, column=name)


def _all_ones(bits: Mapping[str, np.ndarray], columns: Sequence[str], n: int) -> np.ndarray:
    """Rows where every one of ``columns`` is 1 (every row when ``columns`` is empty); bool [n]."""
    out = np.ones(n, dtype=bool)
    for column in columns:
        out &= bits[column]
    return out


def _long_rows(frame: pd.DataFrame, parsed: Mapping[str, LabelRule],
               sources: List[str]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (impression, use case) pairs the rules apply to, impression-major and in rule order within.

    Returns ``(position, rule_index, label)``, each [m]: the impression's row position in ``frame``
    (int64), the use case's index in ``parsed`` (int64) and the label (bool).
    """
    bits = {c: frame[c].to_numpy(dtype="float64", na_value=np.nan) == 1.0 for c in sources}
    n = len(frame)
    positions: List[np.ndarray] = []
    labels: List[np.ndarray] = []
    codes: List[np.ndarray] = []
    for code, rule in enumerate(parsed.values()):
        rows = np.flatnonzero(_all_ones(bits, rule.where, n))
        positions.append(rows)
        labels.append(_all_ones(bits, rule.label, n)[rows])
        codes.append(np.full(rows.size, code, dtype=np.int64))
    position = np.concatenate(positions)
    order = np.argsort(position, kind="stable")  # impression-major, rule order within
    return position[order], np.concatenate(codes)[order], np.concatenate(labels)[order]
