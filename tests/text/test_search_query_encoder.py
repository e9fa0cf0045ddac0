import grec_tf  # noqa: F401  (selects tf-keras before TensorFlow is imported)

import json

import numpy as np
import pytest
import tensorflow as tf

from grec_tf.text import SearchQueryEncoder, build_wordpiece_vocabulary

CORPUS = [
    "Red iPhone case", "iphone 15 pro max", "samsung galaxy watch", "", "cheap watch band",
    "iPhone charger", "galaxy tablet", "", "apple watch", "unlimited plan", "iphone screen protector",
] * 12
MAX_TOKENS, DIM = 8, 16


@pytest.fixture(scope="module")
def vocab():
    return build_wordpiece_vocabulary(CORPUS, vocab_size=200)


def make_encoder(vocab, **kwargs):
    tf.keras.utils.set_random_seed(0)
    kwargs.setdefault("num_layers", 1)
    return SearchQueryEncoder(vocab, max_tokens=MAX_TOKENS, output_dim=DIM, **kwargs)


def test_tokenization_of_known_and_unknown_words(vocab):
    enc = make_encoder(vocab)
    queries = ["iPhone CASE", "iphone zzqx", "", "a b c d e f g h i j k", "watchband"]
    ids, mask = enc.tokenize(tf.constant(queries))
    ids, mask = ids.numpy(), mask.numpy()
    assert ids.shape == mask.shape == (5, MAX_TOKENS)
    tokens = [[vocab[i] for i, m in zip(r, mr) if m] for r, mr in zip(ids, mask)]
    assert tokens[0] == ["iphone", "case"]  # lower-cased, whole known words
    assert tokens[1][0] == "iphone" and "[UNK]" in tokens[1]  # 'q' never seen: the word is [UNK]
    assert tokens[2] == [] and not mask[2].any()  # empty query: no token
    assert len(tokens[3]) == MAX_TOKENS  # truncated to max_tokens
    assert tokens[4] == ["watch", "##b", "##a", "##n", "##d"]  # unseen compound split into pieces
    pad = vocab.index("[PAD]")
    assert (ids[~mask] == pad).all()
    # [B, 1] input is the same as [B]
    ids2, mask2 = enc.tokenize(tf.constant([["iPhone CASE"], [""]]))
    np.testing.assert_array_equal(ids2.numpy(), ids[[0, 2]])


def test_empty_queries_get_the_learned_vector_independently_of_other_rows(vocab):
    enc = make_encoder(vocab, num_layers=2)
    out_a = enc(tf.constant(["", "iphone case", "  ", ""])).numpy()
    out_b = enc(tf.constant(["galaxy watch band", "", "iphone case"])).numpy()
    out_c = enc(tf.constant([""])).numpy()
    empty = enc.empty_query_embedding.numpy()
    assert out_a.shape == (4, DIM) and np.isfinite(out_a).all() and np.isfinite(out_b).all()
    for row in (out_a[0], out_a[2], out_a[3], out_b[1], out_c[0]):
        np.testing.assert_array_equal(row, empty)
    np.testing.assert_allclose(out_a[1], out_b[2], rtol=1e-5, atol=1e-6)
    assert not np.allclose(out_a[1], empty)
    # an all-empty batch is fine too
    assert np.isfinite(enc(tf.constant(["", ""])).numpy()).all()


def test_gradients_flow_to_every_weight(vocab):
    enc = make_encoder(vocab, dropout=0.1)
    queries = tf.constant(["iphone case", "", "samsung galaxy watch", "apple"])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(enc(queries, training=True) - 1.0))
    grads = tape.gradient(loss, enc.trainable_variables)
    names = [v.name for v in enc.trainable_variables]
    assert any("empty_query_embedding" in n for n in names)
    assert any("block_0" in n for n in names)
    for v, g in zip(enc.trainable_variables, grads):
        assert g is not None, v.name
        g = tf.convert_to_tensor(g)
        assert np.isfinite(g.numpy()).all(), v.name
        assert float(tf.reduce_sum(tf.abs(g))) > 0, v.name


def test_get_config_round_trip(vocab):
    enc = make_encoder(vocab, num_heads=4, mlp_dim=24)
    queries = tf.constant(["iphone case", "", "watch"])
    expected = enc(queries).numpy()
    config = enc.get_config()
    json.dumps(config)
    assert config["vocabulary"] == vocab and config["max_tokens"] == MAX_TOKENS and config["mlp_dim"] == 24
    clone = SearchQueryEncoder.from_config(config)
    clone(queries)
    clone.set_weights(enc.get_weights())
    np.testing.assert_allclose(clone(queries).numpy(), expected, rtol=1e-6, atol=1e-6)
    revived = tf.keras.layers.deserialize(tf.keras.layers.serialize(enc))
    assert isinstance(revived, SearchQueryEncoder) and revived.get_config() == config


def test_saved_model_keeps_tokenization_inside(vocab, tmp_path):
    enc = make_encoder(vocab)
    inputs = tf.keras.Input(shape=(), dtype=tf.string, name="query")
    outputs = tf.keras.layers.Dense(3, name="head")(enc(inputs))
    model = tf.keras.Model(inputs, outputs)
    queries = tf.constant(["Red iPhone case", "", "zzqx watch", "galaxy tablet"])
    expected = model(queries).numpy()

    path = str(tmp_path / "query_model")

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="query")])
    def serve(query):
        return {"output": model(query, training=False)}

    model.save(path, save_format="tf", signatures={"serving_default": serve})
    loaded = tf.saved_model.load(path)
    got = loaded.signatures["serving_default"](query=queries)["output"].numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    # and Keras can revive the layer from the SavedModel (registered class + get_config)
    revived = tf.keras.models.load_model(path)
    assert any(isinstance(layer, SearchQueryEncoder) for layer in revived.layers)
    np.testing.assert_allclose(revived(queries).numpy(), expected, rtol=1e-6, atol=1e-6)


def test_mixed_precision_policy(vocab):
    tf.keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        enc = make_encoder(vocab)
        out = enc(tf.constant(["iphone case", ""]))
        assert out.dtype == tf.bfloat16
        assert enc.empty_query_embedding.dtype == tf.float32  # variables stay float32
        assert np.isfinite(tf.cast(out, tf.float32).numpy()).all()
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")


def test_invalid_arguments(vocab):
    with pytest.raises(ValueError, match="UNK"):
        SearchQueryEncoder(["[PAD]", "a"], max_tokens=4, output_dim=8)
    with pytest.raises(ValueError, match="num_heads"):
        SearchQueryEncoder(vocab, max_tokens=4, output_dim=10, num_heads=3)
    with pytest.raises(ValueError, match=r"\[B\] or \[B, 1\]"):
        make_encoder(vocab)(tf.constant([["a", "b"]]))


def test_trains_with_model_fit(vocab):
    enc = make_encoder(vocab)
    inputs = tf.keras.Input(shape=(1,), dtype=tf.string, name="query")
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(1, activation="sigmoid")(enc(inputs)))
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01), loss="binary_crossentropy")
    queries = tf.constant([["iphone case"], [""], ["galaxy watch"], [""]] * 4)
    labels = tf.constant([1.0, 0.0, 1.0, 1.0] * 4)
    before = {v.name: v.numpy().copy() for v in enc.trainable_variables}
    history = model.fit(queries, labels, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    for v in enc.trainable_variables:
        assert not np.array_equal(before[v.name], v.numpy()), v.name
