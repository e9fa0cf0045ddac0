"""WordPiece vocabulary learned from a text corpus with tensorflow-text's own learner.

The vocabulary is learned with ``tensorflow_text.tools.wordpiece_vocab.bert_vocab_from_dataset``: text is
split into words by tensorflow-text's ``BasicTokenizer`` (lower-cased, NFD-normalized, accents stripped,
split on whitespace and punctuation, CJK characters one per word), then the WordPiece learner picks the
subwords. :class:`grec_tf.text.SearchQueryEncoder` splits text the same way, so the vocabulary fits it.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

import tensorflow as tf
from tensorflow_text.tools.wordpiece_vocab import bert_vocab_from_dataset as _bert_vocab

PAD_TOKEN = "[PAD]"
UNK_TOKEN = "[UNK]"
DEFAULT_RESERVED_TOKENS = (PAD_TOKEN, UNK_TOKEN)

# Learner settings shared by vocabulary learning and tokenization (lower-case, like uncased BERT).
BERT_TOKENIZER_PARAMS = {"lower_case": True}
# tensorflow-text's default lower frequency threshold is 10, which on a small training split drops
# whole words that occur a few times; the learner still raises the threshold when the vocabulary
# would exceed ``vocab_size``, so starting the search at 1 only helps small corpora.
DEFAULT_LEARN_PARAMS = {"lower_thresh": 1}


def _as_dataset(texts: Union[Iterable[str], tf.data.Dataset]) -> tf.data.Dataset:
    if isinstance(texts, tf.data.Dataset):
        spec = texts.element_spec
        if not isinstance(spec, tf.TensorSpec) or spec.dtype != tf.string:
            raise TypeError(
                "build_wordpiece_vocabulary: the dataset must contain single tf.string tensors, "
                f"got element_spec {spec!r}")
        return texts
    if isinstance(texts, (str, bytes)):
        raise TypeError("build_wordpiece_vocabulary: expected an iterable of strings, got a single string")
    values: List[bytes] = []
    for i, text in enumerate(texts):
        if text is None:
            text = ""
        if isinstance(text, bytes):
            values.append(text)
        elif isinstance(text, str):
            values.append(text.encode("utf-8"))
        else:
            raise TypeError(
                f"build_wordpiece_vocabulary: item {i} is {type(text).__name__}, expected str or bytes")
    tensor = tf.constant(values, dtype=tf.string, shape=[len(values)])
    return tf.data.Dataset.from_tensor_slices(tensor).batch(1024)


def build_wordpiece_vocabulary(
    texts: Union[Iterable[str], tf.data.Dataset],
    vocab_size: int,
    reserved_tokens: Sequence[str] = DEFAULT_RESERVED_TOKENS,
    learn_params: Optional[Dict[str, Any]] = None,
) -> List[str]:
    """Learns a lower-cased WordPiece vocabulary from ``texts``.

    Args:
      texts: the training corpus: an iterable of ``str``/``bytes`` (``None`` counts as empty), or a
        ``tf.data.Dataset`` of ``tf.string`` tensors of any shape (batched or not). Empty strings are fine.
      vocab_size: the maximum vocabulary size, reserved tokens included.
      reserved_tokens: tokens placed first, in this order (so ``"[PAD]"`` is id 0 by default). Must
        contain ``"[UNK]"``, which the encoder uses for out-of-vocabulary words.
      learn_params: extra keyword arguments of ``wordpiece_tokenizer_learner_lib.learn`` (e.g.
        ``lower_thresh``, ``max_unique_chars``), overriding :data:`DEFAULT_LEARN_PARAMS`.

    Returns:
      The vocabulary as a list of strings: the reserved tokens, then whole words / word-initial pieces
      and ``##``-prefixed continuation pieces. A corpus without any word gives just the reserved tokens.
    """
    if int(vocab_size) < len(reserved_tokens):
        raise ValueError(
            f"build_wordpiece_vocabulary: vocab_size={vocab_size} is smaller than the "
            f"{len(reserved_tokens)} reserved tokens {list(reserved_tokens)}")
    if UNK_TOKEN not in reserved_tokens:
        raise ValueError(f"build_wordpiece_vocabulary: reserved_tokens must contain {UNK_TOKEN!r}")
    params = dict(DEFAULT_LEARN_PARAMS)
    params.update(learn_params or {})
    dataset = _as_dataset(texts)
    try:
        vocab = _bert_vocab.bert_vocab_from_dataset(
            dataset,
            vocab_size=int(vocab_size),
            reserved_tokens=list(reserved_tokens),
            bert_tokenizer_params=dict(BERT_TOKENIZER_PARAMS),
            learn_params=params,
        )
    except StopIteration:
        # tensorflow-text's word counter peeks at the first word: a corpus of only empty (or
        # whitespace) strings has none. Nothing to learn; the encoder maps every query to "empty".
        vocab = []
    vocab = [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in vocab]
    if not vocab:
        vocab = list(reserved_tokens)
    return vocab
