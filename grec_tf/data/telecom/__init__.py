"""The embedded synthetic telecom dataset: deterministic, vectorized, any size from a seed.

It mimics the paper's internal setting. A fixed **world** (:mod:`.world`: the item catalogue, item
latent vectors, their CLIP-like image/text vectors and the site's pages; the same for every seed) is
visited by **customers** in **sessions** drawn from the seed (:mod:`.simulation`):

* Customers have a latent taste (anchored on a preferred brand), a price sensitivity and a context
  (device, region, plan, tenure, lines, bill, days since the last upgrade). Prospects (no account)
  only shop in the ``NSE`` flow; existing customers shop in ``AAL`` or ``EUP``.
* A session (= impression) has a flow, a channel, a hidden purchase **intent** and a hidden
  **wanted** item (a brand x category). Its ``viewed_items`` / ``viewed_pages`` (0..20, most recent
  last, more relevant near the end) and its optional ``search_query`` (empty for about half the
  sessions) are noisy views of the wanted brand and category and of the intent
  (:mod:`.observation_model`, :mod:`.queries`). The candidate item shown is picked by a simple
  recommender (partly relevant, partly popular).
* The labels follow a click -> add-to-cart -> purchase funnel with a shared affinity
  (:mod:`.label_model`). The oracle AUC per task sentence is about 0.68-0.73 for CVR, 0.75-0.80 for
  CTR and 0.83-0.87 for ATC and CTCVR; CTR is about 15%, CTCVR about 1.4%.

The long format has one row per (impression, task sentence) with the label and ``oracle_p``, the exact
probability it was drawn with (:mod:`.tables`); :mod:`.dataset` writes it to parquet with a card of
the oracle's metrics. :func:`ceiling_probabilities` (:mod:`.ceiling`) is the Bayes ceiling: the best
prediction possible from a row's features alone (default task sentences only).

:func:`task_world` (:mod:`.task_world`) grows the 3 flows x 4 use cases to more flows (``F4``, ...) and
more use cases (``VIEW``, ``COMPARE``, ...) from the same planted model; the generator functions take
it as ``world=`` (the default world is today's data, bit for bit). Everything is vectorized NumPy + Arrow; one million
impressions take well under a minute.
"""
from grec_tf.data.telecom.ceiling import ceiling_probabilities
from grec_tf.data.telecom.dataset import dataset_card, ensure_dataset, format_card, read_card, write_dataset
from grec_tf.data.telecom.label_model import observed_funnel, price_sensitivity_mean
from grec_tf.data.telecom.schema import (
    COLUMNS, CONTEXT_CATEGORICAL, CONTEXT_NUMERICAL, FEATURE_COLUMNS, FLOWS, GENERATOR_VERSION, ITEM_CATEGORICAL,
    ITEM_EMBEDDINGS, ITEM_NUMERICAL, ITEM_TEXT, MAX_SEQUENCE_LENGTH, SCHEMA, SEQUENCE_COLUMNS, SPLITS,
    TASK_SENTENCES, TEXT_COLUMNS, USE_CASES, VECTOR_DIM)
from grec_tf.data.telecom.tables import generate_frames, generate_tables
from grec_tf.data.telecom.task_world import DEFAULT_WORLD, TaskWorld, task_world

__all__ = [
    "FLOWS", "USE_CASES", "TASK_SENTENCES", "SPLITS", "COLUMNS", "SCHEMA", "GENERATOR_VERSION",
    "CONTEXT_CATEGORICAL", "CONTEXT_NUMERICAL", "TEXT_COLUMNS", "SEQUENCE_COLUMNS", "ITEM_CATEGORICAL",
    "ITEM_NUMERICAL", "ITEM_TEXT", "ITEM_EMBEDDINGS", "FEATURE_COLUMNS", "MAX_SEQUENCE_LENGTH", "VECTOR_DIM",
    "generate_tables", "generate_frames", "dataset_card", "write_dataset", "ensure_dataset",
    "read_card", "format_card", "observed_funnel", "price_sensitivity_mean", "ceiling_probabilities",
    "TaskWorld", "task_world", "DEFAULT_WORLD",
]
