"""Loader for the raw UCI census-income (KDD) files, with the two tasks of the MMoE paper.

Input: ``census-income.data`` / ``census-income.test`` (optionally ``.gz``) exactly as UCI ships
them: no header, 42 fields separated by ``", "``. Column names and kinds follow UCI's
``census-income.names`` (:data:`COLUMNS`; "nominal" coded columns such as the industry and
occupation recodes are categorical). ``?`` is a category of its own (not missing).

Output (long format, flow ``"census"`` by default), one row per (person, use case):

- use case ``income``: label 1 when the income field is ``50000+.``, 0 when it is ``- 50000.``;
- use case ``never_married``: label 1 when ``marital_stat`` is ``Never married``.

Both label sources (``income`` and ``marital_stat``) are dropped from the output, so that neither
task sees the other's label as a feature (as in the MMoE paper). ``instance_weight`` (the census
sampling weight) is kept as a column but is not a feature.

Group column: the data has no household or person id, so the loader adds ``row_id`` = the 0-based
position of the line in its file. It is the split key (both rows of one person stay in one split)
and the ``data.group_column``; GAUC is degenerate here (every group has one row per use case and is
skipped), so AUC and AP are the metrics to read. Note ``detailed_household_and_family_stat``
contains values like ``Child 18+ never marr ...`` and so partly reveals the never-married label;
the MMoE paper keeps it, and so does ``configs/census_income.yaml``.
"""
from __future__ import annotations

import os
import re
from typing import Dict, Tuple

import numpy as np
import pandas as pd

from grec_tf.data.long_format import wide_to_long
from grec_tf.data.validation import check_file, map_label_values, numeric_column
from grec_tf.errors import DataError

#: (name, kind) of the 42 fields, in file order (UCI census-income.names).
COLUMNS: Tuple[Tuple[str, str], ...] = (
    ("age", "numerical"),
    ("class_of_worker", "categorical"),
    ("detailed_industry_recode", "categorical"),
    ("detailed_occupation_recode", "categorical"),
    ("education", "categorical"),
    ("wage_per_hour", "numerical"),
    ("enroll_in_edu_inst_last_wk", "categorical"),
    ("marital_stat", "label"),
    ("major_industry_code", "categorical"),
    ("major_occupation_code", "categorical"),
    ("race", "categorical"),
    ("hispanic_origin", "categorical"),
    ("sex", "categorical"),
    ("member_of_a_labor_union", "categorical"),
    ("reason_for_unemployment", "categorical"),
    ("full_or_part_time_employment_stat", "categorical"),
    ("capital_gains", "numerical"),
    ("capital_losses", "numerical"),
    ("dividends_from_stocks", "numerical"),
    ("tax_filer_stat", "categorical"),
    ("region_of_previous_residence", "categorical"),
    ("state_of_previous_residence", "categorical"),
    ("detailed_household_and_family_stat", "categorical"),
    ("detailed_household_summary_in_household", "categorical"),
    ("instance_weight", "weight"),
    ("migration_code_change_in_msa", "categorical"),
    ("migration_code_change_in_reg", "categorical"),
    ("migration_code_move_within_reg", "categorical"),
    ("live_in_this_house_1_year_ago", "categorical"),
    ("migration_prev_res_in_sunbelt", "categorical"),
    ("num_persons_worked_for_employer", "numerical"),
    ("family_members_under_18", "categorical"),
    ("country_of_birth_father", "categorical"),
    ("country_of_birth_mother", "categorical"),
    ("country_of_birth_self", "categorical"),
    ("citizenship", "categorical"),
    ("own_business_or_self_employed", "categorical"),
    ("fill_inc_questionnaire_for_veterans_admin", "categorical"),
    ("veterans_benefits", "categorical"),
    ("weeks_worked_in_year", "numerical"),
    ("year", "categorical"),
    ("income", "label"),
)
COLUMN_NAMES = tuple(name for name, _ in COLUMNS)
CATEGORICAL_COLUMNS = tuple(name for name, kind in COLUMNS if kind == "categorical")
NUMERICAL_COLUMNS = tuple(name for name, kind in COLUMNS if kind == "numerical")
FEATURE_COLUMNS = CATEGORICAL_COLUMNS + NUMERICAL_COLUMNS
GROUP_COLUMN = "row_id"
DEFAULT_FLOW = "census"
USE_CASES = ("income", "never_married")
_INCOME_VALUES: Dict[str, int] = {"50000+": 1, "-50000": 0}  # after removing spaces and the final '.'
NEVER_MARRIED = "Never married"


def load_census_income(path: str, flow: str = DEFAULT_FLOW) -> pd.DataFrame:
    """Reads one raw census-income file into long format (module docstring).

    Returns:
      Columns ``flow, use_case, label, row_id, instance_weight`` then the 32 categorical (str) and
      7 numerical (float64) feature columns; 2 rows per line of the file.

    Raises:
      DataError: missing/empty file, a line without 42 fields, a non-numeric value in a numerical
        column, or an income value other than ``- 50000.`` / ``50000+.`` (naming the first row).
    """
    path = os.fspath(path)
    check_file(path)
    try:
        raw = pd.read_csv(path, header=None, sep=",", skipinitialspace=True, dtype=str,
                          na_filter=False, skip_blank_lines=True)
    except pd.errors.EmptyDataError:
        raise DataError("empty file: no rows; expected raw census-income lines", file=path) from None
    except pd.errors.ParserError as err:
        match = re.search(r"line (\d+)", str(err))  # 1-based line; no header, so row = line - 1
        raise DataError(f"malformed line ({str(err).strip()}); expected {len(COLUMNS)} fields "
                        f"separated by ', ' on every line", file=path,
                        row=int(match.group(1)) - 1 if match else None) from None
    except UnicodeDecodeError as err:
        raise DataError(f"cannot decode as text ({err}); expected raw census-income lines",
                        file=path) from None
    if raw.shape[1] != len(COLUMNS):
        raise DataError(f"found {raw.shape[1]} fields on the first line; expected {len(COLUMNS)} "
                        f"fields separated by ', ' (raw UCI census-income, no header)", file=path, row=0)
    if len(raw) == 0:
        raise DataError("empty file: no rows; expected raw census-income lines", file=path)
    raw.columns = list(COLUMN_NAMES)
    # Short lines are padded with '' by the CSV reader: every census field has a value.
    blank = (raw.to_numpy(dtype=object) == "")
    if blank.any():
        row, col = (int(i) for i in np.argwhere(blank)[0])
        raise DataError(f"empty field; expected {len(COLUMNS)} non-empty fields separated by ', ' on "
                        f"every line", file=path, column=COLUMN_NAMES[col], row=row)

    frame = pd.DataFrame({GROUP_COLUMN: np.arange(len(raw), dtype=np.int64)})
    frame["instance_weight"] = numeric_column(raw["instance_weight"], path)
    for name in CATEGORICAL_COLUMNS:
        frame[name] = raw[name].str.strip()
    for name in NUMERICAL_COLUMNS:
        frame[name] = numeric_column(raw[name], path)

    income = raw["income"].str.replace(" ", "", regex=False).str.rstrip(".")
    frame["income"] = map_label_values(raw["income"], income, _INCOME_VALUES, path, "income",
                                       "'- 50000.' or '50000+.'")
    frame["never_married"] = (raw["marital_stat"].str.strip() == NEVER_MARRIED).to_numpy(dtype=np.int64)
    return wide_to_long(frame, {"income": "income", "never_married": "never_married"}, flow=flow,
                        file=path)

