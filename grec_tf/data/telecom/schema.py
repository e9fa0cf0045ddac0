"""The long-format contract of the telecom dataset: task sentences, splits and the column schema.

One row per (impression, task sentence): ``flow`` x ``use_case`` (12 task sentences), the ``label``
drawn from the planted model and ``oracle_p``, the exact probability it was drawn with. The feature
columns describe the customer's context, the session's search query and viewed pages/items, and the
candidate item shown (:data:`FEATURE_COLUMNS`); :data:`SCHEMA` fixes their order and Arrow types.
"""
from __future__ import annotations

from typing import Dict, Tuple

import pyarrow as pa

#: Bumped whenever the same (rows, seed) would produce different data; cached datasets are regenerated.
GENERATOR_VERSION = 1
FLOWS: Tuple[str, ...] = ("AAL", "EUP", "NSE")           # add a line, upgrade, new service (switch)
USE_CASES: Tuple[str, ...] = ("CTR", "ATC", "CVR", "CTCVR")
TASK_SENTENCES: Tuple[str, ...] = tuple(f"{f}/{u}" for f in FLOWS for u in USE_CASES)
SPLITS: Tuple[str, ...] = ("train", "valid", "test")
MAX_SEQUENCE_LENGTH = 20
VECTOR_DIM = 64

CONTEXT_CATEGORICAL = ("device_os", "channel", "region", "plan")
CONTEXT_NUMERICAL = ("tenure_months", "lines_on_account", "monthly_bill", "days_since_upgrade")
TEXT_COLUMNS = ("search_query",)
SEQUENCE_COLUMNS = ("viewed_pages", "viewed_items")
ITEM_CATEGORICAL = ("item_id", "item_brand", "item_category")
ITEM_NUMERICAL = ("item_price", "item_rating")
ITEM_TEXT = ("item_description",)
ITEM_EMBEDDINGS = ("item_image_vec", "item_text_vec")
FEATURE_COLUMNS = (CONTEXT_CATEGORICAL + CONTEXT_NUMERICAL + TEXT_COLUMNS + SEQUENCE_COLUMNS
                   + ITEM_CATEGORICAL + ITEM_NUMERICAL + ITEM_TEXT + ITEM_EMBEDDINGS)

SCHEMA = pa.schema(
    [("impression_id", pa.int64()), ("customer_id", pa.int64()), ("flow", pa.string()),
     ("use_case", pa.string()), ("label", pa.int64()), ("oracle_p", pa.float64())]
    + [(c, pa.string()) for c in CONTEXT_CATEGORICAL]
    + [(c, pa.float32()) for c in CONTEXT_NUMERICAL]
    + [("search_query", pa.string())]
    + [(c, pa.list_(pa.string())) for c in SEQUENCE_COLUMNS]
    + [("item_id", pa.string()), ("item_brand", pa.string()), ("item_category", pa.string()),
       ("item_price", pa.float32()), ("item_rating", pa.float32()), ("item_description", pa.string())]
    + [(c, pa.list_(pa.float32())) for c in ITEM_EMBEDDINGS]
)
#: Column name -> Arrow type, in file order.
COLUMNS: Dict[str, pa.DataType] = {f.name: f.type for f in SCHEMA}
