"""Builds the search-query encoder named by the config (SPEC §3 item 2)."""
from __future__ import annotations

from typing import List, Optional

import tensorflow as tf

from grec_tf.config import TextEncoderConfig
from grec_tf.errors import ConfigError
from grec_tf.text.hub_text_encoder import HubTextEncoder
from grec_tf.text.search_query_encoder import SearchQueryEncoder


def make_text_encoder(cfg: TextEncoderConfig, vocabulary: Optional[List[str]], max_tokens: int,
                      output_dim: int, name: Optional[str] = None) -> tf.keras.layers.Layer:
    """Returns the layer mapping raw query strings ``[B]`` to ``[B, output_dim]``.

    - ``cfg.type == "transformer"``: a :class:`SearchQueryEncoder` over ``vocabulary`` (the WordPiece
      vocabulary learned from the training split with :func:`build_wordpiece_vocabulary`) with
      ``cfg.num_layers`` blocks of ``cfg.num_heads`` heads and ``max_tokens`` tokens per query.
    - ``cfg.type == "hub"``: a :class:`HubTextEncoder` over ``cfg.handle`` (frozen unless
      ``cfg.trainable``); ``vocabulary`` and ``max_tokens`` are not used (the encoder tokenizes).

    ``name`` defaults to Keras' unique name for the class (``search_query_encoder``,
    ``search_query_encoder_1``, ... / ``hub_text_encoder``...), so several text features can coexist.
    """
    if cfg.type == "hub":
        if not cfg.handle:
            raise ConfigError("model.text_encoder.handle: required when model.text_encoder.type is 'hub'")
        return HubTextEncoder(cfg.handle, output_dim=output_dim, trainable=cfg.trainable, name=name)
    if cfg.type == "transformer":
        if not vocabulary:
            raise ConfigError(
                "model.text_encoder: type 'transformer' needs a WordPiece vocabulary learned from the "
                "training text (build_wordpiece_vocabulary), got none")
        if output_dim % cfg.num_heads:
            raise ConfigError(
                f"model.text_encoder.num_heads: {cfg.num_heads} does not divide the text encoder "
                f"width {output_dim}")
        return SearchQueryEncoder(vocabulary, max_tokens=max_tokens, output_dim=output_dim,
                                  num_layers=cfg.num_layers, num_heads=cfg.num_heads, name=name)
    raise ConfigError(f"model.text_encoder.type: expected 'transformer' or 'hub', got {cfg.type!r}")
