import grec_tf  # noqa: F401  (selects tf-keras before TensorFlow is imported)

import pytest
import tensorflow as tf

from grec_tf.text import DEFAULT_RESERVED_TOKENS, build_wordpiece_vocabulary

CORPUS = [
    "Red iPhone case", "iphone 15 pro max", "samsung galaxy watch", "", "cheap watch band",
    "iPhone charger", "galaxy tablet", "", "apple watch", "  ", "unlimited plan", "iphone screen protector",
] * 12


def test_frequent_words_and_reserved_tokens():
    vocab = build_wordpiece_vocabulary(CORPUS, vocab_size=300)
    assert vocab[: len(DEFAULT_RESERVED_TOKENS)] == list(DEFAULT_RESERVED_TOKENS)
    assert len(vocab) <= 300 and len(set(vocab)) == len(vocab)
    for word in ("iphone", "watch", "galaxy", "case", "samsung", "charger"):
        assert word in vocab, word
    # lower-cased: no capitalised entries
    assert "iPhone" not in vocab and "Red" not in vocab
    # continuation pieces let unknown words decompose
    assert "##e" in vocab


def test_dataset_input_gives_the_same_vocabulary():
    from_list = build_wordpiece_vocabulary(CORPUS, vocab_size=300)
    ds = tf.data.Dataset.from_tensor_slices(CORPUS).batch(7)
    assert build_wordpiece_vocabulary(ds, vocab_size=300) == from_list


def test_empty_corpus_and_validation():
    assert build_wordpiece_vocabulary(["", "  ", None], vocab_size=50) == list(DEFAULT_RESERVED_TOKENS)
    with pytest.raises(ValueError, match="UNK"):
        build_wordpiece_vocabulary(CORPUS, vocab_size=50, reserved_tokens=("[PAD]",))
    with pytest.raises(ValueError, match="smaller than"):
        build_wordpiece_vocabulary(CORPUS, vocab_size=1)
    with pytest.raises(TypeError, match="single string"):
        build_wordpiece_vocabulary("iphone case", vocab_size=50)
