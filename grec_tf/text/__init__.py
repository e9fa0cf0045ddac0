"""NLP head for the search query and other text features (the model factory picks one encoder).

- :func:`build_wordpiece_vocabulary`: WordPiece vocabulary learned from the training text.
- :class:`SearchQueryEncoder`: raw strings -> tensorflow-text WordPiece tokens -> small transformer ->
  masked mean pooling (learned vector for empty queries).
- :class:`HubTextEncoder`: raw strings -> ``hub.KerasLayer`` (TF Hub handle or local SavedModel) -> Dense.
"""
from grec_tf.text.wordpiece_vocabulary import (
    DEFAULT_RESERVED_TOKENS,
    PAD_TOKEN,
    UNK_TOKEN,
    build_wordpiece_vocabulary,
)
from grec_tf.text.search_query_encoder import SearchQueryEncoder
from grec_tf.text.hub_text_encoder import HubTextEncoder

__all__ = [
    "DEFAULT_RESERVED_TOKENS",
    "PAD_TOKEN",
    "UNK_TOKEN",
    "build_wordpiece_vocabulary",
    "SearchQueryEncoder",
    "HubTextEncoder",
]
